"""Turn the raw bytes of one mail into a typed ``ParsedMail``; never raise on ugly mail.

mail-parser does the MIME work; its dicts stay in this module. When it fails on
a mail, the stdlib email package recovers what it can, and the failure is
recorded among the mail's defects, so that every mail still becomes a ticket.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email
import email.parser
import email.utils
import hashlib
import re
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from email.header import decode_header
from email.message import Message
from email.policy import compat32
from typing import Any

import mailparser

from mailgate.core.filenames import safe_filename
from mailgate.core.model import Address, Attachment, ParsedMail
from mailgate.core.text import html_to_text

_MSGID = re.compile(r"<([^<>\s]{1,900})>")
# C0 controls and DEL: never part of a header value mailgate stores or sends.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# The same in body text, where tab, newline, carriage return and form feed belong.
_BODY_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
# More parts than this and only the first ones are read (``[intake] max_parts``).
DEFAULT_MAX_PARTS = 500
# Counted before parsing, cheaply: an upper bound of the number of MIME parts.
_CONTENT_TYPES = re.compile(rb"^content-type[ \t]*:", re.IGNORECASE | re.MULTILINE)
# Tried in order for 8-bit text without a usable charset; configurable per installation.
DEFAULT_FALLBACK_CHARSETS: tuple[str, ...] = ("utf-8", "windows-1252")


def parse_mail(
    raw: bytes,
    fallback_charsets: tuple[str, ...] = DEFAULT_FALLBACK_CHARSETS,
    max_parts: int = DEFAULT_MAX_PARTS,
) -> ParsedMail:
    """Parse ``raw``; the result always exists, defects say what was wrong.

    ``fallback_charsets`` are tried, in order, for headers and bodies that carry
    8-bit text without a usable charset declaration. Of a mail with more than
    ``max_parts`` MIME parts only the first ``max_parts`` are read (``parts_skipped``
    says how many were not); the raw mail keeps them all.
    """
    reduced, aside = _set_aside(raw)
    if aside:
        restored = _restore(_parse(reduced, fallback_charsets, max_parts), aside)
        if restored is not None:
            return restored
    return _parse(raw, fallback_charsets, max_parts)


def _parse(raw: bytes, fallback_charsets: tuple[str, ...], max_parts: int) -> ParsedMail:
    defects: tuple[str, ...] = ()
    if len(_CONTENT_TYPES.findall(raw)) <= max_parts:
        try:
            return _with_mailparser(raw, fallback_charsets)
        except Exception as exc:  # any failure of the library: recover with the stdlib
            defects = (f"mail-parser failed: {type(exc).__name__}: {exc}"[:300],)
    try:
        return _with_stdlib(raw, defects, fallback_charsets, max_parts)
    except Exception as exc:  # not even the stdlib could walk it: headers and text by pattern
        defects += (f"stdlib parser failed: {type(exc).__name__}: {exc}"[:300],)
    return _headers_only(raw, defects, fallback_charsets)


# --- large attachments set aside -----------------------------------------------------------

# A long run of base64 lines: the body of a large attachment. The MIME parsers hold a mail
# several times over (as text, as lines, as payload), so a 24 MB mail costs some 180 MB to
# parse; with each such run replaced by a short stand-in it costs little more than itself.
# Matched once per run, greedily, so the scan is linear; short runs are left in place.
_BASE64_RUN = re.compile(
    rb"^(?:[A-Za-z0-9+/]{16,998}\r?\n)+(?:[A-Za-z0-9+/]*={0,2}\r?\n)?", re.MULTILINE
)
SET_ASIDE_FROM = 1 << 20  # bytes: smaller mails are parsed as they are
SET_ASIDE_RUN = 1 << 18  # bytes: shorter runs are parsed as they are


def _marker(index: int) -> bytes:
    """What the stand-in of run ``index`` decodes to; no real attachment is these bytes."""
    return b"\x00mailgate set aside %06d\x00" % index


def _set_aside(raw: bytes) -> tuple[bytes, dict[bytes, memoryview]]:
    """``raw`` with each long base64 run replaced by a stand-in that decodes to its marker,
    and the runs by marker (views of ``raw``, not copies)."""
    if len(raw) < SET_ASIDE_FROM:
        return raw, {}
    view = memoryview(raw)
    aside: dict[bytes, memoryview] = {}
    pieces: list[bytes | memoryview] = []
    last = 0
    for found in _BASE64_RUN.finditer(raw):
        if found.end() - found.start() < SET_ASIDE_RUN:
            continue
        marker = _marker(len(aside))
        aside[marker] = view[found.start() : found.end()]
        pieces += [view[last : found.start()], base64.b64encode(marker) + b"\r\n"]
        last = found.end()
    if not aside:
        return raw, {}
    pieces.append(view[last:])
    return b"".join(pieces), aside


def _restore(parsed: ParsedMail, aside: dict[bytes, memoryview]) -> ParsedMail | None:
    """``parsed`` with each stand-in attachment given its real bytes; None when a run did not
    come out as exactly one attachment (it was text, or only part of a body), so that the
    mail is parsed whole instead."""
    attachments = list(parsed.attachments)
    found = 0
    for index, item in enumerate(attachments):
        run = aside.get(item.data)
        if run is None:
            continue
        try:
            data = binascii.a2b_base64(run)
        except binascii.Error:  # broken base64: the whole parse records it as a defect
            return None
        attachments[index] = replace(item, data=data, sha256=hashlib.sha256(data).hexdigest())
        found += 1
    if found != len(aside):
        return None
    return replace(parsed, attachments=tuple(attachments))


# --- helpers shared by both paths ------------------------------------------------------


def decode_8bit(text: str, fallbacks: tuple[str, ...] = DEFAULT_FALLBACK_CHARSETS) -> str:
    """Text that may carry raw 8-bit bytes (as surrogate escapes), in the first fitting charset."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    data = text.encode("utf-8", "surrogateescape")
    for charset in fallbacks:
        try:
            return data.decode(charset)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("utf-8", "replace")


