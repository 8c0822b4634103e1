"""A mail as it arrives on the desk: shown with BSN numbers masked, noted, put on the thread.

What the ticket application (``mail``, ``holds``) shares about one mail: the form
it is stored and relayed in, the notes about parts it does not show, the message
row it becomes, and the outcome the worker records on its spool row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import structlog

from mailgate.core.fields import ReferenceField, found_fields, missing_fields
from mailgate.core.model import Action, Attachment, MessageKind, ParsedMail
from mailgate.core.participants import sender
from mailgate.outbound.notifier import Change
from mailgate.store.repos import Tx
from mailgate.store.repos.history import Event
from mailgate.tickets.prepare import Prepared

log = structlog.get_logger("mailgate.tickets")
NOTED_SKIPS = 10  # skipped attachments named one by one on the ticket
NOBODY = "unknown sender"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one spool item."""

    spool_id: int
    action: Action
    ticket: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Arrival:
    """One mail on its way through ``Applier``: what it is and what it says, for display."""

    item: Prepared
    mail: ParsedMail  # BSN numbers masked, HTML sanitised
    text: str  # the visible reply text
    masked: int  # BSN numbers masked
    kind: MessageKind
    now: datetime

    @property
    def spool_id(self) -> int:
        return self.item.entry.id

    @property
    def author(self) -> str:
        return sender(self.mail) or NOBODY


def limit_notes(mail: ParsedMail, skipped: tuple[Attachment, ...]) -> list[str]:
    """What the ticket should say about the parts of a mail it does not show: a line per
    skipped attachment (a handful at most, then a count), and the parts never read."""
    notes = [
        f"{item.filename} ({item.size} bytes) is over a limit; it is kept in the raw mail only"
        for item in skipped[:NOTED_SKIPS]
    ]
    if len(skipped) > NOTED_SKIPS:
        notes.append(
            f"and {len(skipped) - NOTED_SKIPS} more attachments over the limits; "
            "they are kept in the raw mail only"
        )
    if mail.parts_skipped:
        notes.append(
            f"{mail.parts_skipped} more MIME parts than [intake] max_parts were not read; "
            "the raw mail keeps them all"
        )
    return notes


def add_message(tx: Tx, ticket: int, arrival: Arrival) -> int:
    """Put the mail on the ticket's thread as ``arrival.kind``; its message row."""
    return tx.history.add_message(
        ticket=ticket,
        spool_id=arrival.spool_id,
        mail=arrival.mail,
        kind=arrival.kind.value,
        visible_text=arrival.text,
        raw_sha256=arrival.item.entry.raw_sha256,
        now=arrival.now,
    )


def change_of(arrival: Arrival, ticket: int) -> Change:
    """What the notifier is told of this mail on ``ticket``."""
    return Change(
        ticket=ticket,
        mail=arrival.mail,
        kind=arrival.kind,
        author=sender(arrival.mail),
        message_text=arrival.text,
        decisions=arrival.item.classified.decisions,
    )


def fill_fields(
    tx: Tx, ticket: int, fields: tuple[ReferenceField, ...], arrival: Arrival, *, new: bool
) -> tuple[str, ...]:
    """Fill in the ticket's reference fields that the mail's subject or text carries (a
    field known already is kept; an agent changes it with ``#field``); the labels of the
    required fields still missing."""
    if not fields:
        return ()
    known = {} if new else tx.tickets.fields(ticket)
    found = found_fields(fields, known, arrival.mail.subject, arrival.text)
    if found:
        tx.tickets.set_fields(ticket, found)
        tx.history.add_events(
            [
                Event(ticket, "field_set", arrival.author, arrival.now, field=name, new=value)
                for name, value in found.items()
            ]
        )
    return tuple(f.label for f in missing_fields(fields, {**known, **found}))
