"""MIME parts read right: body text in its charset, delivery reports, parts left unclaimed.

mail-parser hands back escape-sequence charsets undecoded and 8-bit text without a
fitting charset as UTF-8 with replacement characters; these are decoded again
here, in the mail's fallback charsets.
"""

from __future__ import annotations

from email.message import Message

from mailgate.core.headers import decode_header_value, known_charset, single_byte

# 7-bit charsets whose text is ASCII escape sequences: mail-parser hands these
# parts back undecoded, since they are valid ASCII.
_ESCAPE_CHARSETS = frozenset(
    {
        "iso-2022-jp",
        "iso-2022-jp-1",
        "iso-2022-jp-2",
        "iso-2022-jp-3",
        "iso-2022-jp-ext",
        "iso-2022-kr",
        "csiso2022jp",
        "utf-7",
        "hz-gb-2312",
        "hz",
    }
)


def text_fixes(msg: Message, fallbacks: tuple[str, ...]) -> dict[str, str]:
    """Body text mail-parser got wrong, mapped to the right decoding.

    Two cases: escape-sequence charsets (handed back undecoded, being ASCII), and
    8-bit text without a fitting charset (decoded as UTF-8 with replacement
    characters), which is read in the first fitting fallback charset instead.
    """
    fixes: dict[str, str] = {}
    for part in msg.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        charset = (part.get_content_charset() or "").lower()
        if charset in _ESCAPE_CHARSETS:
            raw_text = part.get_payload(decode=False)
            if isinstance(raw_text, str):
                fixes[raw_text] = decode_part(part, [], fallbacks)
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or payload.isascii():
            continue
        try:
            payload.decode(charset or "utf-8")
        except (LookupError, UnicodeDecodeError):
            fixes[payload.decode("utf-8", "replace")] = decode_part(part, [], fallbacks)
    return fixes


def delivery_status(msg: Message) -> str:
    """The text of every message/delivery-status part (RFC 3464), blocks joined; "" if none."""
    texts = []
    try:
        parts = list(msg.walk())
    except RecursionError:
        return ""
    for part in parts:
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        if isinstance(payload, list):  # the library reads the header blocks as sub-messages
            texts.append("\n".join(str(block) for block in payload))
        elif isinstance(payload, str):
            texts.append(payload)
    return "\n".join(texts)


def unclaimed_parts(msg: Message) -> list[Message]:
    """Leaf parts that are neither body text nor an attachment to mail-parser.

    mail-parser files a nameless part without a Content-ID (an inline image, a
    text/calendar invitation) under "text not managed" as decoded text; keep its
    bytes as an attachment instead, so nothing a customer sent is lost.
    """
    found = []
    for part in msg.walk():
        if part.is_multipart() or part.get_content_maintype() == "multipart":
            continue
        if part.get_content_type() in ("text/plain", "text/html"):
            continue
        if part.get_filename() or (part.get_content_disposition() or "") == "attachment":
            continue
        if part.get("Content-ID") or part.get_content_subtype() == "rtf":
            continue
        found.append(part)
    return found


def decode_part(part: Message, defects: list[str], fallbacks: tuple[str, ...]) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    for candidate in (charset, *fallbacks):
        try:
            text = payload.decode(candidate)
        except (LookupError, UnicodeDecodeError):
            continue
        if candidate != charset:
            defects.append(f"charset {charset!r} failed; decoded as {candidate}")
        return text
    defects.append(f"charset {charset!r} failed; decoded as UTF-8 with replacements")
    return payload.decode("utf-8", "replace")


# Declared charsets that say nothing about 8-bit text elsewhere in the mail.
_UNINFORMATIVE = frozenset({"", "us-ascii", "ascii", "utf-8", "utf8"})


def mail_fallbacks(msg: Message, fallbacks: tuple[str, ...]) -> tuple[str, ...]:
    """The charsets to read this mail's undeclared 8-bit header text in: ``fallbacks``,
    with the charset its text parts declare (GB2312, Big5, Shift-JIS, ...) before any
    single-byte fallback, which would read every byte string, rightly or not. A subject
    or a name in raw 8-bit bytes is, in practice, in the charset of the mail's body."""
    declared = ""
    for part in msg.walk():
        if part.get_content_maintype() != "text":
            continue
        charset = (part.get_content_charset() or "").lower()
        if charset not in _UNINFORMATIVE and known_charset(charset):
            declared = charset
            break
    if not declared or declared in fallbacks:
        return fallbacks
    multi = tuple(c for c in fallbacks if not single_byte(c))
    return (*multi, declared, *(c for c in fallbacks if c not in multi))


def attached_messages(msg: Message) -> list[tuple[str, bytes]]:
    """Mails attached without a filename (``message/rfc822``), each named as mail clients
    name them, after its subject with ``.eml``, with its bytes."""
    found = []
    for part in msg.walk():
        if part.get_content_type() != "message/rfc822" or part.get_filename():
            continue
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else None
        if not isinstance(inner, Message):
            continue
        subject = decode_header_value(inner.get("Subject", ""))
        try:
            data = inner.as_bytes()
        except Exception:  # a header the generator cannot write back: the text as read
            data = str(inner).encode("utf-8", "surrogateescape")
        found.append((f"{subject or 'message'}.eml", data))
    return found
