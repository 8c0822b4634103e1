from __future__ import annotations

from email import message_from_bytes
from email.message import Message
from email.policy import compat32

from mailgate.core.parts import delivery_status, text_fixes, unclaimed_parts


def _msg(raw: bytes) -> Message:
    return message_from_bytes(raw, policy=compat32)


def test_delivery_status_blocks_are_joined_and_absent_is_empty() -> None:
    dsn = _msg(
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"
        b"--B\r\nContent-Type: text/plain\r\n\r\nFailed.\r\n"
        b"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n"
        b"\r\nFinal-Recipient: rfc822; a@b.nl\r\nAction: failed\r\nStatus: 5.1.1\r\n--B--\r\n"
    )
    status = delivery_status(dsn)
    assert "Reporting-MTA: dns; mx.example" in status and "Status: 5.1.1" in status
    assert delivery_status(_msg(b"Content-Type: text/plain\r\n\r\nhi\r\n")) == ""


def test_text_mail_parser_misreads_is_decoded_again() -> None:
    jis = "こんにちは".encode("iso-2022-jp")
    escaped = _msg(b"Content-Type: text/plain; charset=iso-2022-jp\r\n\r\n" + jis + b"\r\n")
    assert list(text_fixes(escaped, ("utf-8",)).values()) == ["こんにちは\r\n"]
    latin = _msg(b"Content-Type: text/plain\r\n\r\nCaf\xe9\r\n")
    assert list(text_fixes(latin, ("utf-8", "windows-1252")).values()) == ["Café\r\n"]
    assert text_fixes(_msg(b"Content-Type: text/plain\r\n\r\nplain\r\n"), ("utf-8",)) == {}


def test_a_nameless_calendar_part_is_unclaimed_so_it_is_kept() -> None:
    msg = _msg(
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n"
        b"\r\nhi\r\n--B\r\nContent-Type: text/calendar\r\n\r\nBEGIN:VCALENDAR\r\n--B\r\n"
        b"Content-Type: image/png\r\nContent-Disposition: attachment; filename=a.png\r\n\r\nx\r\n"
        b"--B--\r\n"
    )
    assert [p.get_content_type() for p in unclaimed_parts(msg)] == ["text/calendar"]
