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
from email.parser import BytesHeaderParser
from email.policy import compat32

_MSGID = re.compile(r"<([^<>\s]{1,900})>")
_HEADER_END = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True, slots=True)
class MailIdentity:
    """What de-duplication needs to know about one raw mail."""

    raw_sha256: str
    body_sha256: str
    message_id: str | None
    dedupe_key: str


def body_bytes(raw: bytes) -> bytes:
    """The body of ``raw`` with line endings and trailing whitespace made uniform."""
    match = _HEADER_END.search(raw)
    body = raw[match.end() :] if match else b""
    return body.replace(b"\r\n", b"\n").rstrip()


def identify(raw: bytes) -> MailIdentity:
    """The identity of ``raw``; pure and cheap (headers are parsed, the body only hashed)."""
    raw_sha = hashlib.sha256(raw).hexdigest()
    body_sha = hashlib.sha256(body_bytes(raw)).hexdigest()
    message_id: str | None = None
    try:
        headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
        found = _MSGID.search(str(headers.get("Message-ID") or ""))
        message_id = found.group(1) if found else None
    except Exception:  # a header block too broken to read still has a raw hash
        message_id = None
    if message_id:
        key = hashlib.sha256(f"{message_id}\n{body_sha}".encode()).hexdigest()
        return MailIdentity(raw_sha, body_sha, message_id, f"mid:{key}")
    return MailIdentity(raw_sha, body_sha, None, f"raw:{raw_sha}")