def without_controls(text: str) -> str:
    """``text`` with NUL, other C0 controls and DEL removed (tab and line breaks become
    spaces): what every header value mailgate stores or sends must be."""
    return _CONTROLS.sub("", text.replace("\t", " ").replace("\n", " ").replace("\r", " "))


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
    for candidate in (label, _SUPERSETS.get(label, ""), *fallbacks):
        if not candidate:
            continue
        try:
            return data.decode(candidate)
        except (LookupError, UnicodeDecodeError, ValueError):  # ValueError: NUL in the label
            continue
    return data.decode(label if _known(label) else "utf-8", "replace")


def _known(charset: str) -> bool:
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


def _date(value: str | None, defects: list[str]) -> datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(without_controls(decode_8bit(value)))
    except Exception:  # any malformed date: the mail still counts, only its date is unknown
        defects.append("invalid Date header")
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _addresses(pairs: Iterable[tuple[str, str]]) -> tuple[Address, ...]:
    result: list[Address] = []
    for name, addr in pairs:
        addr = decode_8bit(addr or "").strip().strip("<>")
        # An address with a control character is no address: never stored, never mailed.
        if "@" not in addr or any(c.isspace() for c in addr) or _CONTROLS.search(addr):
            continue
        local, _, domain = addr.rpartition("@")
        result.append(Address(f"{local}@{domain.lower()}", decode_header_value(name)))
    return tuple(result)


def _header_addresses(msg: Message, name: str) -> tuple[Address, ...]:
    values = [_raw_for_addresses(v) for v in raw_headers(msg, name)]
    return _addresses(email.utils.getaddresses(values))


def _raw_for_addresses(value: str) -> str:
    """An address header's text with encoded words decoded only in display names, so a
    decoded comma or bracket never makes a second address; NUL kept, so that an address
    carrying it is dropped whole rather than repaired into someone else's."""
    return decode_8bit(value).replace("\r", " ").replace("\n", " ")


def _author_count(msg: Message) -> int:
    """How many mailboxes the From header(s) name, counting ones too broken to read."""
    values = [_raw_for_addresses(v) for v in raw_headers(msg, "From")]
    return len([pair for pair in email.utils.getaddresses(values) if any(pair)])


def _headers(msg: Message, fallbacks: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), decode_header_value(v, fallbacks)) for k, v in msg.raw_items())


def _attachment(
    name: str | None, content_type: str, data: bytes, index: int, content_id: object = None
) -> Attachment:
    return Attachment(
        filename=safe_filename(name, content_type, index),
        original_filename=decode_header_value(name) if name else "",
        content_type=content_type.lower(),
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        content_id=str(content_id or "").strip().strip("<>")[:998],
    )


