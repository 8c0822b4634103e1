from __future__ import annotations

import base64
import hashlib
import os

from mailgate.core.aside import SET_ASIDE_FROM, set_aside
from mailgate.core.parse import parse_mail


def _big_mail(payload: bytes, content_type: str = "application/octet-stream") -> bytes:
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    return (
        b"From: a@klant.nl\r\nTo: support@example.com\r\nSubject: Groot\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\n"
        b"Zie bijlagen.\r\n--B\r\nContent-Type: " + content_type.encode() + b"\r\n"
        b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=a.bin"
        b"\r\n\r\n" + encoded + b"--B\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: "
        b"base64\r\nContent-Disposition: attachment; filename=b.png\r\n\r\n"
        + encoded
        + b"--B--\r\n"
    )


def test_large_attachments_set_aside_while_parsing_come_out_byte_for_byte() -> None:
    payload = os.urandom(3_000_000)
    parsed = parse_mail(_big_mail(payload))
    assert parsed.text == "Zie bijlagen."
    assert [(a.filename, a.data == payload) for a in parsed.attachments] == [
        ("a.bin", True),
        ("b.png", True),
    ]
    assert parsed.attachments[0].sha256 == hashlib.sha256(payload).hexdigest()


def test_a_large_base64_text_part_is_parsed_whole() -> None:
    text = ("Regel met tekst.\n" * 200_000).encode()
    raw = _big_mail(text, "text/plain; charset=utf-8").replace(
        b"Content-Disposition: attachment; filename=a.bin\r\n", b"", 1
    )
    parsed = parse_mail(raw)
    assert parsed.text.startswith("Zie bijlagen.") and "Regel met tekst." in parsed.text
    assert [a.filename for a in parsed.attachments] == ["b.png"]
    assert parsed.attachments[0].data == text


def test_small_mails_and_short_runs_are_parsed_as_they_are() -> None:
    small = _big_mail(os.urandom(SET_ASIDE_FROM // 4))
    assert set_aside(small) == (small, {})
    reduced, aside = set_aside(_big_mail(os.urandom(3_000_000)))
    assert len(aside) == 2 and len(reduced) < 10_000
