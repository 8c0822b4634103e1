"""Large attachments set aside while a mail is parsed, and given back to the parsed mail.

The MIME parsers hold a mail several times over, so each long base64 run of a big
mail is replaced by a short stand-in before parsing and restored afterwards.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import replace

from mailgate.core.model import ParsedMail

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


def set_aside(raw: bytes) -> tuple[bytes, dict[bytes, memoryview]]:
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


def restore(parsed: ParsedMail, aside: dict[bytes, memoryview]) -> ParsedMail | None:
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
