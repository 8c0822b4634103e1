"""The spool aggregate: received mails and how far their processing got.

With their raw bytes until the worker moved them to the blob store. Blocking, on one
``Connection`` (or the SQLite driver itself on the path of every SMTP 250)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Dialect,
    Text,
    bindparam,
    cast,
    delete,
    func,
    insert,
    select,
    update,
)

from mailgate.core.identity import RawBytes
from mailgate.core.model import NewSpoolItem, SpoolEntry, Stored
from mailgate.store.driver import run
from mailgate.store.tables import PENDING_ROWS, table

SPOOL = table("spool")
SPOOL_RAW = table("spool_raw")
PENDING = "pending"
DONE = "done"
QUARANTINED = "quarantined"


def spool_entry(row: Any) -> SpoolEntry:
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


def spool_values(item: NewSpoolItem, now: object) -> dict[str, object]:
    return {
        "dedupe_key": item.dedupe_key,
        "raw_sha256": item.raw_sha256,
        "size": item.size,
        "message_id": item.message_id,
        "source": item.source,
        "envelope_from": item.envelope_from,
        "envelope_to": "\n".join(item.envelope_to),
        "thread": item.thread,
        "received_at": now,
        "state": PENDING,
        "attempts": 0,
        "next_attempt_at": now,
    }


def _new_copies(
    items: Sequence[NewSpoolItem], raws: Sequence[RawBytes], known: Mapping[str, Stored]
) -> dict[str, tuple[NewSpoolItem, RawBytes]]:
    """The first copy of each mail not yet in the spool, in order."""
    fresh: dict[str, tuple[NewSpoolItem, RawBytes]] = {}
    for item, raw in zip(items, raws, strict=True):
        if item.dedupe_key not in known:
            fresh.setdefault(item.dedupe_key, (item, raw))
    return fresh


def _receipts(
    items: Sequence[NewSpoolItem],
    known: Mapping[str, Stored],
    fresh: Mapping[str, tuple[NewSpoolItem, RawBytes]],
    added: Mapping[str, int],
) -> list[Stored]:
    receipts: list[Stored] = []
    for item in items:
        key = item.dedupe_key
        if key in known:
            receipts.append(known[key])
        elif fresh[key][0] is item:
            receipts.append(Stored(int(added[key]), False, item.raw_sha256))
        else:  # a second copy of the same mail in this batch
            receipts.append(Stored(int(added[key]), True, fresh[key][0].raw_sha256))
    return receipts


def spool_add_rows(
    conn: Connection, items: Sequence[NewSpoolItem], raws: Sequence[RawBytes], now: datetime
) -> list[Stored]:
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
    table = SPOOL
    raw_table = SPOOL_RAW
    keys = list({item.dedupe_key for item in items})
    known: dict[str, Stored] = {}
    found = run(
        conn,
        select(table.c.dedupe_key, table.c.id, table.c.raw_sha256).where(
            table.c.dedupe_key.in_(keys)
        ),
    )
    for key, spool_id, raw_sha256 in found:
        known[key] = Stored(int(spool_id), True, raw_sha256)
    fresh = _new_copies(items, raws, known)
    added: dict[str, int] = {}
    if fresh:
        rows = [spool_values(item, now) for item, _ in fresh.values()]
        ids = run(
            conn, insert(table).returning(table.c.id, sort_by_parameter_order=True), rows
        ).scalars()
        added = dict(zip(fresh, ids, strict=True))
        run(
            conn,
            insert(raw_table),
            [{"spool_id": added[key], "raw": raw} for key, (_, raw) in fresh.items()],
        )
    return _receipts(items, known, fresh, added)


_SPOOL_COLUMNS = tuple(spool_values(NewSpoolItem("", "", 0, None, "", None, ()), None))
# Built from our own column names and placeholders only; every value is a parameter.
_SQLITE_INSERT = (
    f"INSERT INTO spool ({', '.join(_SPOOL_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join('?' for _ in _SPOOL_COLUMNS)}) RETURNING id"
)


def sqlite_timestamp(dialect: Dialect, when: datetime) -> object:
    """``when`` as SQLAlchemy stores it in a SQLite ``spool`` datetime column."""
    column = SPOOL.c.received_at
    process = column.type.bind_processor(dialect)
    assert process is not None
    return process(when)


def spool_add_sqlite(
    driver: sqlite3.Connection,
    items: Sequence[NewSpoolItem],
    raws: Sequence[RawBytes],
    stamp: object,
) -> list[Stored]:
    """``spool_add_rows`` through the SQLite driver itself, inside a transaction the caller
    opened; ``stamp``: the time from ``sqlite_timestamp``."""
    keys = list({item.dedupe_key for item in items})
    lookup = "SELECT dedupe_key, id, raw_sha256 FROM spool WHERE dedupe_key IN ({})".format(  # noqa: S608
        ", ".join("?" for _ in keys)  # placeholders only; the keys are parameters
    )
    known = {
        key: Stored(int(spool_id), True, raw_sha256)
        for key, spool_id, raw_sha256 in driver.execute(lookup, keys)
    }
    fresh = _new_copies(items, raws, known)
    added: dict[str, int] = {}
    for key, (item, _) in fresh.items():
        values = spool_values(item, stamp)
        added[key] = driver.execute(_SQLITE_INSERT, tuple(values.values())).fetchone()[0]
    driver.executemany(
        "INSERT INTO spool_raw (spool_id, raw) VALUES (?, ?)",
        [(added[key], raw) for key, (_, raw) in fresh.items()],
    )
    return _receipts(items, known, fresh, added)


# The first key of a claimed thread's advisory lock (the two-key form: apart from the
# one-key locks of leadership, the caps and migrations) and how many of the oldest due
# mails one listing looks through for threads no other worker holds.
CLAIM_CLASS = 0x6D67  # "mg"
CLAIM_WINDOW = 2048


def _due(now: datetime, share: tuple[int, int] | None, *, thread: bool = False) -> Any:
    """The pending mails due at ``now`` (of the ``share``), oldest first: ``PENDING_ROWS``,
    as the partial index ``ix_spool_pending`` names them, read in their order through it,
    never by a scan of the done mails (of years)."""
    key = func.coalesce(SPOOL.c.thread, cast(SPOOL.c.id, Text))
    columns = [SPOOL.c.id, SPOOL.c.size] + ([key.label("thread")] if thread else [])
    query = select(*columns).where(PENDING_ROWS, SPOOL.c.next_attempt_at <= now)
    if share is not None:
        index, count = share
        query = query.where(func.abs(func.hashtext(key) % count) == index)
    return query.order_by(SPOOL.c.id)


_CLAIM = (
    select(SPOOL.c.id)
    .where(SPOOL.c.id.in_(bindparam("ids", expanding=True)), SPOOL.c.state == PENDING)
    .with_for_update(skip_locked=True)
)
_FINISH = (
    update(SPOOL)
    .where(SPOOL.c.id == bindparam("spool_id"))
    .values(
        state=DONE,
        outcome=bindparam("outcome"),
        ticket_id=bindparam("ticket"),
        reason=bindparam("reason"),
        processed_at=bindparam("now"),
        attempts=SPOOL.c.attempts + 1,
    )
)
_DROP_RAW = delete(SPOOL_RAW).where(SPOOL_RAW.c.spool_id == bindparam("id"))


@dataclass(frozen=True, slots=True)
class Finished:
    """A spool item done, as the batch records it."""

    spool_id: int
    outcome: str
    ticket: int | None
    reason: str
    at: datetime
    drop_raw: bool  # the bytes are in the blob store now: the spool's copy goes


class SpoolRepo:
    """The worker's side of the spool: what is due, claim, finish, defer, quarantine."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def due(self, now: datetime, limit: int) -> list[int]:
        """Ids of pending mails whose next attempt is due, oldest first."""
        return [spool_id for spool_id, _ in self.due_sizes(now, limit)]

    def due_sizes(
        self, now: datetime, limit: int, share: tuple[int, int] | None = None
    ) -> list[tuple[int, int]]:
        """(id, size in bytes) of pending mails whose next attempt is due, oldest first.
        ``share`` (PostgreSQL): ``(i, n)``, only the ``i``-th of ``n`` shares of the mail, by
        thread (the mails of one thread stay in one share, in their order; mail without a
        Message-ID, and mail stored before the spool kept threads, is spread by its id)."""
        rows = run(self.conn, _due(now, share).limit(limit))
        return [(int(i), int(size)) for i, size in rows]

    def claim_due(
        self, now: datetime, limit: int, share: tuple[int, int] | None = None
    ) -> list[tuple[int, int]]:
        """PostgreSQL, on a session of the caller's own outside any transaction: as
        ``due_sizes``, each mail's thread held for this session (``pg_try_advisory_lock``)
        until ``release_claims``, and the mails of the threads another session holds passed
        over. Workers of several instances (or processes) that list the spool at the same
        time therefore never gather the same mail (parse it, move its bytes) only for one to
        apply it, and the mails of one thread are in one worker's hands at a time, in their
        order: a follow-up is not applied beside its first mail. The claim is a courtesy,
        not what makes a mail apply once: that is the transaction's row lock (``claim``)."""
        window = _due(now, share, thread=True).limit(CLAIM_WINDOW).subquery()
        held = func.pg_try_advisory_lock(CLAIM_CLASS, func.hashtext(window.c.thread))
        # No ORDER BY outside: it could sort (and try to hold) the whole window first; the
        # subquery's order comes through, and the limit stops the holding at ``limit``.
        rows = run(self.conn, select(window.c.id, window.c.size).where(held).limit(limit))
        return sorted((int(i), int(size)) for i, size in rows)

    def release_claims(self) -> None:
        """Let go of every thread this session holds (``claim_due``)."""
        run(self.conn, select(func.pg_advisory_unlock_all()))

    def load(self, spool_ids: Sequence[int]) -> list[tuple[SpoolEntry, bytes | None]]:
        """The pending ones of ``spool_ids``, each with its bytes while the spool still
        holds them (None once moved into the blob store): one query."""
        if not spool_ids:
            return []
        rows = run(
            self.conn,
            select(SPOOL, SPOOL_RAW.c.raw)
            .outerjoin(SPOOL_RAW, SPOOL_RAW.c.spool_id == SPOOL.c.id)
            .where(SPOOL.c.id.in_(list(spool_ids)), SPOOL.c.state == PENDING)
            .order_by(SPOOL.c.id),
        )
        return [(spool_entry(r), None if r.raw is None else bytes(r.raw)) for r in rows]

    def get(self, spool_id: int) -> SpoolEntry | None:
        row = run(self.conn, select(SPOOL).where(SPOOL.c.id == spool_id)).first()
        return None if row is None else spool_entry(row)

    def claim(self, spool_ids: Sequence[int]) -> set[int]:
        """Hold the pending ones of ``spool_ids`` for this transaction: those still pending
        and (PostgreSQL) not held by another worker's transaction, which are skipped."""
        if not spool_ids:
            return set()
        return set(run(self.conn, _CLAIM, {"ids": list(spool_ids)}).scalars())

    def finish(self, done: Sequence[Finished]) -> None:
        """Mark items done, in two statements for a whole batch."""
        if not done:
            return
        run(
            self.conn,
            _FINISH,
            [
                {
                    "spool_id": d.spool_id,
                    "outcome": d.outcome,
                    "ticket": d.ticket,
                    "reason": d.reason,
                    "now": d.at,
                }
                for d in done
            ],
        )
        moved = [{"id": d.spool_id} for d in done if d.drop_raw]
        if moved:
            run(self.conn, _DROP_RAW, moved)

    def drop_raw(self, spool_id: int) -> None:
        run(self.conn, _DROP_RAW, {"id": spool_id})

    def defer(self, spool_id: int, *, error: str, retry_at: datetime) -> int:
        """Count a failed attempt and set the next one; returns the attempts so far."""
        found = run(
            self.conn,
            update(SPOOL)
            .where(SPOOL.c.id == spool_id)
            .values(attempts=SPOOL.c.attempts + 1, error=error, next_attempt_at=retry_at)
            .returning(SPOOL.c.attempts),
        ).first()
        return 0 if found is None else int(found[0])

    def quarantine(
        self, spool_id: int, *, error: str, traceback_id: str, traceback: str, now: datetime
    ) -> None:
        run(
            self.conn,
            update(SPOOL)
            .where(SPOOL.c.id == spool_id)
            .values(
                state=QUARANTINED,
                outcome="quarantined",
                error=error,
                traceback_id=traceback_id,
                traceback=traceback,
                processed_at=now,
                attempts=SPOOL.c.attempts + 1,
            ),
        )

    def requeue(self, spool_ids: Iterable[int] | None, now: datetime) -> list[int]:
        """Put quarantined mails back in line; all of them when ``spool_ids`` is None."""
        query = update(SPOOL).where(SPOOL.c.state == QUARANTINED)
        if spool_ids is not None:
            query = query.where(SPOOL.c.id.in_(list(spool_ids)))
        rows = run(
            self.conn,
            query.values(state=PENDING, next_attempt_at=now, outcome=None).returning(SPOOL.c.id),
        )
        return sorted(rows.scalars())
