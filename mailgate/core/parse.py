"""Turn the raw bytes of one mail into a typed ``ParsedMail``; never raise on ugly mail.

mail-parser does the MIME work; its dicts stay in this module. When it fails on
a mail, the stdlib email package recovers what it can, and the failure is
recorded among the mail's defects, so that every mail still becomes a ticket.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email
import email.parser
import email.utils
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from email.message import Message
from email.policy import compat32
from typing import Any

import mailparser

from mailgate.core.aside import restore, set_aside
from mailgate.core.filenames import safe_filename
from mailgate.core.header_addresses import (
    AUTHOR_HEADERS,
    author_count,
    header_addresses,
)
from mailgate.core.headers import (
    DEFAULT_FALLBACK_CHARSETS,
    decode_8bit,
    decode_header_value,
    message_ids,
    raw_header,
    raw_headers,
    without_controls,
)
from mailgate.core.model import Address, Attachment, ParsedMail
from mailgate.core.parts import (
    attached_messages,
    decode_part,
    delivery_status,
    mail_fallbacks,
    text_fixes,
    unclaimed_parts,
)
from mailgate.core.text import html_to_text

# Controls in body text, where tab, newline, carriage return and form feed belong.
_BODY_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
# More parts than this and only the first ones are read (``[intake] max_parts``).
DEFAULT_MAX_PARTS = 500
# Counted before parsing, cheaply: an upper bound of the number of MIME parts.
_CONTENT_TYPES = re.compile(rb"^content-type[ \t]*:", re.IGNORECASE | re.MULTILINE)


# Tried in order for 8-bit text without a usable charset; configurable per installation.
# The name mail-parser gives a part that has none (ten random letters): another each
# time the same mail is parsed.
_INVENTED = re.compile(r"[a-z]{10}\.(?:txt|rtf)")


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
    reduced, aside = set_aside(raw)
    if aside:
        restored = restore(_parse(reduced, fallback_charsets, max_parts), aside)
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


# --- helpers shared by both paths ------------------------------------------------------


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


def _attached(msg: Message, before: int) -> list[Attachment]:
    found = attached_messages(msg)
    return [
        _attachment(name, "message/rfc822", data, before + n)
        for n, (name, data) in enumerate(found, start=1)
    ]


def _distinct_names(attachments: Sequence[Attachment]) -> tuple[Attachment, ...]:
    """Two attachments of one name told apart as mail clients do: ``a.pdf``, ``a (1).pdf``."""
    seen: set[str] = set()
    result = []
    for item in attachments:
        name, n = item.filename, 0
        stem, dot, extension = item.filename.rpartition(".")
        if not dot or not stem:
            stem, extension = item.filename, ""
        while name.lower() in seen:
            n += 1
            name = f"{stem} ({n}).{extension}" if extension else f"{stem} ({n})"
        seen.add(name.lower())
        result.append(item if name == item.filename else replace(item, filename=name))
    return tuple(result)


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
    from_count = author_count(msg)
    author_header = AUTHOR_HEADERS[0]  # From, read by the caller
    if not from_addr:
        for author_header in AUTHOR_HEADERS[1:]:
            from_addr = header_addresses(msg, author_header, fallbacks)
            if from_addr:
                break
    return ParsedMail(
        delivery_status=delivery_status(msg),
        message_id=ids[0] if ids else None,
        in_reply_to=message_ids(" ".join(raw_headers(msg, "In-Reply-To"))),
        references=message_ids(" ".join(raw_headers(msg, "References"))),
        subject=subject,
        from_addr=from_addr[0] if from_addr else None,
        from_header=author_header if from_addr else "",
        from_count=from_count,
        reply_to=reply_to,
        to=to,
        cc=cc,
        date=_date(raw_header(msg, "Date"), defects),
        text=text[0],
        html=text[1],
        text_from_html=text[2],
        attachments=_distinct_names(attachments),
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


def _with_mailparser(raw: bytes, fallbacks: tuple[str, ...]) -> ParsedMail:
    mp = mailparser.parse_from_bytes(raw)
    msg: Message = mp.message
    if msg is None:
        raise ValueError("no message")
    fallbacks = mail_fallbacks(msg, fallbacks)
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
        if name and _INVENTED.fullmatch(str(name)) and str(name).encode() not in raw:
            name = None  # made up at random by mail-parser: named by its type and place
        if content_type == "message/rfc822" and name and not str(name).lower().endswith(".eml"):
            name = f"{name}.eml"
        attachments.append(_attachment(name, content_type, data, index, item.get("content-id")))
    for part in unclaimed_parts(msg):
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        attachments.append(_attachment(None, part.get_content_type(), data, len(attachments) + 1))
    for name, data in attached_messages(msg):
        attachments.append(_attachment(name, "message/rfc822", data, len(attachments) + 1))
    fixes = text_fixes(msg, fallbacks)
    text = _text(
        [fixes.get(p, p) for p in mp.text_plain],
        [fixes.get(p, p) for p in mp.text_html],
    )
    return _build(
        msg,
        subject=decode_header_value(raw_header(msg, "Subject"), fallbacks),
        from_addr=header_addresses(msg, "From", fallbacks),
        to=header_addresses(msg, "To", fallbacks),
        cc=header_addresses(msg, "Cc", fallbacks),
        reply_to=header_addresses(msg, "Reply-To", fallbacks),
        text=text,
        attachments=tuple(attachments),
        defects=defects,
        parser="mail-parser",
        fallbacks=fallbacks,
    )


# --- stdlib fallback ----------------------------------------------------------------------


def _with_stdlib(
    raw: bytes,
    defects_in: tuple[str, ...],
    fallbacks: tuple[str, ...],
    max_parts: int = DEFAULT_MAX_PARTS,
) -> ParsedMail:
    defects = list(defects_in)
    msg = email.message_from_bytes(raw, policy=compat32)
    with contextlib.suppress(Exception):  # a mail too broken to walk: the plain fallbacks
        fallbacks = mail_fallbacks(msg, fallbacks)
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
                plain.append(decode_part(part, defects, fallbacks))
            elif not filename and disposition != "attachment" and content_type == "text/html":
                html.append(decode_part(part, defects, fallbacks))
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
        msg,
        _text(plain, html),
        (*attachments, *_attached(msg, len(attachments))),
        defects,
        "stdlib",
        fallbacks,
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
        from_addr=header_addresses(msg, "From", fallbacks),
        to=header_addresses(msg, "To", fallbacks),
        cc=header_addresses(msg, "Cc", fallbacks),
        reply_to=header_addresses(msg, "Reply-To", fallbacks),
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
