"""The tables, declared once as SQLModel classes: the shell's ORM rows, and their Core tables
(``table``) for the worker's statements; rows never leave ``mailgate.store``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _when(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def _text(*, nullable: bool = False) -> Any:
    return Field(sa_column=Column(Text, nullable=nullable))


def _ref(target: str, *, nullable: bool = False, index: bool = True) -> Any:
    return Field(
        sa_column=Column(
            Integer, ForeignKey(target, ondelete="CASCADE"), nullable=nullable, index=index
        )
    )


class InstallationRow(SQLModel, table=True):
    """One row: the identity of this installation, shared by all its instances."""

    __tablename__ = "installation"
    id: int = Field(default=1, primary_key=True)
    installation_id: str = Field(max_length=64)
    created_at: datetime = _when()
    # HMAC of a fixed text under the token secret: which secret the tokens were made with.
    secret_check: str | None = Field(default=None, max_length=64)


# The spool rows still to be processed (a literal: a partial index serves a query only
# when the query names the same value, not a parameter).
PENDING_ROWS = text("state = 'pending'")
# The outbox rows still to be sent, or being sent.
WAITING_ROWS = text("state IN ('pending', 'sending')")


def _pending(name: str, *columns: str) -> Index:
    """An index of the spool's pending rows alone (``PENDING_ROWS``)."""
    return Index(name, *columns, sqlite_where=PENDING_ROWS, postgresql_where=PENDING_ROWS)


class SpoolRow(SQLModel, table=True):
    """One received mail: where its raw bytes are, and how far processing got."""

    __tablename__ = "spool"
    __table_args__ = (
        Index("ix_spool_due", "state", "next_attempt_at"),
        # The few pending rows among years of done ones, in their order, with what the
        # worker asks of them (``SpoolRepo.due_sizes``): covering, it is cheaper than a scan
        # of the table whatever the planner's statistics say (none for an empty index).
        _pending("ix_spool_pending", "id", "next_attempt_at", "size"),
    )
    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(max_length=80, unique=True)
    raw_sha256: str = Field(max_length=64, index=True)
    size: int
    message_id: str | None = _text(nullable=True)
    source: str = Field(max_length=200)
    envelope_from: str | None = _text(nullable=True)
    envelope_to: str = _text()
    thread: str | None = _text(nullable=True)  # the Message-ID that started its thread
    # What an automatic answer would count against (``core.parties.sender_key``)
    sender_key: str | None = _text(nullable=True)
    received_at: datetime = _when()
    state: str = Field(max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = _when()
    outcome: str | None = Field(default=None, max_length=16)
    ticket_id: int | None = None
    reason: str | None = _text(nullable=True)
    error: str | None = _text(nullable=True)
    traceback_id: str | None = Field(default=None, max_length=32)
    traceback: str | None = _text(nullable=True)
    processed_at: datetime | None = _when(nullable=True)


class SpoolRawRow(SQLModel, table=True):
    """The raw bytes of a received mail: for good when it is smaller than ``[general]
    files_from`` (or ``blobs = "database"``), else until the worker moves them into a file.

    Recording a mail is then one database commit, one fsync, for a whole group of
    mails: the row and its bytes together (docs/decisions/0001-intake-spool-and-dedupe.md).
    """

    __tablename__ = "spool_raw"
    spool_id: int = Field(
        sa_column=Column(Integer, ForeignKey("spool.id", ondelete="CASCADE"), primary_key=True)
    )
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class TicketRow(SQLModel, table=True):
    """A ticket; its id is its human number."""

    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_updated", "updated_at", "id"),  # the desk's "last change first"
        {"sqlite_autoincrement": True},
    )
    id: int | None = Field(default=None, primary_key=True)
    queue: str = Field(max_length=64, index=True)
    title: str = _text()
    type: str = Field(max_length=32)
    priority: str = Field(max_length=16)
    status: str = Field(max_length=32, index=True)
    requester: str | None = _text(nullable=True)
    organisation: str | None = Field(default=None, max_length=255)
    assignee: str | None = _text(nullable=True)
    created_at: datetime = _when()
    updated_at: datetime = _when()
    updated_by: str = _text()
    version: int = 1
    action_by: str = Field(default="support", max_length=16, index=True)
    status_since: datetime | None = _when(nullable=True)
    approval: str = Field(default="none", max_length=16)
    quote: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    merged_into: int | None = Field(default=None, index=True)
    language: str | None = Field(default=None, max_length=8)  # the customer's, once known
    # The SLA clock (mailgate.core.sla.SlaClock).
    sla_consumed: int = 0
    sla_running_since: datetime | None = _when(nullable=True)
    sla_answered_at: datetime | None = _when(nullable=True)
    sla_solved_at: datetime | None = _when(nullable=True)
    sla_agreed_solve: int | None = None
    sla_fixed_due: datetime | None = _when(nullable=True)
    sla_answer_due: datetime | None = _when(nullable=True, index=True)
    sla_solve_due: datetime | None = _when(nullable=True, index=True)


