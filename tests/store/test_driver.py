"""Statements run on the driver's cursor give what ``Connection.execute`` gives: the same
rows (datetimes aware, names as attributes), the defaults an insert leaves out, ``IN``
lists of every length, the same exceptions, and the listeners' event; on a real SQLite
file and a real PostgreSQL database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, bindparam, event, insert, select, update
from sqlalchemy.exc import IntegrityError

from mailgate.store.db import create_blocking_engine, create_engine
from mailgate.store.driver import MANY_VALUES, _rows_in_one, run
from mailgate.store.schema import prepare_schema
from mailgate.store.tables import table

TICKETS = table("tickets")
EVENTS = table("events")
WHEN = datetime(2026, 3, 2, 9, 30, 15, 250000, tzinfo=UTC)

_ADD = insert(TICKETS).returning(TICKETS.c.id)
_ADD_EVENTS = insert(EVENTS)
_SOME = (
    select(TICKETS.c.id, TICKETS.c.status, TICKETS.c.created_at, TICKETS.c.approval)
    .where(TICKETS.c.id.in_(bindparam("ids", expanding=True)), TICKETS.c.queue == "support")
    .order_by(TICKETS.c.id)
)
_EVENTS = select(EVENTS.c.kind, EVENTS.c.at, EVENTS.c.field).where(
    EVENTS.c.ticket_id == bindparam("id"), EVENTS.c.kind.in_(("created", "status"))
)
_TOUCH = (
    update(TICKETS)
    .where(TICKETS.c.id == bindparam("number"))
    .values(version=TICKETS.c.version + 1, updated_at=bindparam("at"))
)


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[Engine]:
    async_engine = create_engine(db_url)
    await prepare_schema(async_engine)
    blocking = create_blocking_engine(async_engine, busy_timeout=2.0)
    assert blocking is not None
    try:
        yield blocking
    finally:
        blocking.dispose()
        await async_engine.dispose()


def ticket(n: int) -> dict[str, Any]:
    return {
        "queue": "support" if n % 3 else "sales",
        "title": f"Printer {n}",
        "type": "incident",
        "priority": "normal",
        "status": "new",
        "requester": f"klant{n}@example.nl",
        "organisation": None,
        "created_at": WHEN + timedelta(minutes=n),
        "updated_at": WHEN,
        "updated_by": "mail",
        "version": 1,
    }  # assignee, approval, quote, merged_into, language, action_by: the columns' defaults


def both(engine: Engine, stmt: Any, params: Any) -> tuple[list[Any], list[Any]]:
    """The rows of ``stmt`` through SQLAlchemy and through the driver (its second run)."""
    with engine.begin() as conn:
        through_sqlalchemy = [tuple(r) for r in conn.execute(stmt, params)]
        first = [tuple(r) for r in run(conn, stmt, params)]  # a first run: SQLAlchemy's
        driver = [tuple(r) for r in run(conn, stmt, params)]
    assert first == through_sqlalchemy
    return through_sqlalchemy, driver


def test_rows_defaults_and_in_lists_are_what_sqlalchemy_gives(engine: Engine) -> None:
    with engine.begin() as conn:
        numbers = [run(conn, _ADD, ticket(n)).scalar_one() for n in range(6)]
    assert numbers == [1, 2, 3, 4, 5, 6]
    for ids in ([], [2], [1, 2, 4, 6], list(range(1, 7))):
        expected, got = both(engine, _SOME, {"ids": ids})
        assert got == expected
    _, rows = both(engine, _SOME, {"ids": [1, 2, 3]})  # 1 (of sales) is not of the queue
    minute = timedelta(minutes=1)
    assert rows == [(2, "new", WHEN + minute, "none"), (3, "new", WHEN + 2 * minute, "none")]
    assert rows[0][2].tzinfo is UTC  # aware, on SQLite too
    with engine.begin() as conn:
        row = run(conn, _SOME, {"ids": [5]}).one()
    assert (row.id, row.status, row.approval) == (5, "new", "none")  # names as attributes


def test_executemany_update_and_rowcount(engine: Engine) -> None:
    with engine.begin() as conn:
        number = run(conn, _ADD, ticket(1)).scalar_one()
        for _ in range(2):  # the second on the driver
            added = run(
                conn,
                _ADD_EVENTS,
                [
                    {"ticket_id": number, "at": WHEN, "actor": "mail", "kind": k, "new": "x"}
                    for k in ("created", "status", "title")
                ],
            )
            assert added.rowcount == 3
        assert run(conn, _ADD_EVENTS, []).rowcount == 0  # nothing to write: nothing written
        # PostgreSQL: one row, a few rows and more than one statement takes, each in the
        # way that costs least; a RETURNING of rows nobody reads is left out
        for count in (1, 2, MANY_VALUES + 1):
            assert run(conn, _ADD, [ticket(n) for n in range(count)]).all() == []
        titles = conn.execute(select(TICKETS.c.title).order_by(TICKETS.c.id)).scalars().all()
        assert titles[1:4] == ["Printer 0", "Printer 0", "Printer 1"]  # in their order
        assert len(titles) == 1 + 1 + 2 + MANY_VALUES + 1
        touched = [run(conn, _TOUCH, {"number": number, "at": WHEN}).rowcount for _ in range(3)]
        assert touched == [1, 1, 1]
        assert run(conn, _TOUCH, {"number": 999, "at": WHEN}).rowcount == 0
    expected, got = both(engine, _EVENTS, {"id": number})
    assert sorted(got) == sorted(expected)
    assert sorted(got) == sorted([("created", WHEN, None), ("status", WHEN, None)] * 2)
    with engine.begin() as conn:
        version = conn.execute(select(TICKETS.c.version).where(TICKETS.c.id == number)).scalar_one()
    assert version == 1 + 3  # three touches of the ticket, none of ticket 999


def test_many_rows_of_one_insert_are_one_statement_and_nothing_else_is() -> None:
    one = "INSERT INTO t (a, b) VALUES (%(a)s::INTEGER, lower(%(b)s))"
    assert _rows_in_one(one, 2) == (
        "INSERT INTO t (a, b) VALUES (%(a__0)s::INTEGER, lower(%(b__0)s)), "
        "(%(a__1)s::INTEGER, lower(%(b__1)s))"
    )
    assert _rows_in_one(f"{one} RETURNING t.id", 2) == _rows_in_one(one, 2)
    assert _rows_in_one(one, MANY_VALUES + 1) is None
    for other in (
        f"{one} ON CONFLICT DO NOTHING",
        f"{one} ON CONFLICT (a) DO UPDATE SET b = (excluded.b)",
        "UPDATE t SET a = %(a)s WHERE t.id = %(id)s",
        "INSERT INTO t (a) SELECT a FROM u WHERE u.id = %(id)s",
    ):
        assert _rows_in_one(other, 2) is None, other


def test_errors_are_sqlalchemys_and_roll_back_to_the_savepoint(engine: Engine) -> None:
    duplicate = {**ticket(1), "id": 1}
    with engine.begin() as conn:
        run(conn, _ADD, ticket(1))
        run(conn, _ADD, ticket(2))
        for _ in range(2):  # through SQLAlchemy, then on the driver: the same exception
            with pytest.raises(IntegrityError), conn.begin_nested():
                run(conn, _ADD, duplicate)
        assert run(conn, _SOME, {"ids": [1, 2, 3]}).scalars() == [1, 2]


def test_listeners_hear_the_driver_statements(engine: Engine) -> None:
    heard: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        heard.append((sql, params))

    with engine.begin() as conn:
        run(conn, _ADD, ticket(1))
        run(conn, _SOME, {"ids": [1]})
    event.listen(engine, "before_cursor_execute", record)
    try:
        with engine.begin() as conn:
            run(conn, _SOME, {"ids": [1]})
    finally:
        event.remove(engine, "before_cursor_execute", record)
    statements = [sql for sql, _ in heard if "tickets" in sql]
    assert len(statements) == 1 and statements[0].lstrip().upper().startswith("SELECT")


def test_a_statement_built_for_one_run_never_reaches_the_driver(engine: Engine) -> None:
    """Built anew each time, it goes through SQLAlchemy's cache as before (compiling it for
    the driver each time would cost more than it saves)."""
    from mailgate.store import driver

    with engine.begin() as conn:
        run(conn, _ADD, ticket(1))
        for _ in range(3):
            stmt = select(TICKETS.c.id).where(TICKETS.c.id == 1)
            assert run(conn, stmt).scalars() == [1]
            assert not driver._KNOWN[id(stmt)].plans
            del stmt
