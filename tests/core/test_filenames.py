from __future__ import annotations

import pytest

from mailgate.core.filenames import MAX_FILENAME_BYTES, safe_filename


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\cmd.exe", "cmd.exe"),
        ("con.txt", "_con.txt"),
        ("NUL", "_NUL"),
        ("lpt1.doc", "_lpt1.doc"),
        ("evil\x00.pdf", "evil_.pdf"),
        ("a\r\nb.txt", "a__b.txt"),
        ('what?<is>"this"|.txt', "what__is__this__.txt"),
        (".htaccess", "htaccess"),
        ("trailing dots...", "trailing dots"),
        ("Café offerte.pdf", "Café offerte.pdf"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),
        ("pay\u200bpal\u200d\ufeff.pdf", "paypal.pdf"),
        ("\u2067exe.pdf\u2069.scr", "exe.pdf.scr"),
        ("c1\x85control.txt", "c1_control.txt"),
    ],
    ids=[
        "plain",
        "unix-traversal",
        "windows-traversal",
        "reserved-con",
        "reserved-nul",
        "reserved-lpt",
        "nul-byte",
        "crlf",
        "windows-forbidden",
        "dotfile",
        "trailing-dots",
        "unicode",
        "bidi-override",
        "zero-width",
        "bidi-isolate",
        "c1-control",
    ],
)
def test_names_are_made_safe(name: str, expected: str) -> None:
    assert safe_filename(name, "application/octet-stream", 1) == expected


@pytest.mark.parametrize("name", [None, "", "   ", "..", "/", "\x00"])
def test_missing_names_get_a_name_from_the_type(name: str | None) -> None:
    assert safe_filename(name, "application/pdf", 3) == "attachment-3.pdf"


def test_long_names_keep_their_extension() -> None:
    result = safe_filename("é" * 300 + ".docx", "application/octet-stream", 1)
    assert result.endswith(".docx")
    assert len(result.encode()) <= MAX_FILENAME_BYTES
