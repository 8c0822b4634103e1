"""Addresses read from a mail's headers: leniently, never with a control character.

The standard reading first; where it finds no address in a value (a stray quote, a
broken group) the bare addresses the value holds, unless a control character is in it
(an address is never repaired around a NUL into someone else's). The author is the
first header of ``AUTHOR_HEADERS`` that names a valid address, else the envelope sender.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterable
from dataclasses import replace
from email.message import Message

from mailgate.core.headers import (
    CONTROLS,
    DEFAULT_FALLBACK_CHARSETS,
    decode_8bit,
    decode_header_value,
    raw_headers,
)
from mailgate.core.model import Address, ParsedMail


def addresses(
    pairs: Iterable[tuple[str, str]], fallbacks: tuple[str, ...] = DEFAULT_FALLBACK_CHARSETS
) -> tuple[Address, ...]:
    result: list[Address] = []
    for name, addr in pairs:
        addr = decode_8bit(addr or "", fallbacks).strip().strip("<>").rstrip(".")
        addr = _QUOTED_PAIR.sub(r"\1", addr)  # Postmaster\@host: the quoting undone
        # An address with a control character is no address: never stored, never mailed.
        if "@" not in addr or any(c.isspace() for c in addr) or CONTROLS.search(addr):
            continue
        local, _, domain = addr.rpartition("@")
        result.append(Address(f"{local}@{domain.lower()}", decode_header_value(name, fallbacks)))
    return tuple(result)


def with_envelope_sender(mail: ParsedMail, envelope_from: str | None) -> ParsedMail:
    """``mail``, or when no header named its author, with the SMTP envelope sender as its
    author (a valid address only: never the null sender of a bounce)."""
    if mail.from_addr is not None or not envelope_from:
        return mail
    found = addresses([("", envelope_from)])
    if not found:
        return mail
    return replace(mail, from_addr=found[0], from_header="envelope")


def header_addresses(
    msg: Message, name: str, fallbacks: tuple[str, ...] = DEFAULT_FALLBACK_CHARSETS
) -> tuple[Address, ...]:
    """The addresses of every ``name`` header; where the standard reading finds none in a
    value (a stray quote, a broken group), the bare addresses it holds."""
    found: list[Address] = []
    for value in raw_headers(msg, name):
        text = _raw_for_addresses(value, fallbacks)
        single = _ONE_ANGLE_ADDRESS.match(text)
        pairs = (
            [(single.group(1).strip('"'), single.group(2))]
            if single
            else email.utils.getaddresses([text])
        )
        read = addresses(pairs, fallbacks)
        if not read and not CONTROLS.search(text):  # never repair an address around a NUL
            read = addresses((("", a) for a in BARE_ADDRESS.findall(text)), fallbacks)
        found.extend(read)
    return tuple(dict.fromkeys(found))


_QUOTED_PAIR = re.compile(r"\\(.)")
# One mailbox in brackets after a display name with no comma or bracket of its own, which
# may itself look like an address ("alice@example.com <bob@example.com>"): the address in
# brackets is the one, as every mail client shows it.
_ONE_ANGLE_ADDRESS = re.compile(r'^\s*("[^"]*"|[^<>,"]*?)\s*<([^<>\s,]+@[^<>\s,]+)>\s*$')
# An address anywhere in a header value, for values too broken for the standard reading.
BARE_ADDRESS = re.compile(r"[^\s<>\"'(),;:@\[\]]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+\.?", re.IGNORECASE)

# Where a mail's author is named, in order: the first that names a valid address counts.
AUTHOR_HEADERS = ("From", "Sender", "Reply-To", "Return-Path")


def _raw_for_addresses(value: str, fallbacks: tuple[str, ...] = DEFAULT_FALLBACK_CHARSETS) -> str:
    """An address header's text with encoded words decoded only in display names, so a
    decoded comma or bracket never makes a second address; NUL kept, so that an address
    carrying it is dropped whole rather than repaired into someone else's."""
    return decode_8bit(value, fallbacks).replace("\r", " ").replace("\n", " ")


def author_count(msg: Message) -> int:
    """How many mailboxes the From header(s) name, counting ones too broken to read."""
    values = [_raw_for_addresses(v) for v in raw_headers(msg, "From")]
    return len([pair for pair in email.utils.getaddresses(values) if any(pair)])