def _text(parts: list[str], html_parts: list[str]) -> tuple[str, str | None, bool]:
    """The plain text, the HTML, and whether the text had to be made from the HTML."""
    html = "\n".join(p for p in html_parts if p.strip()) or None
    text = "\n\n".join(p.strip("\n") for p in parts if p.strip())
    from_html = not text and html is not None
    if from_html and html is not None:
        text = html_to_text(html)
    html = _BODY_CONTROLS.sub("", html) if html is not None else None
    return _BODY_CONTROLS.sub("", text.replace("\r\n", "\n")), html, from_html


def _build(
    msg: Message,
    *,
    subject: str,
    from_addr: tuple[Address, ...],
    to: tuple[Address, ...],
    cc: tuple[Address, ...],
    reply_to: tuple[Address, ...],
    text: tuple[str, str | None, bool],
    attachments: tuple[Attachment, ...],
    defects: list[str],
    parser: str,
    fallbacks: tuple[str, ...],
) -> ParsedMail:
    ids = message_ids(raw_header(msg, "Message-ID"))
    from_count = _author_count(msg)
    if not from_addr:
        from_addr = _header_addresses(msg, "Sender") or _header_addresses(msg, "Return-Path")
    return ParsedMail(
        delivery_status=delivery_status(msg),
        message_id=ids[0] if ids else None,
        in_reply_to=message_ids(" ".join(raw_headers(msg, "In-Reply-To"))),
        references=message_ids(" ".join(raw_headers(msg, "References"))),
        subject=subject,
        from_addr=from_addr[0] if from_addr else None,
        from_count=from_count,
        reply_to=reply_to,
        to=to,
        cc=cc,
        date=_date(raw_header(msg, "Date"), defects),
        text=text[0],
        html=text[1],
        text_from_html=text[2],
        attachments=attachments,
        headers=_headers(msg, fallbacks),
        defects=tuple(dict.fromkeys(defects)),
        parser=parser,
    )


# --- mail-parser ---------------------------------------------------------------------------


def _flatten_defects(raw_defects: Iterable[Any]) -> list[str]:
    result: list[str] = []
    for item in raw_defects:
        if isinstance(item, dict):
            for key, values in item.items():
                for value in values if isinstance(values, list) else [values]:
                    result.append(f"{key}: {value}"[:300])
        else:
            result.append(str(item)[:300])
    return result


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


def _text_fixes(msg: Message, fallbacks: tuple[str, ...]) -> dict[str, str]:
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
                fixes[raw_text] = _decode_part(part, [], fallbacks)
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or payload.isascii():
            continue
        try:
            payload.decode(charset or "utf-8")
        except (LookupError, UnicodeDecodeError):
            fixes[payload.decode("utf-8", "replace")] = _decode_part(part, [], fallbacks)
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


def _unclaimed_parts(msg: Message) -> list[Message]:
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


def _with_mailparser(raw: bytes, fallbacks: tuple[str, ...]) -> ParsedMail:
    mp = mailparser.parse_from_bytes(raw)
    msg: Message = mp.message
    if msg is None:
        raise ValueError("no message")
    defects = _flatten_defects(mp.defects)
    attachments: list[Attachment] = []
    for index, item in enumerate(mp.attachments, start=1):
        payload = item.get("payload") or ""
        if item.get("binary"):
            try:
                data = base64.b64decode(payload)
            except (binascii.Error, ValueError):
                defects.append(f"attachment {index}: undecodable base64")
                data = payload.encode("ascii", "replace")
        else:
            data = str(payload).encode("utf-8", "surrogateescape")
        content_type = str(item.get("mail_content_type") or "application/octet-stream")
        name = item.get("filename")
        if content_type == "message/rfc822" and name and not str(name).lower().endswith(".eml"):
            name = f"{name}.eml"
        attachments.append(_attachment(name, content_type, data, index, item.get("content-id")))
    for part in _unclaimed_parts(msg):
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        attachments.append(_attachment(None, part.get_content_type(), data, len(attachments) + 1))
    fixes = _text_fixes(msg, fallbacks)
    text = _text(
        [fixes.get(p, p) for p in mp.text_plain],
        [fixes.get(p, p) for p in mp.text_html],
    )
    return _build(
        msg,
        subject=decode_header_value(raw_header(msg, "Subject"), fallbacks),
        from_addr=_addresses(mp.from_ or []),
        to=_addresses(mp.to or []),
        cc=_addresses(mp.cc or []),
        reply_to=_addresses(mp.reply_to or []),
        text=text,
        attachments=tuple(attachments),
        defects=defects,
        parser="mail-parser",
        fallbacks=fallbacks,
    )


