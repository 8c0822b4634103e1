"""Repository queries on the notification path read by index, never by scanning a table."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event

from mailgate.app import App
from mailgate.core.parties import AutoAnswer
from mailgate.store.db import session
from mailgate.store.repos import Repo

NOW = datetime(2026, 3, 2, 10, tzinfo=UTC)


async def statements(app: App, call: Callable[[Repo], Awaitable[Any]]) -> list[tuple[str, Any]]:
    """The SQL statements (with parameters) that ``call`` sends."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        if sql.lstrip().upper().startswith("SELECT"):
            seen.append((sql, params))

    event.listen(app.engine.sync_engine, "before_cursor_execute", record)
    try:
        async with session(app.engine) as s:
            await call(Repo(s))
    finally:
        event.remove(app.engine.sync_engine, "before_cursor_execute", record)
    return seen


def plan(database: str, sql: str, params: Any) -> str:
    with sqlite3.connect(database) as conn:
        rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
    return " | ".join(str(row[-1]) for row in rows)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_caps_on_automatic_mail_read_by_index(app: App) -> None:
    async with session(app.engine, write=True) as s:
        for n in range(50):  # enough rows that the planner would rather scan without one
            answer = AutoAnswer(f"p{n}@klant.nl", "klant.nl", "ontvangen: x", NOW, True)
            await Repo(s).auto_answer_add(answer, kind="ack", outbox_id=n, ticket=None)
    since = NOW - timedelta(hours=1)
    calls: list[Callable[[Repo], Awaitable[Any]]] = [
        lambda r: r.auto_answers_since(mailbox="p1@klant.nl", domain=None, since=since),
        lambda r: r.auto_answers_since(mailbox="p1@klant.nl", domain="klant.nl", since=since),
        lambda r: r.auto_answers_for_ticket(1, since),
    ]
    database = str(app.config.database.url).split("///", 1)[1]
    for call in calls:
        (sql, params), *_ = await statements(app, call)
        found = plan(database, sql, params)
        assert "USING INDEX" in found and "SCAN auto_answers" not in found, found
