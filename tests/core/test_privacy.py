from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mailgate.core.privacy import _CANDIDATE, MASK, mask_bsn, passes_eleven_test


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


@given(st.text(alphabet="0123456789 .-ab\n", max_size=60))
@example("1112.22.333")
@example("111 222 333")
@example("11.122.23.33")
@example("a-111222333 1234 56 782.")
def test_the_quick_look_for_digits_never_changes_what_is_masked(text: str) -> None:
    def thorough(value: str) -> str:  # the candidate pattern alone, without the quick look
        def replace(match: re.Match[str]) -> str:
            digits = re.sub(r"[ .]", "", match.group(1))
            return MASK if passes_eleven_test(digits) else match.group(0)

        return _CANDIDATE.sub(replace, value)

    for value in (text, f"x {text} 111222333 {text}"):
        assert mask_bsn(value)[0] == thorough(value)
