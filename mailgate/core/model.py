"""The typed values that cross mailgate's boundaries: mails, addresses, routing outcomes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

TICKET_TYPES = ("question", "bug", "configuration_change", "feedback", "extra_request")
PRIORITIES = ("critical", "high", "medium", "low")


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


class MessageKind(StrEnum):
    CUSTOMER = "customer"
    AGENT = "agent"
    NOTE = "note"
    AUTO = "auto"
    SYSTEM = "system"
    HELD = "held"  # a stranger's reply, not relayed until the team decides


class Role(StrEnum):
    REQUESTER = "requester"
    CC = "cc"
    AGENT = "agent"


class Action(StrEnum):
    """What the intake did with one mail; printed by ``mailgate ingest``."""

    CREATED = "created"
    APPENDED = "appended"
    DUPLICATE = "duplicate"
    DROPPED = "dropped"
    SYSTEM = "system"
    HELD = "held"
    BOUNCE = "bounce"
    QUARANTINED = "quarantined"
    DEFERRED = "deferred"
    STORED = "stored"


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox: the address in lower case where it is case-insensitive, and a display name."""

    email: str
    name: str = ""

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2].lower()


@dataclass(frozen=True, slots=True)
class Attachment:
    """One attachment of a mail, with a filename that is safe to show and to offer for download."""

    filename: str
    original_filename: str
    content_type: str
    data: bytes
    sha256: str
    content_id: str = ""  # an inline part the HTML refers to as cid:<content_id>

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True)
class ParsedMail:
    """Everything mailgate uses from one mail, decoded; never a library's dict."""

    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    subject: str
    from_addr: Address | None
    reply_to: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    date: datetime | None
    text: str
    html: str | None
    attachments: tuple[Attachment, ...]
    headers: tuple[tuple[str, str], ...]
    defects: tuple[str, ...]
    parser: str
    delivery_status: str = ""  # text of a message/delivery-status part (RFC 3464), if any
    text_from_html: bool = False  # no text/plain part: ``text`` was made from ``html``
    # How many addresses the From header itself named: 0 when ``from_addr`` was taken from
    # Sender or Return-Path; more than 1 for a mail with several authors. Only a single
    # From can speak for the team.
    from_count: int = 1
    # The header ``from_addr`` was read from: "From", or when it named no valid address,
    # "Sender", "Reply-To" or "Return-Path"; "envelope" when only the SMTP sender named
    # one (``tickets.prepare``); "" when nothing did.
    from_header: str = "From"
    parts_skipped: int = 0  # MIME parts past the limit, not read (the raw mail keeps them)
    language: str | None = None  # the language of the author's own text, when clear

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Reply:
    """The mail continues ticket ``ticket``; ``matched_by`` says which evidence decided it."""

    ticket: int
    matched_by: str
    evidence: str


@dataclass(frozen=True, slots=True)
class NewTicket:
    """The mail opens a new ticket in ``queue``."""

    queue: str
    title: str
    reason: str


@dataclass(frozen=True, slots=True)
class BounceOfOurs:
    """The mail is a bounce of outbox mail ``outbox``, found by ``matched_by`` (its VERP
    address, or the Message-ID of the returned original)."""

    outbox: int
    matched_by: str


@dataclass(frozen=True, slots=True)
class SystemMail:
    """A machine's mail that names no ticket and may not open one: kept, with the reason."""

    reason: str


@dataclass(frozen=True, slots=True)
class Drop:
    """The mail is kept but makes no ticket and no message; ``reason`` says why."""

    reason: str


Route = Reply | NewTicket | BounceOfOurs | SystemMail | Drop


@dataclass(frozen=True, slots=True)
class Participant:
    """A person on a ticket."""

    address: str
    name: str
    role: Role
    organisation: str


@dataclass(frozen=True, slots=True)
class NewSpoolItem:
    """A mail about to be recorded in the spool."""

    dedupe_key: str
    raw_sha256: str
    size: int
    message_id: str | None
    source: str
    envelope_from: str | None
    envelope_to: tuple[str, ...]
    thread: str | None = None  # the Message-ID that started its thread (``identify``)
    # What an automatic answer to it would count against (``core.parties.sender_key``):
    # the worker processes share the spool by it.
    sender_key: str | None = None


@dataclass(frozen=True, slots=True)
class Stored:
    """The spool's receipt for one mail: the row that holds it (its own, or the one it
    duplicates), and the hash its bytes are kept under."""

    spool_id: int
    duplicate: bool
    raw_sha256: str


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """A received mail as the spool records it."""

    id: int
    dedupe_key: str
    raw_sha256: str
    size: int
    message_id: str | None
    source: str
    envelope_from: str | None
    envelope_to: tuple[str, ...]
    received_at: datetime
    state: str
    attempts: int
    outcome: str | None
    ticket: int | None
    reason: str | None
    error: str | None
    traceback_id: str | None
    processed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AttachmentView:
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class MessageView:
    direction: str
    kind: str
    from_addr: str | None
    from_name: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    text: str
    full_text: str
    message_id: str | None
    created_at: datetime
    attachments: tuple[AttachmentView, ...]


@dataclass(frozen=True, slots=True)
class EventView:
    at: datetime
    actor: str
    kind: str
    field: str | None
    old: str | None
    new: str | None
    detail: str | None


@dataclass(frozen=True, slots=True)
class TicketView:
    """A ticket as the CLI and later the notifications see it."""

    number: int
    queue: str
    title: str
    type: str
    priority: str
    status: str
    requester: str | None
    organisation: str | None
    assignee: str | None
    created_at: datetime
    updated_at: datetime
    updated_by: str
    participants: tuple[Participant, ...]
    messages: tuple[MessageView, ...]
    events: tuple[EventView, ...]
    action_by: str = "support"
    approval: str = "none"
    quote: str = ""
    merged_into: int | None = None
    language: str | None = None  # the customer's, told by their first mail; None: not known
    fields: tuple[tuple[str, str], ...] = ()  # reference fields (name, value), by name


def within_limits(
    attachments: tuple[Attachment, ...], each: int, total: int, count: int
) -> tuple[tuple[Attachment, ...], tuple[Attachment, ...]]:
    """The attachments to store and those over ``each`` bytes, past ``total`` bytes in all, or
    past the first ``count``."""
    kept: list[Attachment] = []
    skipped: list[Attachment] = []
    used = 0
    for item in attachments:
        if item.size > each or used + item.size > total or len(kept) >= count:
            skipped.append(item)
        else:
            kept.append(item)
            used += item.size
    return tuple(kept), tuple(skipped)


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One mail in the outbox, as the sender and ``mailgate outbox`` see it."""

    id: int
    ticket: int | None
    kind: str
    recipients: tuple[str, ...]
    envelope_from: str
    message_id: str
    state: str
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
