"""Name a mail for de-duplication: the same mail delivered twice gets the same key.

With a Message-ID the key covers the Message-ID and the body, so a re-delivery
that only gained Received headers is recognised, while a different mail that
reuses a Message-ID (broken senders do) is not. Without a Message-ID the key is
the hash of the exact raw bytes.
"""

from __future__ import annotations

import email.utils
import hashlib
import re
from dataclasses import dataclass

from mailgate.core.headers import message_ids

_HEADER_END = re.compile(rb"\r?\n\r?\n")
# The first Message-ID header of the header block, with its folded continuation lines.
_MESSAGE_ID_HEADER = re.compile(rb"^Message-ID[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.I | re.M)
_REFERENCES_HEADER = re.compile(rb"^References[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.I | re.M)
_IN_REPLY_TO_HEADER = re.compile(rb"^In-Reply-To[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.I | re.M)
_FROM_HEADER = re.compile(rb"^From[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.I | re.M)


RawBytes = bytes | bytearray | memoryview  # a mail as bytes, or a view of a larger buffer
HEADER_SCAN = 1 << 20  # a "header block" with no end is read this far for a Message-ID
_CHUNK = 1 << 20
_TRAILING_SPACE = frozenset(b" \t\r\n\x0b\x0c")


def _body_sha256(body: memoryview) -> str:
    """SHA-256 of the body with CRLF read as LF and trailing white space dropped, computed
    chunk by chunk: the same as ``sha256(body.replace(CRLF, LF).rstrip())``."""
    end = len(body)
    while end and body[end - 1] in _TRAILING_SPACE:
        end -= 1
    digest = hashlib.sha256()
    start = 0
    while start < end:
        stop = min(start + _CHUNK, end)
        while stop < end and body[stop - 1] == 0x0D:  # never split a CRLF between two chunks
            stop += 1
        digest.update(bytes(body[start:stop]).replace(b"\r\n", b"\n"))
        start = stop
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class MailIdentity:
    """What de-duplication needs to know about one raw mail."""

    raw_sha256: str
    body_sha256: str
    message_id: str | None
    dedupe_key: str
    # The Message-ID that started the mail's thread: the first of its References, else of
    # its In-Reply-To, else its own. Mails of one thread share it (a worker claims a
    # thread's mails in their order).
    thread: str | None = None
    # The first address of its From header, lower case (None: none readable): whom an
    # automatic answer would go to, and so what it would count against (the caps).
    sender: str | None = None


def identify(raw: RawBytes) -> MailIdentity:
    """The identity of ``raw``; pure and cheap (the Message-ID found by pattern, no parser),
    and it copies no more than a chunk of a large mail at a time."""
    view = memoryview(raw).cast("B")
    raw_sha = hashlib.sha256(view).hexdigest()
    end = _HEADER_END.search(view)
    header_block = bytes(view[: end.start()] if end else view[:HEADER_SCAN])
    body_sha = _body_sha256(view[end.end() :] if end else view[:0])
    found = _first_id(_MESSAGE_ID_HEADER, header_block)
    thread = (
        _first_id(_REFERENCES_HEADER, header_block)
        or _first_id(_IN_REPLY_TO_HEADER, header_block)
        or found
    )
    sender = _first_address(_FROM_HEADER, header_block)
    if found:
        key = hashlib.sha256(f"{found}\n{body_sha}".encode()).hexdigest()
        return MailIdentity(raw_sha, body_sha, found, f"mid:{key}", thread, sender)
    return MailIdentity(raw_sha, body_sha, None, f"raw:{raw_sha}", thread, sender)


def _first_address(header: re.Pattern[bytes], block: bytes) -> str | None:
    """The first address of the first ``header`` of the header ``block``, lower case; None
    when it is not valid UTF-8 or holds a control character."""
    match = header.search(block)
    if match is None:
        return None
    try:
        value = match.group(1).decode()
    except UnicodeDecodeError:
        return None
    for _, address in email.utils.getaddresses([value]):
        if (plain := plain_address(address)) is not None:
            return plain
    return None


def plain_address(address: str | None) -> str | None:
    """``address`` without angle brackets, lower case; None unless it is one address: an
    "@" and no space or other unprintable character (a surrogate, an undecodable byte of
    an envelope sender, is not printable)."""
    address = (address or "").strip().strip("<>")
    ok = "@" in address and address.isprintable() and " " not in address
    return address.lower() if ok else None


def _first_id(header: re.Pattern[bytes], block: bytes) -> str | None:
    """The first ``<id>`` of the first ``header`` of the header ``block``."""
    match = header.search(block)
    found = message_ids(match.group(1).decode("utf-8", "surrogateescape")) if match else ()
    return found[0] if found else None
