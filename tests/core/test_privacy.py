from __future__ import annotations

import pytest

from mailgate.core.privacy import MASK, mask_bsn, passes_eleven_test


@pytest.mark.parametrize(
    ("digits", "valid"),
    [
        ("111222333", True),
        ("123456782", True),
        ("123456789", False),
        ("000000000", False),
        ("12345678", False),
    ],
)
def test_eleven_test(digits: str, valid: bool) -> None:
    assert passes_eleven_test(digits) is valid


@pytest.mark.parametrize(
    ("text", "expected", "count"),
    [
        ("mijn bsn is 111222333.", f"mijn bsn is {MASK}.", 1),
        ("BSN: 1234.56.782 en 123 456 782", f"BSN: {MASK} en {MASK}", 2),
        ("bel 0612345678", "bel 0612345678", 0),
        ("order 123456789", "order 123456789", 0),
        ("IBAN NL91ABNA0417164300", "IBAN NL91ABNA0417164300", 0),
        ("versie 1.111222333", "versie 1.111222333", 0),
    ],
    ids=["plain", "grouped", "phone", "fails-11-test", "iban", "part-of-a-number"],
)
def test_mask(text: str, expected: str, count: int) -> None:
    assert mask_bsn(text) == (expected, count)