class MessageRow(SQLModel, table=True):
    """One mail of a ticket's thread, inbound or outbound."""

    __tablename__ = "messages"
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = _ref("tickets.id")
    spool_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("spool.id"), nullable=True)
    )
    direction: str = Field(max_length=8)
    kind: str = Field(max_length=16)
    from_addr: str | None = _text(nullable=True)
    from_name: str | None = _text(nullable=True)
    to_addrs: str = _text()
    cc_addrs: str = _text()
    subject: str = _text()
    visible_text: str = _text()
    full_text: str = _text()
    html: str | None = _text(nullable=True)
    message_id: str | None = Field(default=None, max_length=1000, index=True)
    in_reply_to: str = _text()
    references: str = _text()
    raw_sha256: str | None = Field(default=None, max_length=64)
    sent_at: datetime | None = _when(nullable=True)
    created_at: datetime = _when()


class TicketFieldRow(SQLModel, table=True):
    """One reference field of a ticket (``[[queues.fields]]``): a debtor number, say."""

    __tablename__ = "ticket_fields"
    __table_args__ = (Index("ix_ticket_fields_value", "value"),)  # found by its value
    ticket_id: int = Field(
        sa_column=Column(Integer, ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True)
    )
    name: str = Field(max_length=32, primary_key=True)
    value: str = Field(max_length=200)


class ParticipantRow(SQLModel, table=True):
    """A person on a ticket: requester, CC or agent, with the organisation of their domain."""

    __tablename__ = "participants"
    __table_args__ = (
        UniqueConstraint("ticket_id", "address"),
        Index("ix_participants_address", "address"),  # the desk's search by address
    )
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = _ref("tickets.id")
    address: str = Field(max_length=320)
    name: str = _text()
    role: str = Field(max_length=16)
    organisation: str = Field(max_length=255)


class AttachmentRow(SQLModel, table=True):
    """An attachment of one message; the bytes live on disk under their SHA-256."""

    __tablename__ = "attachments"
    id: int | None = Field(default=None, primary_key=True)
    message_row_id: int = _ref("messages.id")
    filename: str = _text()
    original_filename: str = _text()
    content_type: str = Field(max_length=255)
    size: int
    sha256: str = Field(max_length=64, index=True)
    content_id: str = Field(default="", max_length=998)


class EventRow(SQLModel, table=True):
    """One line of a ticket's audit log: what changed from what to what, by whom, when."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_kind_new", "kind", "new"),)
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = _ref("tickets.id")
    at: datetime = _when()
    actor: str = _text()
    kind: str = Field(max_length=32)
    field: str | None = Field(default=None, max_length=32)
    old: str | None = _text(nullable=True)
    new: str | None = _text(nullable=True)
    message_row_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("messages.id"), nullable=True)
    )
    detail: str | None = _text(nullable=True)


class ImapCheckpointRow(SQLModel, table=True):
    """How far one IMAP mailbox was stored: the folder's UIDVALIDITY and highest stored UID."""

    __tablename__ = "imap_checkpoints"
    mailbox: str = Field(primary_key=True, max_length=64)
    folder: str = _text()
    uidvalidity: int = Field(sa_column=Column(BigInteger, nullable=False))
    last_uid: int = Field(sa_column=Column(BigInteger, nullable=False))
    updated_at: datetime = _when()


