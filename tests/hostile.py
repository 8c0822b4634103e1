"""Hostile mail: headers that once made the parser raise, and a mutation fuzzer over real mail.

Shared by the tests and ``bench/hostile.py``. Every mail here must become a
ticket (or system mail) without an exception and without quarantine.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path

_HEAD = b"To: support@example.com\r\nMIME-Version: 1.0\r\n"


def _mail(headers: bytes, body: bytes = b"Content-Type: text/plain\r\n\r\nHallo.\r\n") -> bytes:
    return headers + _HEAD + body


# Each kind of header that once made the parser raise, and the From-with-NUL that once
# reached an envelope. Values: raw mail bytes.
HEADER_CLASSES: dict[str, bytes] = {
    "nul-in-charset-label": _mail(
        b"From: a@klant.nl\r\nSubject: =?utf\x00-8?q?Printer_brandt?=\r\n"
        b"Message-ID: <h1@klant.nl>\r\n"
    ),
    "8bit-date": _mail(
        b"From: a@klant.nl\r\nSubject: Datum\r\nDate: Mon, 5 Jan 2026 10:00:00 +0100 \xe9\xff\r\n"
        b"Message-ID: <h2@klant.nl>\r\n"
    ),
    "8bit-message-id": _mail(
        b"From: a@klant.nl\r\nSubject: Id\r\nMessage-ID: <h3\xe9\xff@klant.nl>\r\n"
    ),
    "malformed-encoded-word": _mail(
        b"From: =?utf-8?b?A?= <a@klant.nl>\r\nSubject: =?utf-8?b?A?= kapot\r\n"
        b"Message-ID: <h4@klant.nl>\r\nX-Anything: =?utf-8?b?A?=\r\n"
    ),
    "nesting-1000-deep": b"From: a@klant.nl\r\nSubject: Diep\r\nMessage-ID: <h5@klant.nl>\r\n"
    + _HEAD
    + b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(1000)
    )
    + b"Content-Type: text/plain\r\n\r\nHallo uit de diepte.\r\n",
    "8bit-delivery-status": (
        b"From: MAILER-DAEMON@klant.nl\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        b"Message-ID: <h6@klant.nl>\r\n" + _HEAD + b"Content-Type: multipart/report; "
        b"report-type=delivery-status; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\n"
        b"failed\r\n--XX\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; "
        b"klant.nl \xe9\xff\r\n\r\nFinal-Recipient: rfc822; x\xe9@y.nl\r\nAction: failed\r\n"
        b"Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 \xff\xfe\r\n--XX--\r\n"
    ),
    "nul-in-from-and-return-path": _mail(
        b"Return-Path: <bbb@klant-zzz.org\x00>\r\nFrom: bbb\x00@klant-zzz.org\r\n"
        b"Subject: Titel\x00 met\x07 controles\x1b\r\nMessage-ID: <h7@klant.nl>\r\n"
    ),
}


def corpus_raws(corpus: Path) -> list[bytes]:
    """The whole mails of the corpus manifest, in manifest order; none when it is absent."""
    manifest = corpus / "manifest.jsonl"
    if not manifest.exists():
        return []
    entries = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    return [
        (corpus / e["path"]).read_bytes() for e in entries if str(e["format"]).startswith("rfc822")
    ]


def as_delivered(raw: bytes) -> bytes:
    """``raw`` with CRLF line ends, as an MTA hands a mail over (corpus files have bare LF)."""
    return re.sub(rb"\r?\n", b"\r\n", raw)


# Byte strings a mutation splices in: the shapes that break parsers.
_SPLICES = (
    b"\x00",
    b"\xff\xfe",
    b"\xe9",
    b"=?utf-8?b?A?=",
    b"=?x\x00y?q?z?=",
    b"=?utf-8?q?=ZZ?=",
    b"\r\n",
    b"\n\n",
    b'\r\nContent-Type: multipart/mixed; boundary=""\r\n',
    b"\r\nContent-Transfer-Encoding: base64\r\n",
    b"--",
    b"<",
    b">",
    b'"',
    b"\\",
    b";",
    b"\t",
    b"\x1b$B",
    "\u202e".encode(),
    b"a" * 2000,
)


def mutate(raw: bytes, rng: random.Random) -> bytes:
    """One mutation of ``raw``: a few random splices, deletions, duplications or bit flips,
    biased towards the header block where parsers are most fragile."""
    data = bytearray(raw)
    end = raw.find(b"\r\n\r\n")
    head = end if end > 0 else min(len(raw), 2000)
    for _ in range(rng.randint(1, 6)):
        if not data:
            data += b"x"
        where = rng.randrange(len(data)) if rng.random() < 0.3 else rng.randrange(max(head, 1))
        where = min(where, len(data))
        action = rng.randrange(5)
        if action == 0:
            data[where:where] = rng.choice(_SPLICES)
        elif action == 1:
            del data[where : where + rng.randint(1, 40)]
        elif action == 2:
            chunk = bytes(data[where : where + rng.randint(1, 200)])
            data[where:where] = chunk * rng.randint(1, 4)
        elif action == 3 and where < len(data):
            data[where] ^= 1 << rng.randrange(8)
        else:
            data[where:where] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(data)


def mutations(seeds: list[bytes], count: int, seed: int = 14) -> Iterator[bytes]:
    """``count`` mutated mails made from ``seeds`` in turn, reproducibly."""
    rng = random.Random(seed)
    for index in range(count):
        yield mutate(seeds[index % len(seeds)], rng)
