"""A ticket's history: its thread (mails in and out, their attachments) and its audit events.

Blocking, on the transaction's connection, like the other repositories; rows are
only added, never changed, so the whole history of a ticket stays as it happened.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, and_, bindparam, case, exists, insert, select

from mailgate.core.model import Attachment, MessageKind, ParsedMail
from mailgate.store.driver import run
from mailgate.store.tables import table

MESSAGES = table("messages")
ATTACHMENTS = table("attachments")
EVENTS = table("events")

_ADD_EVENTS = insert(EVENTS)
_EVENT = (
    select(EVENTS.c.id)
    .where(EVENTS.c.kind == bindparam("kind"), EVENTS.c.new == bindparam("new"))
    .limit(1)
)
_TICKET_EVENT = (
    select(EVENTS.c.id)
    .where(
        EVENTS.c.ticket_id == bindparam("ticket"),
        EVENTS.c.kind == bindparam("kind"),
        EVENTS.c.new == bindparam("new"),
    )
    .limit(1)
)
_EVENT_VALUES = select(EVENTS.c.new).where(
    EVENTS.c.ticket_id == bindparam("id"), EVENTS.c.kind == bindparam("kind")
)
# The team's decision on a held mail is an event on its row; the row itself never changes.
HELD_DECISIONS = ("message_released", "message_rejected")
_HELD = (
    select(MESSAGES.c.id, MESSAGES.c.from_addr)
    .where(
        MESSAGES.c.ticket_id == bindparam("id"),
        MESSAGES.c.kind == MessageKind.HELD.value,
        ~exists().where(
            and_(
                EVENTS.c.message_row_id == MESSAGES.c.id,
                EVENTS.c.kind.in_(HELD_DECISIONS),
            )
        ),
    )
    .order_by(MESSAGES.c.id)
)
_ADD_MESSAGE = insert(MESSAGES).returning(MESSAGES.c.id)
_ADD_SENT = insert(MESSAGES)
_ADD_ATTACHMENTS = insert(ATTACHMENTS)
# In-Reply-To and References of an answer on a ticket's thread (``thread_anchor``).
Anchor = tuple[str | None, tuple[str, ...]]
# The kinds of mail a thread's answers are anchored on (``HistoryRepo.thread_anchor``).
ANCHORING = (MessageKind.CUSTOMER.value, MessageKind.AUTO.value)
_ANCHOR = (
    select(MESSAGES.c.message_id, MESSAGES.c.references)
    .where(
        MESSAGES.c.ticket_id == bindparam("id"),
        MESSAGES.c.direction == "in",
        MESSAGES.c.kind.in_(ANCHORING),
        MESSAGES.c.message_id.is_not(None),
    )
    .order_by(
        case((MESSAGES.c.kind == MessageKind.CUSTOMER.value, 1), else_=0).desc(),
        MESSAGES.c.id.desc(),
    )
    .limit(1)
)


@dataclass(frozen=True, slots=True)
class Event:
    """One line of a ticket's audit log, to be written."""

    ticket: int
    kind: str
    actor: str
    at: datetime
    field: str | None = None
    old: str | None = None
    new: str | None = None
    message_row: int | None = None
    detail: str | None = None

    def values(self) -> dict[str, object]:
        return {
            "ticket_id": self.ticket,
            "at": self.at,
            "actor": self.actor,
            "kind": self.kind,
            "field": self.field,
            "old": self.old,
            "new": self.new,
            "message_row_id": self.message_row,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One of our own mails, as it goes on the ticket's thread."""

    ticket: int
    kind: str
    from_addr: str
    to: tuple[str, ...]
    subject: str
    text: str
    html: str
    message_id: str
    at: datetime

    def values(self) -> dict[str, object]:
        return {
            "ticket_id": self.ticket,
            "spool_id": None,
            "direction": "out",
            "kind": self.kind,
            "from_addr": self.from_addr,
            "from_name": None,
            "to_addrs": "\n".join(self.to),
            "cc_addrs": "",
            "subject": self.subject,
            "visible_text": self.text,
            "full_text": self.text,
            "html": self.html,
            "message_id": self.message_id,
            "in_reply_to": "",
            "references": "",
            "raw_sha256": None,
            "sent_at": self.at,
            "created_at": self.at,
        }


class HistoryRepo:
    """Adds to the thread and the audit log of tickets; reads what threading needs."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # --- events ------------------------------------------------------------------------

    def add_events(self, events: Sequence[Event]) -> None:
        """Write audit events, all in one statement."""
        if events:
            run(self.conn, _ADD_EVENTS, [e.values() for e in events])

    def event_exists(self, kind: str, *, new: str, ticket: int | None = None) -> bool:
        """Whether an event of ``kind`` with value ``new`` exists (on ``ticket``, or on any)."""
        if ticket is None:
            found = run(self.conn, _EVENT, {"kind": kind, "new": new})
        else:
            found = run(self.conn, _TICKET_EVENT, {"ticket": ticket, "kind": kind, "new": new})
        return found.first() is not None

    def event_values(self, number: int, kind: str) -> set[str]:
        """The ``new`` values of a ticket's events of ``kind``."""
        rows = run(self.conn, _EVENT_VALUES, {"id": number, "kind": kind})
        return {v for v in rows.scalars() if v is not None}

    # --- the thread --------------------------------------------------------------------

    def add_message(
        self,
        *,
        ticket: int,
        spool_id: int | None,
        mail: ParsedMail,
        kind: str,
        visible_text: str,
        raw_sha256: str | None,
        now: datetime,
    ) -> int:
        """An inbound mail on the thread, with its attachments; its row id."""
        row = run(
            self.conn,
            _ADD_MESSAGE,
            {
                "ticket_id": ticket,
                "spool_id": spool_id,
                "direction": "in",
                "kind": kind,
                "from_addr": mail.from_addr.email if mail.from_addr else None,
                "from_name": mail.from_addr.name if mail.from_addr else None,
                "to_addrs": "\n".join(a.email for a in mail.to),
                "cc_addrs": "\n".join(a.email for a in mail.cc),
                "subject": mail.subject,
                "visible_text": visible_text,
                "full_text": mail.text,
                "html": mail.html,
                "message_id": mail.message_id,
                "in_reply_to": "\n".join(mail.in_reply_to),
                "references": "\n".join(mail.references),
                "raw_sha256": raw_sha256,
                "sent_at": mail.date,
                "created_at": now,
            },
        ).scalar_one()
        self.add_attachments(int(row), mail.attachments)
        return int(row)

    def add_attachments(self, message_row: int, attachments: Iterable[Attachment]) -> None:
        rows = [
            {
                "message_row_id": message_row,
                "filename": item.filename,
                "original_filename": item.original_filename,
                "content_type": item.content_type,
                "size": item.size,
                "sha256": item.sha256,
                "content_id": item.content_id,
            }
            for item in attachments
        ]
        if rows:
            run(self.conn, _ADD_ATTACHMENTS, rows)

    def add_sent(self, sent: Sequence[SentMessage]) -> None:
        """Our own mails on the thread, in one statement."""
        if sent:
            run(self.conn, _ADD_SENT, [m.values() for m in sent])

    def held(self, number: int) -> list[tuple[int, str]]:
        """The ticket's held mails the team has not decided on: (message row, author)."""
        rows = run(self.conn, _HELD, {"id": number})
        return [(int(r.id), str(r.from_addr or "")) for r in rows]

    def thread_anchor(self, number: int) -> Anchor:
        """The latest Message-ID a customer sent on a ticket and the References a reply to it
        carries: the last mail a person wrote, or, on a ticket no person wrote to yet (a
        monitoring alert), the last automatic one; never an out-of-office over a person's.
        Never an agent's mail: an agent's answer to a team notice names that notice, and a
        team notice's Message-ID is the agents' proof (``senders.agent_authority``), so it
        must never reach a customer."""
        row = run(self.conn, _ANCHOR, {"id": number}).first()
        if row is None:
            return None, ()
        return anchor(row.message_id, row.references.split("\n"))


def first_anchor(mail: ParsedMail, kind: str) -> Anchor:
    """``thread_anchor`` of a ticket whose one mail is ``mail``, on its thread as ``kind``:
    known without a query to the ticket that mail has just opened."""
    if kind not in ANCHORING or mail.message_id is None:
        return None, ()
    return anchor(mail.message_id, mail.references)


def anchor(message_id: str, references: Iterable[str]) -> tuple[str, tuple[str, ...]]:
    """In-Reply-To and References of an answer to the mail ``message_id``."""
    return message_id, (*(r for r in references if r), message_id)
