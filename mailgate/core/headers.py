"""Header values as text: encoded words and 8-bit bytes decoded, controls removed, Message-IDs.

Every header value mailgate reads (when it parses a mail, names it for
de-duplication, or finds the original in a bounce) is decoded here, once.
"""

from __future__ import annotations

import codecs
import re
from email.header import decode_header
from email.message import Message

_MSGID = re.compile(r"<([^<>\s]{1,900})>")
# C0 controls and DEL: never part of a header value mailgate stores or sends.
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
DEFAULT_FALLBACK_CHARSETS: tuple[str, ...] = ("utf-8", "windows-1252")


def decode_8bit(text: str, fallbacks: tuple[str, ...] = DEFAULT_FALLBACK_CHARSETS) -> str:
    """Text that may carry raw 8-bit bytes (as surrogate escapes), in the first fitting
    charset of ``fallbacks`` (a mail's own: ``parts.mail_fallbacks``); 7-bit text with
    escape sequences is ISO-2022-JP, whatever else it claims."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        return _iso_2022(text) if "\x1b" in text else text
    data = text.encode("utf-8", "surrogateescape")
    for charset in fallbacks:
        try:
            return data.decode(charset)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("utf-8", "replace")


def single_byte(charset: str) -> bool:
    """Whether ``charset`` reads every byte as a character of its own (latin-1, cp1252)."""
    try:
        return len(b"\xe9".decode(charset, "ignore")) == 1
    except LookupError:
        return False


def _iso_2022(text: str) -> str:
    """7-bit text with ISO-2022 escape sequences, undeclared or declared as ASCII."""
    for charset in ("iso2022_jp_2", "iso2022_jp_3", "iso2022_jp", "iso2022_kr"):
        try:
            return text.encode("ascii").decode(charset)
        except (UnicodeError, LookupError):
            continue
    return text


def without_controls(text: str) -> str:
    """``text`` with NUL, other C0 controls and DEL removed (tab and line breaks become
    spaces): what every header value mailgate stores or sends must be."""
    return CONTROLS.sub("", text.replace("\t", " ").replace("\n", " ").replace("\r", " "))


def decode_header_value(
    value: object, fallbacks: tuple[str, ...] = DEFAULT_FALLBACK_CHARSETS
) -> str:
    """A header value as text: RFC 2047 words decoded, raw 8-bit bytes read in ``fallbacks``,
    control characters removed. Never raises: an undecodable word stays as it was written."""
    if value is None:
        return ""
    text = decode_8bit(str(value), fallbacks)
    try:
        parts = decode_header(text)
    except Exception:  # a malformed encoded word (HeaderParseError, binascii.Error, ...)
        parts = [(text, None)]
    chunks: list[str] = []
    for chunk, charset in parts:
        if isinstance(chunk, str):
            chunks.append(chunk)
            continue
        chunks.append(_decode_words(chunk, charset, fallbacks))
    # decode_header keeps the whitespace between plain words but drops it around encoded ones.
    decoded = "".join(chunks) if len(parts) > 1 or not isinstance(parts[0][0], str) else text
    decoded = decoded.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return without_controls(re.sub(r"[\r\n]+[ \t]*", " ", decoded)).strip()


def raw_header(msg: Message, name: str) -> str | None:
    """The first raw value of header ``name``, 8-bit bytes still as surrogate escapes."""
    values = raw_headers(msg, name)
    return values[0] if values else None


def raw_headers(msg: Message, name: str) -> list[str]:
    """Every raw value of header ``name`` as text (never a ``Header`` object, which the
    library hands back for 8-bit values), 8-bit bytes still as surrogate escapes."""
    wanted = name.lower()
    return [str(value) for key, value in msg.raw_items() if key.lower() == wanted]


# Charsets whose labels senders use for text that only a superset decodes.
_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "iso-8859-1": "windows-1252",
    "ascii": "windows-1252",
    "us-ascii": "windows-1252",
    "ks_c_5601-1987": "cp949",
}


def _decode_words(data: bytes, charset: str | None, fallbacks: tuple[str, ...]) -> str:
    label = (charset or "").lower()
    if b"\x1b$" in data or b"\x1b(" in data:  # ISO-2022-JP, whatever the label says
        decoded = _iso_2022(data.decode("ascii", "replace"))
        if "\x1b" not in decoded:
            return decoded
    for candidate in (label, _SUPERSETS.get(label, ""), *fallbacks):
        if not candidate:
            continue
        try:
            return data.decode(candidate)
        except (LookupError, UnicodeDecodeError, ValueError):  # ValueError: NUL in the label
            continue
    return data.decode(label if known_charset(label) else "utf-8", "replace")


def known_charset(charset: str) -> bool:
    """Whether Python has a codec for ``charset``."""
    try:
        codecs.lookup(charset)
    except (LookupError, ValueError):
        return False
    return True


def message_ids(value: str | None) -> tuple[str, ...]:
    """The ``<id>`` items of a Message-ID, In-Reply-To or References header, in order, unique;
    8-bit bytes read as text, control characters removed."""
    if not value:
        return ()
    seen: dict[str, None] = {}
    for found in _MSGID.findall(without_controls(decode_8bit(value))):
        seen.setdefault(found, None)
    return tuple(seen)
