"""``Repo``: the command line's and the HTTP endpoints' async view of one session.

Its queries that the worker also runs are the aggregates' (``Tx``), reached through
``run_sync``; the rest (listings, the ticket view, counts for health and metrics, the
quarantine and outbox retries) live here. Retention's are ``purge``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import func
from sqlalchemy.orm import defer
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mailgate.core.desk import TicketState
from mailgate.core.model import (
    AttachmentView,
    EventView,
    MessageView,
    OutboxItem,
    Participant,
    SpoolEntry,
    TicketView,
)
from mailgate.core.notify import Kind
from mailgate.core.sla import SlaClock
from mailgate.store.repos.history import Event
from mailgate.store.repos.outbox import (
    OUTBOX_DEAD,
    OUTBOX_PENDING,
    OUTBOX_SENDING,
    outbox_item,
)
from mailgate.store.repos.spool import QUARANTINED, spool_entry
from mailgate.store.repos.tx import Tx
from mailgate.store.tables import (
    AttachmentRow,
    BlobRow,
    EventRow,
    ImapCheckpointRow,
    InstallationRow,
    MessageRow,
    OutboxRow,
    SpoolRawRow,
    SpoolRow,
    TicketRow,
)

T = TypeVar("T")

ACKNOWLEDGMENT = Kind.ACK.value  # the automatic mail that answers a mail


class Repo:
    """The queries of one transaction; every method returns core values, never rows."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _sync(self, work: Callable[[Tx], T]) -> T:
        """``work`` on this session's connection, through the aggregates' repositories."""
        return await self.session.run_sync(lambda sync: work(Tx.on(sync.connection())))

    # --- installation -------------------------------------------------------------------

    async def installation(self) -> tuple[str, str | None] | None:
        """This installation's id and its secret's fingerprint; None before first use."""
        row = await self.session.get(InstallationRow, 1)
        return None if row is None else (row.installation_id, row.secret_check)

    async def record_installation(
        self, candidate: str, secret_check: str, now: datetime, *, adopt: bool = False
    ) -> tuple[str, str]:
        """This installation's id and the fingerprint of the secret its tokens were made
        with, recording ``candidate`` and ``secret_check`` on first use (and the check where
        none is recorded yet, or when ``adopt`` says the secret was changed on purpose)."""
        row = await self.session.get(InstallationRow, 1)
        if row is None:
            row = InstallationRow(
                id=1, installation_id=candidate, created_at=now, secret_check=secret_check
            )
            self.session.add(row)
        elif row.secret_check is None or adopt:
            row.secret_check = secret_check
        await self.session.flush()
        return row.installation_id, row.secret_check or secret_check

    # --- spool ---------------------------------------------------------------------------

    async def spool_raw(self, spool_id: int) -> bytes | None:
        """The bytes of a mail not yet moved into the blob store; None once moved."""
        row = await self.session.get(SpoolRawRow, spool_id)
        return None if row is None else bytes(row.raw)

    async def spool_by_message_id(self, message_id: str) -> list[int]:
        rows = await self.session.exec(
            select(SpoolRow.id)
            .where(SpoolRow.message_id == message_id.strip().strip("<>"))
            .order_by(col(SpoolRow.id))
        )
        return [i for i in rows.all() if i is not None]

    async def outbox_of_ticket_between(
        self, ticket: int, start: datetime, end: datetime
    ) -> list[OutboxItem]:
        """The outbox mails queued for ``ticket`` from ``start`` to ``end``."""
        rows = await self.session.exec(
            select(OutboxRow)
            .where(
                OutboxRow.ticket_id == ticket,
                col(OutboxRow.created_at) >= start,
                col(OutboxRow.created_at) <= end,
            )
            .order_by(col(OutboxRow.id))
        )
        return [outbox_item(r) for r in rows.all()]

    async def spool_get(self, spool_id: int) -> SpoolEntry | None:
        return await self._sync(lambda tx: tx.spool.get(spool_id))

    async def spool_due(self, now: datetime, limit: int) -> list[int]:
        """Ids of pending mails whose next attempt is due, oldest first."""
        return await self._sync(lambda tx: tx.spool.due(now, limit))

    async def quarantined(self) -> list[SpoolEntry]:
        rows = await self.session.exec(
            select(SpoolRow).where(SpoolRow.state == QUARANTINED).order_by(col(SpoolRow.id))
        )
        return [spool_entry(r) for r in rows.all()]

    async def requeue(self, spool_ids: Iterable[int] | None, now: datetime) -> list[int]:
        """Put quarantined mails back in line; all of them when ``spool_ids`` is None."""
        return await self._sync(lambda tx: tx.spool.requeue(spool_ids, now))

    async def imap_checkpoint(self, mailbox: str, folder: str) -> tuple[int, int] | None:
        """(UIDVALIDITY, last stored UID) of ``mailbox``'s ``folder``, if recorded."""
        row = await self.session.get(ImapCheckpointRow, mailbox)
        if row is None or row.folder != folder:
            return None
        return row.uidvalidity, row.last_uid

    async def imap_checkpoint_set(
        self, mailbox: str, folder: str, uidvalidity: int, last_uid: int, now: datetime
    ) -> None:
        row = await self.session.get(ImapCheckpointRow, mailbox)
        if row is None:
            row = ImapCheckpointRow(
                mailbox=mailbox,
                folder=folder,
                uidvalidity=uidvalidity,
                last_uid=last_uid,
                updated_at=now,
            )
        elif (row.folder, row.uidvalidity) != (folder, uidvalidity) or last_uid > row.last_uid:
            row.folder, row.uidvalidity, row.last_uid = folder, uidvalidity, last_uid
            row.updated_at = now
        self.session.add(row)

    # --- routing lookup ------------------------------------------------------------------

    # --- tickets -------------------------------------------------------------------------

    async def ticket_state(self, number: int, *, lock: bool = False) -> TicketState | None:
        return await self._sync(lambda tx: tx.tickets.state(number, lock=lock))

    async def tickets_list(
        self,
        *,
        status: str | None = None,
        action_by: str | None = None,
        assignee: str | None = None,
    ) -> list[int]:
        query = select(TicketRow.id).order_by(col(TicketRow.id))
        if status:
            query = query.where(TicketRow.status == status)
        if action_by:
            query = query.where(TicketRow.action_by == action_by)
        if assignee:
            query = query.where(TicketRow.assignee == assignee.lower())
        return [i for i in (await self.session.exec(query)).all() if i is not None]

    # --- timers --------------------------------------------------------------------------

    async def sla_clock(self, ticket: int) -> SlaClock:
        return await self._sync(lambda tx: tx.timers.sla_clock(ticket))

    async def blob_put(self, sha256: str, data: bytes) -> None:
        """Store bytes once under their hash (a second put of the same bytes does nothing)."""
        if await self.session.get(BlobRow, sha256) is None:
            self.session.add(BlobRow(sha256=sha256, data=data))
            await self.session.flush()

    async def blob_get(self, sha256: str) -> bytes | None:
        row = await self.session.get(BlobRow, sha256)
        return None if row is None else bytes(row.data)

    async def tickets_open(self, closed_states: Iterable[str]) -> list[int]:
        """Tickets not in one of ``closed_states`` and not merged away, by number."""
        rows = await self.session.exec(
            select(TicketRow.id)
            .where(
                col(TicketRow.status).not_in(list(closed_states)),
                col(TicketRow.merged_into).is_(None),
            )
            .order_by(col(TicketRow.id))
        )
        return [i for i in rows.all() if i is not None]

    async def event_add(self, event: Event) -> None:
        await self._sync(lambda tx: tx.history.add_events([event]))

    # --- outbox --------------------------------------------------------------------------

    async def tickets_by_status(self) -> dict[str, int]:
        return await self._count_by(TicketRow.status)

    async def outbox_by_state(self) -> dict[str, int]:
        return await self._count_by(OutboxRow.state)

    async def _count_by(self, column: Any) -> dict[str, int]:
        """Rows per value of one column of one table."""
        rows = await self.session.exec(select(column, func.count()).group_by(column))
        return {str(value): int(count) for value, count in rows.all()}

    async def outbox_stuck(self, before: datetime) -> int:
        """Outbox mails still to send that were due before ``before``."""
        found = await self.session.exec(
            select(func.count()).where(
                col(OutboxRow.state).in_([OUTBOX_PENDING, OUTBOX_SENDING]),
                col(OutboxRow.next_attempt_at) < before,
            )
        )
        return int(found.one())

    async def outbox_list(
        self, state: str | None = None, newest: int | None = None
    ) -> list[OutboxItem]:
        """The outbox's mails (in ``state``), oldest first; or the ``newest`` so many,
        newest first."""
        query = select(OutboxRow).options(defer(OutboxRow.raw))  # type: ignore[arg-type]
        if state is not None:
            query = query.where(OutboxRow.state == state)
        if newest is not None:
            query = query.order_by(col(OutboxRow.id).desc()).limit(newest)
        else:
            query = query.order_by(col(OutboxRow.id))
        return [outbox_item(r) for r in (await self.session.exec(query)).all()]

    async def outbox_retry(self, outbox_ids: Iterable[int] | None, now: datetime) -> list[int]:
        """Put dead mails back in line (all dead ones when ``outbox_ids`` is None)."""
        query = select(OutboxRow).where(OutboxRow.state == OUTBOX_DEAD)
        if outbox_ids is not None:
            query = query.where(col(OutboxRow.id).in_(list(outbox_ids)))
        rows = (await self.session.exec(query)).all()
        for row in rows:
            row.state, row.next_attempt_at, row.attempts = OUTBOX_PENDING, now, 0
            self.session.add(row)
        return [r.id for r in rows if r.id is not None]

    # --- views -----------------------------------------------------------------------------

    async def participants_of(self, ticket: int) -> tuple[Participant, ...]:
        return await self._sync(lambda tx: tx.tickets.participants(ticket))

    async def ticket_view(
        self, number: int, *, with_messages: bool = True, with_events: bool = True
    ) -> TicketView | None:
        ticket = await self.session.get(TicketRow, number)
        if ticket is None or ticket.id is None:
            return None
        people = await self.participants_of(number)
        fields = await self._sync(lambda tx: tx.tickets.fields(number))
        messages = await self._messages(number) if with_messages else []
        events: Sequence[EventRow] = ()
        if with_events:
            events = (
                await self.session.exec(
                    select(EventRow).where(EventRow.ticket_id == number).order_by(col(EventRow.id))
                )
            ).all()
        return TicketView(
            number=ticket.id,
            queue=ticket.queue,
            title=ticket.title,
            type=ticket.type,
            priority=ticket.priority,
            status=ticket.status,
            requester=ticket.requester,
            organisation=ticket.organisation,
            assignee=ticket.assignee,
            created_at=ticket.created_at,
            updated_at=ticket.updated_at,
            updated_by=ticket.updated_by,
            participants=tuple(people),
            messages=tuple(messages),
            events=tuple(
                EventView(e.at, e.actor, e.kind, e.field, e.old, e.new, e.detail) for e in events
            ),
            action_by=ticket.action_by,
            approval=ticket.approval,
            quote=ticket.quote,
            merged_into=ticket.merged_into,
            language=ticket.language,
            fields=tuple(sorted(fields.items())),
        )

    async def _messages(self, number: int) -> list[MessageView]:
        """A ticket's thread, oldest first, each message with its attachments."""
        rows = (
            await self.session.exec(
                select(MessageRow)
                .where(MessageRow.ticket_id == number)
                .order_by(col(MessageRow.id))
            )
        ).all()
        files = (
            await self.session.exec(
                select(AttachmentRow)
                .where(col(AttachmentRow.message_row_id).in_([m.id for m in rows]))
                .order_by(col(AttachmentRow.id))
            )
        ).all()
        return [
            MessageView(
                direction=m.direction,
                kind=m.kind,
                from_addr=m.from_addr,
                from_name=m.from_name,
                to=tuple(a for a in m.to_addrs.split("\n") if a),
                cc=tuple(a for a in m.cc_addrs.split("\n") if a),
                subject=m.subject,
                text=m.visible_text,
                full_text=m.full_text,
                message_id=m.message_id,
                created_at=m.created_at,
                attachments=tuple(
                    AttachmentView(f.filename, f.content_type, f.size, f.sha256)
                    for f in files
                    if f.message_row_id == m.id
                ),
            )
            for m in rows
        ]
