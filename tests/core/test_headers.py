from __future__ import annotations

from email import message_from_bytes
from email.policy import compat32

from mailgate.core.headers import (
    decode_8bit,
    decode_header_value,
    message_ids,
    raw_headers,
    without_controls,
)


def test_message_ids_are_listed_in_order_once_each() -> None:
    assert message_ids("junk <a@b> more <c@d> <a@b>") == ("a@b", "c@d")
    assert message_ids("<a@b>\r\n\t<c\x01@d>") == ("a@b", "c@d")
    assert message_ids("") == () and message_ids(None) == ()
    assert message_ids("a@b without brackets") == ()


def test_encoded_words_and_raw_8bit_bytes_become_text() -> None:
    assert decode_header_value("=?utf-8?q?Caf=C3=A9?= open") == "Café open"
    assert decode_header_value("=?gb2312?b?1tDOxA==?=") == "中文"  # read as its superset
    raw = "Caf\udcc3\udca9"  # UTF-8 bytes as surrogate escapes, as the parser hands them
    assert decode_8bit(raw) == "Café"
    assert decode_8bit("Caf\udce9") == "Café"  # not UTF-8: the next fallback, windows-1252
    assert decode_header_value("=?bogus?q?x?= and =?utf-8?b?!!!?=")  # never raises


def test_controls_never_survive_in_a_header_value() -> None:
    assert without_controls("a\x00b\tc\r\nd\x7f") == "ab c  d"
    assert decode_header_value("=?utf-8?q?a=00b=0D=0AX-Evil:_1?=") == "ab X-Evil: 1"


def test_raw_headers_are_text_even_when_8bit() -> None:
    msg = message_from_bytes(b"X-A: one\r\nX-A: tw\xc3\xa9\r\n\r\n", policy=compat32)
    values = raw_headers(msg, "x-a")
    assert [decode_8bit(v) for v in values] == ["one", "twé"]
    assert all(isinstance(v, str) for v in values)
