"""Name a mail for de-duplication: the same mail delivered twice gets the same key.

With a Message-ID the key covers the Message-ID and the body, so a re-delivery
that only gained Received headers is recognised, while a different mail that
reuses a Message-ID (broken senders do) is not. Without a Message-ID the key is
the hash of the exact raw bytes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_MSGID = re.compile(rb"<([^<>\s]{1,900})>")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
# The first Message-ID header of the header block, with its folded continuation lines.
_MESSAGE_ID_HEADER = re.compile(rb"^Message-ID[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.I | re.M)


@dataclass(frozen=True, slots=True)
class MailIdentity:
    """What de-duplication needs to know about one raw mail."""

    raw_sha256: str
    body_sha256: str
    message_id: str | None
    dedupe_key: str


def identify(raw: bytes) -> MailIdentity:
    """The identity of ``raw``; pure and cheap (the Message-ID found by pattern, no parser)."""
    raw_sha = hashlib.sha256(raw).hexdigest()
    end = _HEADER_END.search(raw)
    header_block = raw[: end.start()] if end else raw
    body = raw[end.end() :] if end else b""
    body_sha = hashlib.sha256(body.replace(b"\r\n", b"\n").rstrip()).hexdigest()
    message_id: str | None = None
    header = _MESSAGE_ID_HEADER.search(header_block)
    found = _MSGID.search(header.group(1)) if header else None
    if found:
        message_id = found.group(1).decode("utf-8", "replace")
    if message_id:
        key = hashlib.sha256(f"{message_id}\n{body_sha}".encode()).hexdigest()
        return MailIdentity(raw_sha, body_sha, message_id, f"mid:{key}")
    return MailIdentity(raw_sha, body_sha, None, f"raw:{raw_sha}")