class OutboxRow(SQLModel, table=True):
    """One rendered outgoing mail and how far its delivery got."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "state", "next_attempt_at"),
        Index("ix_outbox_message_id", "message_id"),
        Index("ix_outbox_sent", "state", "sent_at"),
        # The mails still to send among the years of sent ones, covering what the sender
        # asks of them (``OutboxRepo.claim``), as ``ix_spool_pending`` for the spool.
        Index(
            "ix_outbox_waiting",
            "id",
            "state",
            "next_attempt_at",
            "claimed_at",
            sqlite_where=WAITING_ROWS,
            postgresql_where=WAITING_ROWS,
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("tickets.id"), nullable=True)
    )
    kind: str = Field(max_length=32)
    recipients: str = _text()
    envelope_from: str = _text()
    message_id: str = Field(max_length=1000)
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    state: str = Field(max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = _when()
    claimed_at: datetime | None = _when(nullable=True)
    last_error: str | None = _text(nullable=True)
    created_at: datetime = _when()
    sent_at: datetime | None = _when(nullable=True)


class AutoAnswerRow(SQLModel, table=True):
    """One automatic mail to one remote recipient (an acknowledgment or another capped
    notice): what the hourly caps and the loop rules of ``core.parties`` count, by index,
    without reading the outbox."""

    __tablename__ = "auto_answers"
    __table_args__ = (
        Index("ix_auto_answers_mailbox_at", "mailbox", "at"),
        Index("ix_auto_answers_domain_at", "domain", "at"),
        Index("ix_auto_answers_ticket_at", "ticket_id", "at"),
        Index("ix_auto_answers_at", "at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    outbox_id: int
    kind: str = Field(max_length=32)
    mailbox: str = Field(max_length=320)
    domain: str = Field(max_length=255)
    subject: str = _text()
    ticket_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("tickets.id"), nullable=True)
    )
    at: datetime = _when()


class SuppressionRow(SQLModel, table=True):
    """An address mailgate does not mail until ``until``, after a permanent bounce."""

    __tablename__ = "suppressions"
    address: str = Field(primary_key=True, max_length=320)
    until: datetime = _when()
    reason: str = _text()
    created_at: datetime = _when()


class TimerRow(SQLModel, table=True):
    """A workflow timer of one ticket: fire ``trigger`` at ``due_at`` unless cancelled first.

    Armed when the ticket enters a state, cancelled when it leaves; fired in the
    same transaction as the change it makes, so it fires once.
    """

    __tablename__ = "timers"
    __table_args__ = (Index("ix_timers_due", "state", "due_at"),)
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = _ref("tickets.id")
    trigger: str = Field(max_length=32)
    status: str = Field(max_length=32)  # the ticket's status when armed
    due_at: datetime = _when()
    state: str = Field(max_length=16)  # pending | fired | cancelled
    armed_at: datetime = _when()
    fired_at: datetime | None = _when(nullable=True)


class BlobRow(SQLModel, table=True):
    """Bytes by their SHA-256, when ``[general] blobs = "database"``."""

    __tablename__ = "blobs"
    sha256: str = Field(primary_key=True, max_length=64)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class AgentPasswordRow(SQLModel, table=True):
    """An agent's password for the web desk: an argon2 hash, never the password."""

    __tablename__ = "agent_passwords"
    address: str = Field(primary_key=True, max_length=320)
    hash: str = _text()
    changed_at: datetime = _when()


class UsedSignInLinkRow(SQLModel, table=True):
    """A mailed sign-in link that was used: it does not work a second time."""

    __tablename__ = "used_sign_in_links"
    nonce: str = Field(primary_key=True, max_length=64)
    used_at: datetime = _when()


def table(name: str) -> Table:
    """The Core table of ``name``, for the repositories' statements."""
    return SQLModel.metadata.tables[name]
