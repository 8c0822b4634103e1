"""Recording received mails in the spool: a group of them in one commit, each database
its fastest way (the path of every SMTP 250: decision 0004).

A known dedupe key is a duplicate, within the group too. SQLite through its driver on
the event loop's thread; PostgreSQL in one statement through asyncpg; anything else
(SQLite in memory) through SQLAlchemy."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Dialect, insert, select

from mailgate.core.identity import RawBytes
from mailgate.core.model import NewSpoolItem, Stored
from mailgate.store.driver import run
from mailgate.store.repos.spool import PENDING, SPOOL, SPOOL_RAW


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
        "sender_key": item.sender_key,
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


# One statement records a batch on PostgreSQL (``spool_add_postgresql``): the new rows,
# their bytes, and the rows of the keys the spool had before it began (its snapshot).
# The PostgreSQL type of each spool column a new row is given (the others: text).
_PG_TYPES = {
    "size": "int",
    "attempts": "int",
    "received_at": "timestamptz",
    "next_attempt_at": "timestamptz",
}
_COLUMNS = ", ".join(_SPOOL_COLUMNS)
_ARRAYS = ", ".join(f"${n}::{_PG_TYPES.get(c, 'text')}[]" for n, c in enumerate(_SPOOL_COLUMNS, 1))
assert _SPOOL_COLUMNS[0] == "dedupe_key"  # $1, looked up at the end
# Built from our own column names and placeholders only; every value is a parameter.
_PG_ADD = f"""
WITH given AS (
    SELECT * FROM unnest({_ARRAYS}, ${len(_SPOOL_COLUMNS) + 1}::bytea[])
        WITH ORDINALITY AS g ({_COLUMNS}, raw, n)
), added AS (
    INSERT INTO spool ({_COLUMNS}) SELECT {_COLUMNS} FROM given ORDER BY n
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING id, dedupe_key, raw_sha256
), bytes AS (
    INSERT INTO spool_raw (spool_id, raw)
    SELECT added.id, given.raw FROM added JOIN given USING (dedupe_key)
)
SELECT dedupe_key, id, raw_sha256, false FROM added
UNION ALL
SELECT dedupe_key, id, raw_sha256, true FROM spool WHERE dedupe_key = ANY($1::text[])
"""  # noqa: S608


async def spool_add_postgresql(
    conn: Any, items: Sequence[NewSpoolItem], raws: Sequence[RawBytes], now: datetime
) -> list[Stored] | None:
    """``spool_add_rows`` on PostgreSQL through asyncpg's ``conn`` itself, outside any
    transaction: one statement, one round trip, committed (durably) when it returns. None
    when another instance recorded one of the keys meanwhile, not yet committed when the
    statement began: the caller runs it again, and finds that row then."""
    unique = _new_copies(items, raws, {})
    given = [spool_values(item, now) for item, _ in unique.values()]
    columns = [[values[c] for values in given] for c in _SPOOL_COLUMNS]
    rows = await conn.fetch(_PG_ADD, *columns, [raw for _, raw in unique.values()])
    known = {key: Stored(int(i), True, sha) for key, i, sha, before in rows if before}
    added = {key: int(i) for key, i, _, before in rows if not before}
    if len(known) + len(added) < len(unique):
        return None
    fresh = {key: copy for key, copy in unique.items() if key in added}
    return _receipts(items, known, fresh, added)