# --- stdlib fallback ----------------------------------------------------------------------


def _decode_part(part: Message, defects: list[str], fallbacks: tuple[str, ...]) -> str:
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


def _with_stdlib(
    raw: bytes,
    defects_in: tuple[str, ...],
    fallbacks: tuple[str, ...],
    max_parts: int = DEFAULT_MAX_PARTS,
) -> ParsedMail:
    defects = list(defects_in)
    msg = email.message_from_bytes(raw, policy=compat32)
    plain: list[str] = []
    html: list[str] = []
    attachments: list[Attachment] = []
    try:
        parts = [part for part in msg.walk() if not part.is_multipart()]
    except RecursionError:
        defects.append("MIME structure nested too deeply; body not recovered")
        parts = []
    skipped = max(len(parts) - max_parts, 0)
    if skipped:
        defects.append(f"{len(parts)} MIME parts: only the first {max_parts} were read")
        parts = parts[:max_parts]
    for part in parts:
        if part.is_multipart():
            continue
        content_type = part.get_content_type()
        filename = part.get_filename()
        disposition = (part.get_content_disposition() or "").lower()
        try:
            if not filename and disposition != "attachment" and content_type == "text/plain":
                plain.append(_decode_part(part, defects, fallbacks))
            elif not filename and disposition != "attachment" and content_type == "text/html":
                html.append(_decode_part(part, defects, fallbacks))
            else:
                payload = part.get_payload(decode=True)
                data = payload if isinstance(payload, bytes) else b""
                attachments.append(
                    _attachment(
                        filename, content_type, data, len(attachments) + 1, part.get("Content-ID")
                    )
                )
        except Exception as exc:  # a broken part must not cost the rest of the mail
            defects.append(f"part {content_type} unreadable: {type(exc).__name__}")
    parsed = _build_from_headers(
        msg, _text(plain, html), tuple(attachments), defects, "stdlib", fallbacks
    )
    return replace(parsed, parts_skipped=skipped) if skipped else parsed


def _build_from_headers(
    msg: Message,
    text: tuple[str, str | None, bool],
    attachments: tuple[Attachment, ...],
    defects: list[str],
    parser: str,
    fallbacks: tuple[str, ...],
) -> ParsedMail:
    """``_build`` with subject and addresses read from the stdlib message's own headers."""
    return _build(
        msg,
        subject=decode_header_value(raw_header(msg, "Subject"), fallbacks),
        from_addr=_header_addresses(msg, "From"),
        to=_header_addresses(msg, "To"),
        cc=_header_addresses(msg, "Cc"),
        reply_to=_header_addresses(msg, "Reply-To"),
        text=text,
        attachments=attachments,
        defects=defects,
        parser=parser,
        fallbacks=fallbacks,
    )


# --- last resort: the header block and the first text by pattern -------------------------

_FIRST_TEXT = re.compile(
    r"^content-type:[ \t]*text/plain[^\n]*\n(?:[ \t][^\n]*\n|[!-9;-~]+:[^\n]*\n)*\r?\n"
    r"(?P<text>.*?)(?=^--|\Z)",
    re.IGNORECASE | re.MULTILINE | re.DOTALL,
)


def _headers_only(
    raw: bytes, defects_in: tuple[str, ...], fallbacks: tuple[str, ...]
) -> ParsedMail:
    """What can be read without walking the MIME tree (nesting a thousand deep, say): every
    header, and as text the first text/plain part found by pattern, else the whole body."""
    defects = [*defects_in, "MIME structure not walked; text recovered by pattern"]
    msg = email.parser.BytesParser(policy=compat32).parsebytes(raw, headersonly=True)
    body = msg.get_payload()
    body = decode_8bit(body if isinstance(body, str) else "", fallbacks).replace("\r\n", "\n")
    found = _FIRST_TEXT.search(body)
    text = (
        found.group("text")
        if found
        else ("" if msg.get_content_maintype() == "multipart" else body)
    )
    return _build_from_headers(msg, _text([text], []), (), defects, "headers-only", fallbacks)
