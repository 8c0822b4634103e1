"""Read and write tickets, messages and the spool in one session, speaking core types."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Dialect, and_, case, delete, func, insert, or_, update
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mailgate.core.desk import TicketState
from mailgate.core.identity import RawBytes
from mailgate.core.model import (
    Attachment,
    AttachmentView,
    EventView,
    MessageKind,
    MessageView,
    NewSpoolItem,
    OutboxItem,
    ParsedMail,
    Participant,
    Role,
    SpoolEntry,
    SpoolReceipt,
    TicketView,
)
from mailgate.core.notify import TEAM_KINDS, Kind
from mailgate.core.parties import AutoAnswer
from mailgate.core.route import Lookup
from mailgate.core.sla import Clock as SlaClock
from mailgate.store.tables import (
    AttachmentRow,
    AutoAnswerRow,
    BlobRow,
    EventRow,
    ImapCheckpointRow,
    InstallationRow,
    MessageRow,
    OutboxRow,
    ParticipantRow,
    SpoolRawRow,
    SpoolRow,
    SuppressionRow,
    TicketRow,
    TimerRow,
)

PENDING = "pending"
SLA_PREFIX = "sla_"  # timers whose trigger starts so are SLA alarms, not workflow timers
OUTBOX_PENDING = "pending"
OUTBOX_SENDING = "sending"
OUTBOX_SENT = "sent"
OUTBOX_DEAD = "dead"
DONE = "done"
QUARANTINED = "quarantined"

ACKNOWLEDGMENT = Kind.ACK.value  # the automatic mail that answers a mail


def _spool_entry(row: SpoolRow) -> SpoolEntry:
    assert row.id is not None
    return SpoolEntry(
        id=row.id,
        dedupe_key=row.dedupe_key,
        raw_sha256=row.raw_sha256,
        size=row.size,
        message_id=row.message_id,
        source=row.source,
        envelope_from=row.envelope_from,
        envelope_to=tuple(a for a in row.envelope_to.split("\n") if a),
        received_at=row.received_at,
        state=row.state,
        attempts=row.attempts,
        outcome=row.outcome,
        ticket=row.ticket_id,
        reason=row.reason,
        error=row.error,
        traceback_id=row.traceback_id,
        processed_at=row.processed_at,
    )


def _spool_values(item: NewSpoolItem, now: object) -> dict[str, object]:
    return {
        "dedupe_key": item.dedupe_key,
        "raw_sha256": item.raw_sha256,
        "size": item.size,
        "message_id": item.message_id,
        "source": item.source,
        "envelope_from": item.envelope_from,
        "envelope_to": "\n".join(item.envelope_to),
        "received_at": now,
        "state": PENDING,
        "attempts": 0,
        "next_attempt_at": now,
    }


def _new_copies(
    items: Sequence[NewSpoolItem], raws: Sequence[RawBytes], known: Mapping[str, SpoolReceipt]
) -> dict[str, tuple[NewSpoolItem, RawBytes]]:
    """The first copy of each mail not yet in the spool, in order."""
    fresh: dict[str, tuple[NewSpoolItem, RawBytes]] = {}
    for item, raw in zip(items, raws, strict=True):
        if item.dedupe_key not in known:
            fresh.setdefault(item.dedupe_key, (item, raw))
    return fresh


def _receipts(
    items: Sequence[NewSpoolItem],
    known: Mapping[str, SpoolReceipt],
    fresh: Mapping[str, tuple[NewSpoolItem, RawBytes]],
    added: Mapping[str, int],
) -> list[SpoolReceipt]:
    receipts: list[SpoolReceipt] = []
    for item in items:
        key = item.dedupe_key
        if key in known:
            receipts.append(known[key])
        elif fresh[key][0] is item:
            receipts.append(SpoolReceipt(int(added[key]), False, item.raw_sha256))
        else:  # a second copy of the same mail in this batch
            receipts.append(SpoolReceipt(int(added[key]), True, fresh[key][0].raw_sha256))
    return receipts


def spool_add_rows(
    conn: Connection, items: Sequence[NewSpoolItem], raws: Sequence[RawBytes], now: datetime
) -> list[SpoolReceipt]:
    """Record received mails and their bytes as pending, in order; a known dedupe key is
    a duplicate.

    Duplicates are recognised against the table and within ``items``. Under
    concurrent writers the unique constraint on the key is the last word: the
    caller retries the batch on IntegrityError. Blocking: it runs inside an
    async session (``Repo.spool_add``). On SQLite it talks to the driver directly
    (``spool_add_sqlite``, which the spool also calls itself): the batch is on
    the path of every SMTP 250, and SQLAlchemy's per-statement work would cost
    more than the commit's fsync.
    """
    if conn.dialect.name == "sqlite":
        driver = conn.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        return spool_add_sqlite(driver, items, raws, sqlite_timestamp(conn.dialect, now))
    table = SQLModel.metadata.tables["spool"]
    raw_table = SQLModel.metadata.tables["spool_raw"]
    keys = list({item.dedupe_key for item in items})
    known: dict[str, SpoolReceipt] = {}
    found = conn.execute(
        select(table.c.dedupe_key, table.c.id, table.c.raw_sha256).where(
            table.c.dedupe_key.in_(keys)
        )
    )
    for key, spool_id, raw_sha256 in found:
        known[key] = SpoolReceipt(int(spool_id), True, raw_sha256)
    fresh = _new_copies(items, raws, known)
    added: dict[str, int] = {}
    if fresh:
        rows = [_spool_values(item, now) for item, _ in fresh.values()]
        ids = conn.execute(
            insert(table).returning(table.c.id, sort_by_parameter_order=True), rows
        ).scalars()
        added = dict(zip(fresh, ids, strict=True))
        conn.execute(
            insert(raw_table),
            [{"spool_id": added[key], "raw": raw} for key, (_, raw) in fresh.items()],
        )
    return _receipts(items, known, fresh, added)


_SPOOL_COLUMNS = tuple(_spool_values(NewSpoolItem("", "", 0, None, "", None, ()), None))
# Built from our own column names and placeholders only; every value is a parameter.
_SQLITE_INSERT = (
    f"INSERT INTO spool ({', '.join(_SPOOL_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join('?' for _ in _SPOOL_COLUMNS)}) RETURNING id"
)


def sqlite_timestamp(dialect: Dialect, when: datetime) -> object:
    """``when`` as SQLAlchemy stores it in a SQLite ``spool`` datetime column."""
    column = SQLModel.metadata.tables["spool"].c.received_at
    process = column.type.bind_processor(dialect)
    assert process is not None
    return process(when)


def spool_add_sqlite(
    driver: sqlite3.Connection,
    items: Sequence[NewSpoolItem],
    raws: Sequence[RawBytes],
    stamp: object,
) -> list[SpoolReceipt]:
    """``spool_add_rows`` through the SQLite driver itself, inside a transaction the caller
    opened; ``stamp``: the time from ``sqlite_timestamp``."""
    keys = list({item.dedupe_key for item in items})
    lookup = "SELECT dedupe_key, id, raw_sha256 FROM spool WHERE dedupe_key IN ({})".format(  # noqa: S608
        ", ".join("?" for _ in keys)  # placeholders only; the keys are parameters
    )
    known = {
        key: SpoolReceipt(int(spool_id), True, raw_sha256)
        for key, spool_id, raw_sha256 in driver.execute(lookup, keys)
    }
    fresh = _new_copies(items, raws, known)
    added: dict[str, int] = {}
    for key, (item, _) in fresh.items():
        values = _spool_values(item, stamp)
        added[key] = driver.execute(_SQLITE_INSERT, tuple(values.values())).fetchone()[0]
    driver.executemany(
        "INSERT INTO spool_raw (spool_id, raw) VALUES (?, ?)",
        [(added[key], raw) for key, (_, raw) in fresh.items()],
    )
    return _receipts(items, known, fresh, added)


def _outbox_item(row: OutboxRow) -> OutboxItem:
    assert row.id is not None
    return OutboxItem(
        id=row.id,
        ticket=row.ticket_id,
        kind=row.kind,
        recipients=tuple(a for a in row.recipients.split("\n") if a),
        envelope_from=row.envelope_from,
        message_id=row.message_id,
        state=row.state,
        attempts=row.attempts,
        last_error=row.last_error,
        created_at=row.created_at,
        sent_at=row.sent_at,
    )


class Repo:
    """The queries of one transaction; every method returns core values, never rows."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- installation -------------------------------------------------------------------

    async def installation_id(self, candidate: str, now: datetime) -> str:
        """This installation's id, recording ``candidate`` on first use."""
        row = await self.session.get(InstallationRow, 1)
        if row is None:
            row = InstallationRow(id=1, installation_id=candidate, created_at=now)
            self.session.add(row)
            await self.session.flush()
        return row.installation_id

    # --- spool ---------------------------------------------------------------------------

    async def spool_add(
        self, items: Sequence[NewSpoolItem], raws: Sequence[RawBytes], now: datetime
    ) -> list[SpoolReceipt]:
        """Record received mails and their bytes as pending (see ``spool_add_rows``)."""
        return await self.session.run_sync(
            lambda sync: spool_add_rows(sync.connection(), items, raws, now)
        )

    async def spool_raw(self, spool_id: int) -> bytes | None:
        """The bytes of a mail not yet moved into the blob store; None once moved."""
        row = await self.session.get(SpoolRawRow, spool_id)
        return None if row is None else bytes(row.raw)

    async def spool_raw_moved(self, spool_id: int) -> None:
        """The mail's bytes are in the blob store now: drop the spool's copy."""
        await self.session.exec(delete(SpoolRawRow).where(col(SpoolRawRow.spool_id) == spool_id))

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
        return [_outbox_item(r) for r in rows.all()]

    async def spool_get(self, spool_id: int) -> SpoolEntry | None:
        row = await self.session.get(SpoolRow, spool_id)
        return None if row is None else _spool_entry(row)

    async def spool_due(self, now: datetime, limit: int) -> list[int]:
        """Ids of pending mails whose next attempt is due, oldest first."""
        result = await self.session.exec(
            select(SpoolRow.id)
            .where(SpoolRow.state == PENDING, col(SpoolRow.next_attempt_at) <= now)
            .order_by(col(SpoolRow.id))
            .limit(limit)
        )
        return [i for i in result.all() if i is not None]

    async def spool_claim(self, spool_id: int) -> SpoolEntry | None:
        """Lock a pending mail for this transaction; None if it is done or another has it."""
        row = (
            await self.session.exec(
                select(SpoolRow)
                .where(SpoolRow.id == spool_id, SpoolRow.state == PENDING)
                .with_for_update(skip_locked=True)
            )
        ).first()
        return None if row is None else _spool_entry(row)

    async def spool_finish(
        self, spool_id: int, *, outcome: str, ticket: int | None, reason: str, now: datetime
    ) -> None:
        await self.session.exec(
            update(SpoolRow)
            .where(col(SpoolRow.id) == spool_id)
            .values(
                state=DONE,
                outcome=outcome,
                ticket_id=ticket,
                reason=reason,
                processed_at=now,
                attempts=SpoolRow.attempts + 1,
            )
        )

    async def spool_defer(self, spool_id: int, *, error: str, retry_at: datetime) -> int:
        """Count a failed attempt and set the next one; returns the attempts so far."""
        row = await self.session.get(SpoolRow, spool_id)
        assert row is not None
        row.attempts += 1
        row.error = error
        row.next_attempt_at = retry_at
        self.session.add(row)
        return row.attempts

    async def spool_quarantine(
        self, spool_id: int, *, error: str, traceback_id: str, traceback: str, now: datetime
    ) -> None:
        await self.session.exec(
            update(SpoolRow)
            .where(col(SpoolRow.id) == spool_id)
            .values(
                state=QUARANTINED,
                outcome="quarantined",
                error=error,
                traceback_id=traceback_id,
                traceback=traceback,
                processed_at=now,
                attempts=SpoolRow.attempts + 1,
            )
        )

    async def quarantined(self) -> list[SpoolEntry]:
        rows = await self.session.exec(
            select(SpoolRow).where(SpoolRow.state == QUARANTINED).order_by(col(SpoolRow.id))
        )
        return [_spool_entry(r) for r in rows.all()]

    async def requeue(self, spool_ids: Iterable[int] | None, now: datetime) -> list[int]:
        """Put quarantined mails back in line; all of them when ``spool_ids`` is None."""
        query = select(SpoolRow).where(SpoolRow.state == QUARANTINED)
        if spool_ids is not None:
            query = query.where(col(SpoolRow.id).in_(list(spool_ids)))
        rows = (await self.session.exec(query)).all()
        for row in rows:
            row.state = PENDING
            row.next_attempt_at = now
            row.outcome = None
            self.session.add(row)
        return [r.id for r in rows if r.id is not None]

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

    async def lookup(
        self,
        message_ids: Sequence[str],
        numbers: Iterable[int],
        returned_ids: Sequence[str] = (),
    ) -> Lookup:
        """What the database knows of the evidence; ``returned_ids``: Message-IDs a bounce
        returns, looked up among the outbox's mails."""
        outbox: dict[str, int] = {}
        team: set[str] = set()
        team_kinds = {kind.value for kind in TEAM_KINDS}
        wanted_out = list({*message_ids, *returned_ids})
        if wanted_out:
            found_out = await self.session.exec(
                select(OutboxRow.message_id, OutboxRow.id, OutboxRow.kind).where(
                    col(OutboxRow.message_id).in_(wanted_out)
                )
            )
            returned = set(returned_ids)
            for mid, outbox_id, kind in found_out.all():
                if mid in returned and outbox_id is not None:
                    outbox[mid] = outbox_id
                if kind in team_kinds:
                    team.add(mid)
        by_mid: dict[str, int] = {}
        if message_ids:
            rows = await self.session.exec(
                select(MessageRow.message_id, MessageRow.ticket_id)
                .where(col(MessageRow.message_id).in_(list(message_ids)))
                .order_by(col(MessageRow.id))
            )
            for found_mid, ticket in rows.all():
                if found_mid is not None:
                    by_mid[found_mid] = ticket
        wanted = list(set(numbers))
        existing: set[int] = set()
        merged: dict[int, int] = {}
        while wanted:
            found = await self.session.exec(
                select(TicketRow.id, TicketRow.merged_into).where(col(TicketRow.id).in_(wanted))
            )
            wanted = []
            for number, into in found.all():
                if number is None:
                    continue
                existing.add(number)
                if into is not None and into not in existing and number not in merged:
                    merged[number] = into
                    wanted.append(into)
        return Lookup(by_mid, frozenset(existing), outbox, merged, frozenset(team))

    # --- tickets -------------------------------------------------------------------------

    async def ticket_create(
        self,
        *,
        queue: str,
        title: str,
        type_: str,
        priority: str,
        status: str,
        requester: str | None,
        actor: str,
        now: datetime,
        action_by: str = "support",
    ) -> int:
        row = TicketRow(
            queue=queue,
            title=title,
            type=type_,
            priority=priority,
            status=status,
            requester=requester,
            organisation=requester.rpartition("@")[2] if requester else None,
            action_by=action_by,
            status_since=now,
            created_at=now,
            updated_at=now,
            updated_by=actor,
        )
        self.session.add(row)
        await self.session.flush()
        assert row.id is not None
        return row.id

    async def ticket_touch(self, number: int, *, actor: str, now: datetime) -> None:
        """Record a change to the ticket: last changed, by whom, and a new version."""
        await self.session.exec(
            update(TicketRow)
            .where(col(TicketRow.id) == number)
            .values(updated_at=now, updated_by=actor, version=TicketRow.version + 1)
        )

    async def ticket_state(self, number: int, *, lock: bool = False) -> TicketState | None:
        """The fields commands and answers read; ``lock`` holds the row (PostgreSQL) until
        the transaction ends, so that two changes to one ticket queue up."""
        query = select(TicketRow).where(TicketRow.id == number)
        if lock:
            query = query.with_for_update()
        row = (await self.session.exec(query)).first()
        if row is None or row.id is None:
            return None
        return TicketState(
            number=row.id,
            status=row.status,
            type=row.type,
            priority=row.priority,
            assignee=row.assignee,
            approval=row.approval,
            participants=await self.participants_of(number),
        )

    async def ticket_update(
        self, number: int, values: Mapping[str, object], *, actor: str, now: datetime
    ) -> None:
        """Set ticket fields (status, action_by, priority, ...) and record who changed it."""
        await self.session.exec(
            update(TicketRow)
            .where(col(TicketRow.id) == number)
            .values(**values, updated_at=now, updated_by=actor, version=TicketRow.version + 1)
        )

    async def ticket_quote(self, number: int) -> str:
        row = await self.session.get(TicketRow, number)
        return row.quote if row is not None else ""

    async def tickets_existing(self, numbers: Iterable[int]) -> frozenset[int]:
        wanted = list(set(numbers))
        if not wanted:
            return frozenset()
        found = await self.session.exec(select(TicketRow.id).where(col(TicketRow.id).in_(wanted)))
        return frozenset(i for i in found.all() if i is not None)

    async def ticket_merge(self, number: int, into: int) -> None:
        """Move the thread and the people of ``number`` to ``into``; later mail for
        ``number`` lands on ``into``."""
        await self.session.exec(
            update(MessageRow).where(col(MessageRow.ticket_id) == number).values(ticket_id=into)
        )
        await self.participants_add(into, await self.participants_of(number))
        await self.session.exec(
            update(TicketRow).where(col(TicketRow.id) == number).values(merged_into=into)
        )
        await self.timers_cancel(number)

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

    async def participants_remove(self, ticket: int, addresses: Iterable[str]) -> None:
        wanted = [a.lower() for a in addresses]
        if wanted:
            await self.session.exec(
                delete(ParticipantRow).where(
                    col(ParticipantRow.ticket_id) == ticket,
                    col(ParticipantRow.address).in_(wanted),
                )
            )

    # --- timers --------------------------------------------------------------------------

    async def timers_arm(
        self, ticket: int, status: str, timers: Iterable[tuple[str, datetime]], now: datetime
    ) -> None:
        for trigger, due in timers:
            self.session.add(
                TimerRow(
                    ticket_id=ticket,
                    trigger=trigger,
                    status=status,
                    due_at=due,
                    state="pending",
                    armed_at=now,
                )
            )

    async def timers_cancel(self, ticket: int, *, sla: bool | None = None) -> None:
        """Cancel a ticket's pending timers: all, only SLA alarms (``sla=True``), or only the
        workflow's (``sla=False``)."""
        query = update(TimerRow).where(
            col(TimerRow.ticket_id) == ticket, col(TimerRow.state) == "pending"
        )
        if sla is not None:
            is_sla = col(TimerRow.trigger).startswith(SLA_PREFIX)
            query = query.where(is_sla if sla else ~is_sla)
        await self.session.exec(query.values(state="cancelled"))

    async def sla_clock(self, ticket: int) -> SlaClock:
        row = await self.session.get(TicketRow, ticket)
        assert row is not None
        return SlaClock(
            consumed=row.sla_consumed,
            running_since=row.sla_running_since,
            answered_at=row.sla_answered_at,
            solved_at=row.sla_solved_at,
            agreed_solve=row.sla_agreed_solve,
            fixed_solve_due=row.sla_fixed_due,
        )

    async def sla_save(
        self,
        ticket: int,
        clock: SlaClock,
        *,
        answer_due: datetime | None,
        solve_due: datetime | None,
    ) -> None:
        await self.session.exec(
            update(TicketRow)
            .where(col(TicketRow.id) == ticket)
            .values(
                sla_consumed=clock.consumed,
                sla_running_since=clock.running_since,
                sla_answered_at=clock.answered_at,
                sla_solved_at=clock.solved_at,
                sla_agreed_solve=clock.agreed_solve,
                sla_fixed_due=clock.fixed_solve_due,
                sla_answer_due=answer_due,
                sla_solve_due=solve_due,
            )
        )

    # --- retention ------------------------------------------------------------------------

    async def tickets_archived_before(self, states: Sequence[str], cutoff: datetime) -> list[int]:
        """Archived tickets whose archiving is older than ``cutoff`` and not yet purged."""
        purged = select(EventRow.ticket_id).where(EventRow.kind == "purged")
        rows = await self.session.exec(
            select(TicketRow.id)
            .where(
                col(TicketRow.status).in_(list(states)),
                col(TicketRow.status_since) < cutoff,
                col(TicketRow.id).not_in(purged),
            )
            .order_by(col(TicketRow.id))
        )
        return [i for i in rows.all() if i is not None]

    async def raw_of_tickets(self, tickets: Sequence[int]) -> tuple[list[int], list[str]]:
        """The spool items of ``tickets`` and the raw mails no other kept item shares."""
        if not tickets:
            return [], []
        rows = (
            await self.session.exec(
                select(SpoolRow.id, SpoolRow.raw_sha256).where(
                    col(SpoolRow.ticket_id).in_(list(tickets))
                )
            )
        ).all()
        shas = {sha for _, sha in rows}
        shared = set(
            (
                await self.session.exec(
                    select(SpoolRow.raw_sha256).where(
                        col(SpoolRow.raw_sha256).in_(list(shas)),
                        or_(
                            col(SpoolRow.ticket_id).is_(None),
                            col(SpoolRow.ticket_id).not_in(list(tickets)),
                        ),
                    )
                )
            ).all()
        )
        return [i for i, _ in rows if i is not None], sorted(shas - shared)

    async def attachments_only_of(self, tickets: Sequence[int]) -> list[str]:
        """Attachment contents of ``tickets`` that no other ticket's messages have."""
        if not tickets:
            return []
        joined = select(AttachmentRow.sha256, MessageRow.ticket_id).join(
            MessageRow, col(MessageRow.id) == col(AttachmentRow.message_row_id)
        )
        mine = {
            sha
            for sha, _ in (
                await self.session.exec(joined.where(col(MessageRow.ticket_id).in_(list(tickets))))
            ).all()
        }
        if not mine:
            return []
        others = {
            sha
            for sha, _ in (
                await self.session.exec(
                    joined.where(
                        col(AttachmentRow.sha256).in_(list(mine)),
                        col(MessageRow.ticket_id).not_in(list(tickets)),
                    )
                )
            ).all()
        }
        return sorted(mine - others)

    async def blob_sizes(self, raw: Sequence[str], attachments: Sequence[str]) -> int:
        total = 0
        if raw:
            sizes = await self.session.exec(
                select(SpoolRow.raw_sha256, SpoolRow.size).where(
                    col(SpoolRow.raw_sha256).in_(list(raw))
                )
            )
            total += sum(dict(sizes.all()).values())
        if attachments:
            sizes = await self.session.exec(
                select(AttachmentRow.sha256, AttachmentRow.size).where(
                    col(AttachmentRow.sha256).in_(list(attachments))
                )
            )
            total += sum(dict(sizes.all()).values())
        return total

    async def purge(
        self,
        tickets: Sequence[int],
        spool_ids: Sequence[int],
        attachments: Sequence[str],
        now: datetime,
    ) -> None:
        """Drop the raw bytes kept in the database and the attachment blobs; record it."""
        if spool_ids:
            await self.session.exec(
                delete(SpoolRawRow).where(col(SpoolRawRow.spool_id).in_(list(spool_ids)))
            )
        if attachments:
            await self.session.exec(
                delete(BlobRow).where(col(BlobRow.sha256).in_(list(attachments)))
            )
        if tickets:
            await self.session.exec(
                update(MessageRow)
                .where(col(MessageRow.ticket_id).in_(list(tickets)))
                .values(raw_sha256=None)
            )
        for ticket in tickets:
            await self.event_add(
                ticket,
                kind="purged",
                actor="mailgate",
                now=now,
                detail="raw mails and attachments removed (retention)",
            )

    async def blob_put(self, sha256: str, data: bytes) -> None:
        """Store bytes once under their hash (a second put of the same bytes does nothing)."""
        if await self.session.get(BlobRow, sha256) is None:
            self.session.add(BlobRow(sha256=sha256, data=data))
            await self.session.flush()

    async def blob_get(self, sha256: str) -> bytes | None:
        row = await self.session.get(BlobRow, sha256)
        return None if row is None else bytes(row.data)

    async def ticket_rating(self, ticket: int) -> tuple[str, str, str]:
        """(status, type, priority) of a ticket."""
        row = (
            await self.session.exec(
                select(TicketRow.status, TicketRow.type, TicketRow.priority).where(
                    TicketRow.id == ticket
                )
            )
        ).one()
        return row[0], row[1], row[2]

    async def ticket_event_values(self, ticket: int, kind: str) -> set[str]:
        """The ``new`` values of a ticket's events of ``kind``."""
        rows = await self.session.exec(
            select(EventRow.new).where(EventRow.ticket_id == ticket, EventRow.kind == kind)
        )
        return {v for v in rows.all() if v is not None}

    async def ticket_event_exists(self, ticket: int, kind: str, new: str) -> bool:
        found = await self.session.exec(
            select(EventRow.id)
            .where(EventRow.ticket_id == ticket, EventRow.kind == kind, EventRow.new == new)
            .limit(1)
        )
        return found.first() is not None

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

    async def timers_due(self, now: datetime, limit: int) -> list[int]:
        rows = await self.session.exec(
            select(TimerRow.id)
            .where(col(TimerRow.state) == "pending", col(TimerRow.due_at) <= now)
            .order_by(col(TimerRow.due_at), col(TimerRow.id))
            .limit(limit)
        )
        return [i for i in rows.all() if i is not None]

    async def timer_claim(self, timer_id: int, now: datetime) -> tuple[int, str, str] | None:
        """Mark a pending timer fired; (ticket, trigger, status when armed), or None when it
        fired or was cancelled already (by another instance, or a change in between)."""
        row = await self.session.get(TimerRow, timer_id)
        if row is None or row.state != "pending":
            return None
        result = await self.session.exec(
            update(TimerRow)
            .where(col(TimerRow.id) == timer_id, col(TimerRow.state) == "pending")
            .values(state="fired", fired_at=now)
        )
        if result.rowcount != 1:
            return None
        return row.ticket_id, row.trigger, row.status

    async def message_add(
        self,
        *,
        ticket: int,
        spool_id: int | None,
        mail: ParsedMail,
        direction: str,
        kind: str,
        visible_text: str,
        raw_sha256: str | None,
        now: datetime,
    ) -> int:
        row = MessageRow(
            ticket_id=ticket,
            spool_id=spool_id,
            direction=direction,
            kind=kind,
            from_addr=mail.from_addr.email if mail.from_addr else None,
            from_name=mail.from_addr.name if mail.from_addr else None,
            to_addrs="\n".join(a.email for a in mail.to),
            cc_addrs="\n".join(a.email for a in mail.cc),
            subject=mail.subject,
            visible_text=visible_text,
            full_text=mail.text,
            html=mail.html,
            message_id=mail.message_id,
            in_reply_to="\n".join(mail.in_reply_to),
            references="\n".join(mail.references),
            raw_sha256=raw_sha256,
            sent_at=mail.date,
            created_at=now,
        )
        self.session.add(row)
        await self.session.flush()
        assert row.id is not None
        return row.id

    async def attachments_add(self, message_row_id: int, attachments: Iterable[Attachment]) -> None:
        for item in attachments:
            self.session.add(
                AttachmentRow(
                    message_row_id=message_row_id,
                    filename=item.filename,
                    original_filename=item.original_filename,
                    content_type=item.content_type,
                    size=item.size,
                    sha256=item.sha256,
                    content_id=item.content_id,
                )
            )

    async def participants_add(
        self, ticket: int, people: Iterable[Participant]
    ) -> list[Participant]:
        """Add the people not yet on the ticket; returns those added."""
        known = set(
            (
                await self.session.exec(
                    select(ParticipantRow.address).where(ParticipantRow.ticket_id == ticket)
                )
            ).all()
        )
        added = []
        for person in people:
            if person.address in known:
                continue
            known.add(person.address)
            self.session.add(
                ParticipantRow(
                    ticket_id=ticket,
                    address=person.address,
                    name=person.name,
                    role=person.role.value,
                    organisation=person.organisation,
                )
            )
            added.append(person)
        return added

    async def event_exists(self, kind: str, *, new: str) -> bool:
        """Whether any ticket has an event of ``kind`` with value ``new``."""
        found = await self.session.exec(
            select(EventRow.id).where(EventRow.kind == kind, EventRow.new == new).limit(1)
        )
        return found.first() is not None

    async def event_add(
        self,
        ticket: int,
        *,
        kind: str,
        actor: str,
        now: datetime,
        field: str | None = None,
        old: str | None = None,
        new: str | None = None,
        message_row_id: int | None = None,
        detail: str | None = None,
    ) -> None:
        self.session.add(
            EventRow(
                ticket_id=ticket,
                at=now,
                actor=actor,
                kind=kind,
                field=field,
                old=old,
                new=new,
                message_row_id=message_row_id,
                detail=detail,
            )
        )

    # --- outbox --------------------------------------------------------------------------

    async def outbox_add(
        self,
        *,
        ticket: int | None,
        kind: str,
        recipients: Sequence[str],
        message_id: str,
        raw: bytes,
        now: datetime,
    ) -> int:
        row = OutboxRow(
            ticket_id=ticket,
            kind=kind,
            recipients="\n".join(recipients),
            envelope_from="",
            message_id=message_id,
            raw=raw,
            state=OUTBOX_PENDING,
            next_attempt_at=now,
            created_at=now,
        )
        self.session.add(row)
        await self.session.flush()
        assert row.id is not None
        return row.id

    async def auto_answers_since(
        self, *, mailbox: str, domain: str | None, since: datetime
    ) -> list[AutoAnswer]:
        """The automatic mails since ``since`` to ``domain`` (all its mailboxes), or to
        ``mailbox`` alone when ``domain`` is None."""
        query = select(AutoAnswerRow).where(col(AutoAnswerRow.at) >= since)
        if domain is None:
            query = query.where(AutoAnswerRow.mailbox == mailbox)
        else:
            query = query.where(AutoAnswerRow.domain == domain)
        rows = (await self.session.exec(query.order_by(col(AutoAnswerRow.at)))).all()
        return [
            AutoAnswer(r.mailbox, r.domain, r.subject, r.at, r.kind == ACKNOWLEDGMENT) for r in rows
        ]

    async def auto_answers_for_ticket(self, ticket: int, since: datetime) -> int:
        """How many automatic mails (not recipients) went out for ``ticket`` since ``since``."""
        query = select(func.count(func.distinct(AutoAnswerRow.outbox_id))).where(
            AutoAnswerRow.ticket_id == ticket, col(AutoAnswerRow.at) >= since
        )
        return int((await self.session.exec(query)).one())

    async def auto_answer_add(
        self, answer: AutoAnswer, *, kind: str, outbox_id: int, ticket: int | None
    ) -> None:
        self.session.add(
            AutoAnswerRow(
                outbox_id=outbox_id,
                kind=kind,
                mailbox=answer.mailbox,
                domain=answer.domain,
                subject=answer.subject,
                ticket_id=ticket,
                at=answer.at,
            )
        )

    async def suppress(self, address: str, *, until: datetime, reason: str, now: datetime) -> None:
        row = await self.session.get(SuppressionRow, address.lower())
        if row is None:
            row = SuppressionRow(
                address=address.lower(), until=until, reason=reason, created_at=now
            )
        else:
            row.until, row.reason = max(row.until, until), reason
        self.session.add(row)

    async def suppressed(self, addresses: Iterable[str], now: datetime) -> set[str]:
        """Which of ``addresses`` must not be mailed now."""
        wanted = [a.lower() for a in addresses]
        if not wanted:
            return set()
        rows = await self.session.exec(
            select(SuppressionRow.address).where(
                col(SuppressionRow.address).in_(wanted), col(SuppressionRow.until) > now
            )
        )
        return set(rows.all())

    async def count_by(self, column: Any) -> dict[str, int]:
        """Rows per value of one column of one table (tickets by status, outbox by state)."""
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

    async def outbox_set_envelope(self, outbox_id: int, envelope_from: str) -> None:
        await self.session.exec(
            update(OutboxRow)
            .where(col(OutboxRow.id) == outbox_id)
            .values(envelope_from=envelope_from)
        )

    async def outbox_due(self, now: datetime, stale_before: datetime, limit: int) -> list[int]:
        """Pending mails that are due, and mails stuck in sending since before ``stale_before``."""
        rows = await self.session.exec(
            select(OutboxRow.id)
            .where(
                or_(
                    and_(
                        col(OutboxRow.state) == OUTBOX_PENDING,
                        col(OutboxRow.next_attempt_at) <= now,
                    ),
                    and_(
                        col(OutboxRow.state) == OUTBOX_SENDING,
                        col(OutboxRow.claimed_at) < stale_before,
                    ),
                )
            )
            .order_by(col(OutboxRow.id))
            .limit(limit)
        )
        return [i for i in rows.all() if i is not None]

    async def outbox_claim(
        self, outbox_id: int, now: datetime, stale_before: datetime
    ) -> tuple[OutboxItem, bytes] | None:
        """Mark a due mail as sending (one attempt more); None if it is not due any more."""
        row = (
            await self.session.exec(
                select(OutboxRow).where(OutboxRow.id == outbox_id).with_for_update(skip_locked=True)
            )
        ).first()
        if row is None:
            return None
        due = (row.state == OUTBOX_PENDING and row.next_attempt_at <= now) or (
            row.state == OUTBOX_SENDING
            and row.claimed_at is not None
            and row.claimed_at < stale_before
        )
        if not due:
            return None
        row.state = OUTBOX_SENDING
        row.claimed_at = now
        row.attempts += 1
        self.session.add(row)
        return _outbox_item(row), bytes(row.raw)

    async def outbox_finish(
        self,
        outbox_id: int,
        *,
        state: str,
        now: datetime,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        values: dict[str, object] = {"state": state, "last_error": error, "claimed_at": None}
        if state == OUTBOX_SENT:
            values["sent_at"] = now
        if retry_at is not None:
            values["next_attempt_at"] = retry_at
        await self.session.exec(
            update(OutboxRow).where(col(OutboxRow.id) == outbox_id).values(**values)
        )

    async def outbox_get(self, outbox_id: int) -> OutboxItem | None:
        row = await self.session.get(OutboxRow, outbox_id)
        return None if row is None else _outbox_item(row)

    async def outbox_list(self, state: str | None = None) -> list[OutboxItem]:
        query = select(OutboxRow).order_by(col(OutboxRow.id))
        if state is not None:
            query = query.where(OutboxRow.state == state)
        return [_outbox_item(r) for r in (await self.session.exec(query)).all()]

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

    async def thread_anchor(self, ticket: int) -> tuple[str | None, tuple[str, ...]]:
        """The latest Message-ID a customer sent on a ticket and the References a reply to it
        carries: the last mail a person wrote, or, on a ticket no person wrote to yet (a
        monitoring alert), the last automatic one; never an out-of-office over a person's.
        Never an agent's mail: an agent's answer to a team notice names that notice, and a
        team notice's Message-ID is the agents' proof (``senders.agent_authority``), so it
        must never reach a customer."""
        human = col(MessageRow.kind) == MessageKind.CUSTOMER.value
        row = (
            await self.session.exec(
                select(MessageRow)
                .where(
                    MessageRow.ticket_id == ticket,
                    MessageRow.direction == "in",
                    col(MessageRow.kind).in_([MessageKind.CUSTOMER.value, MessageKind.AUTO.value]),
                    col(MessageRow.message_id).is_not(None),
                )
                .order_by(case((human, 1), else_=0).desc(), col(MessageRow.id).desc())
                .limit(1)
            )
        ).first()
        if row is None or row.message_id is None:
            return None, ()
        refs = tuple(r for r in row.references.split("\n") if r)
        return row.message_id, (*refs, row.message_id)

    async def message_add_out(
        self,
        *,
        ticket: int,
        kind: str,
        from_addr: str,
        to: Sequence[str],
        subject: str,
        text: str,
        html: str,
        message_id: str,
        now: datetime,
    ) -> int:
        row = MessageRow(
            ticket_id=ticket,
            spool_id=None,
            direction="out",
            kind=kind,
            from_addr=from_addr,
            from_name=None,
            to_addrs="\n".join(to),
            cc_addrs="",
            subject=subject,
            visible_text=text,
            full_text=text,
            html=html,
            message_id=message_id,
            in_reply_to="",
            references="",
            raw_sha256=None,
            sent_at=now,
            created_at=now,
        )
        self.session.add(row)
        await self.session.flush()
        assert row.id is not None
        return row.id

    # --- views -----------------------------------------------------------------------------

    async def participants_of(self, ticket: int) -> tuple[Participant, ...]:
        rows = await self.session.exec(
            select(ParticipantRow)
            .where(ParticipantRow.ticket_id == ticket)
            .order_by(col(ParticipantRow.id))
        )
        return tuple(
            Participant(p.address, p.name, Role(p.role), p.organisation) for p in rows.all()
        )

    async def ticket_view(
        self, number: int, *, with_messages: bool = True, with_events: bool = True
    ) -> TicketView | None:
        ticket = await self.session.get(TicketRow, number)
        if ticket is None or ticket.id is None:
            return None
        people = await self.participants_of(number)
        messages: list[MessageView] = []
        if with_messages:
            rows = (
                await self.session.exec(
                    select(MessageRow)
                    .where(MessageRow.ticket_id == number)
                    .order_by(col(MessageRow.id))
                )
            ).all()
            ids = [m.id for m in rows]
            files = (
                await self.session.exec(
                    select(AttachmentRow)
                    .where(col(AttachmentRow.message_row_id).in_(ids))
                    .order_by(col(AttachmentRow.id))
                )
            ).all()
            for m in rows:
                messages.append(
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
                )
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
        )
