"""Every query the worker sends on its way from spool to outbox reads by index, never by
scanning a table: checked on the statements of a real mixed workload (new tickets,
replies by tag, References and plus-address, an agent's command, a stranger, a bounce),
with SQLite's ``EXPLAIN QUERY PLAN`` and PostgreSQL's ``EXPLAIN``."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from mailgate.app import App
from mailgate.core.model import Action
from mailgate.intake.spool import Received
from mailgate.store.db import session
from mailgate.store.repos import Repo
from mailgate.store.repos.outbox import OutboxRepo
from tests.conftest import deliver
from tests.mails import make_mail

DSN = (
    "Reporting-MTA: dns; mx.customer.nl\r\n\r\n"
    "Final-Recipient: rfc822; {to}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
)


@contextmanager
def recorded(app: App) -> Iterator[list[tuple[str, Any]]]:
    """The statements the worker's connection sends meanwhile, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        seen.append((sql, params[0] if many and params else params))

    engine = app.blocking.sync_engine
    assert engine is not None
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def scans(database: str, statements: list[tuple[str, Any]]) -> dict[str, str]:
    """The statements whose SQLite query plan scans a table, with that plan: as planned
    without statistics (mailgate never gathers any), and with the statistics of this
    database as an administrator's ``ANALYZE`` leaves them (most of its spool done)."""
    found: dict[str, str] = {}
    with sqlite3.connect(database) as conn:
        partial = {
            name
            for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type='index'")
            if sql and " WHERE " in sql.upper()
        }
        for analyzed in (False, True):
            if analyzed:
                conn.execute("ANALYZE")
            for sql, params in statements:
                if not sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "WITH")):
                    continue
                rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}", params or ()).fetchall()
                plan = " | ".join(str(row[-1]) for row in rows)
                if any(_scans_a_table(str(row[-1]), partial) for row in rows):
                    found[sql] = plan
    return found


def _scans_a_table(step: str, partial: set[str]) -> bool:
    """Whether a step of a SQLite plan reads a whole table; not the constant row or the
    subquery of an empty ``IN`` list, which read no table at all, nor a partial index,
    which holds only the rows its condition names (the pending ones)."""
    if not step.startswith("SCAN") or step.startswith(("SCAN CONSTANT ROW", "SCAN (subquery")):
        return False
    return not any(step.endswith(f" INDEX {name}") for name in partial)  # COVERING too


async def workload(app: App) -> None:
    """Mail of every kind the worker handles, onto a desk with some history."""
    opened = [await deliver(app, make_mail(subject=f"Storing {n}")) for n in range(30)]
    ticket = opened[0].ticket
    assert ticket is not None
    codec = app.codec
    await deliver(app, make_mail(subject=f"RE: {codec.subject_tag(ticket)} nog steeds"))
    async with session(app.engine) as s:
        outbox = await Repo(s).outbox_list()
        view = await Repo(s).ticket_view(ticket)
    assert view is not None
    first = view.messages[0].message_id
    await deliver(app, make_mail(subject="RE: Storing", references=f"<{first}>"))
    await deliver(app, make_mail(subject="hoi"), to=(f"support+{codec.token(ticket)}@example.com",))
    team = next(o for o in outbox if o.kind == "team_new_ticket" and o.ticket == ticket)
    agent = await deliver(
        app,
        make_mail(
            sender="Bob <bob@example.com>",
            subject=f"RE: {codec.subject_tag(ticket)}",
            in_reply_to=f"<{team.message_id}>",
            body="#priority hoog\n\nGraag de foutcode.",
        ),
    )
    assert agent.action is Action.APPENDED
    stranger = make_mail(sender="eve@elders.nl", subject=f"RE: {codec.subject_tag(ticket)}")
    await deliver(app, stranger)
    unproven = make_mail(sender="bob@example.com", subject=f"RE: {codec.subject_tag(ticket)}")
    assert (await deliver(app, unproven)).action is Action.HELD
    await deliver(app, make_mail(subject="Mijn BSN", body="Mijn BSN is 111222333."))
    ack = next(o for o in outbox if o.kind == "ack" and o.ticket == ticket)
    bounce = make_mail(
        sender="MAILER-DAEMON@mx.customer.nl",
        subject="Undelivered Mail",
        body=DSN.format(to=ack.recipients[0]),
    )
    assert (await deliver(app, bounce, to=(ack.envelope_from,))).action is Action.BOUNCE


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_every_query_of_the_worker_reads_by_index(app: App) -> None:
    with recorded(app) as statements:
        await workload(app)
    assert len(statements) > 100  # the recorder saw the worker's statements
    database = str(app.config.database.url).split("///", 1)[1]
    assert scans(database, statements) == {}


def pg_scans(app: App, statements: list[tuple[str, Any]]) -> dict[str, str]:
    """The statements for which PostgreSQL has no index to read by: planned with
    sequential scans made as dear as the planner allows (``enable_seqscan = off``), a
    ``Seq Scan`` is left only where no index serves the query."""
    found: dict[str, str] = {}
    engine = app.blocking.sync_engine
    assert engine is not None
    with engine.connect() as conn:
        conn.exec_driver_sql("SET enable_seqscan = off")
        for sql, params in statements:
            if not sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "WITH")):
                continue
            plan = " | ".join(
                str(row[0]) for row in conn.exec_driver_sql(f"EXPLAIN {sql}", params or {})
            )
            if "Seq Scan" in plan:
                found[sql] = plan
        conn.rollback()
    return found


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_every_query_of_the_worker_reads_by_index_on_postgresql(app: App) -> None:
    with recorded(app) as statements:
        await workload(app)
        for n in range(3):  # listed and claimed as the daemon's worker does
            await app.spool.store(Received(make_mail(subject=f"Nog {n}"), "test"))
        assert len(await app.processor.run_due()) == 3
        now = app.clock.now()
        await app.blocking.write(lambda c: OutboxRepo(c).claim(now=now, stale_before=now, limit=9))
    assert len(statements) > 100
    assert any("pg_try_advisory_lock" in sql for sql, _ in statements)
    assert pg_scans(app, statements) == {}


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_the_postgresql_checker_sees_a_scan(app: App) -> None:
    unindexed = [("SELECT id FROM tickets WHERE title = %(t)s", {"t": "x"})]
    assert list(pg_scans(app, unindexed)) == [unindexed[0][0]]


YEARS = "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < 5000) "
OLD = "'2025-01-01 00:00:00.000000'"


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_what_is_due_is_read_by_index_among_years_of_done_mail(app: App) -> None:
    """With statistics that say the spool and the outbox are almost all done (an
    ``ANALYZE`` after years), a planner scans the whole table for a query by state in id
    order; the partial indexes of the pending rows keep "what is due" to those rows."""
    await deliver(app, make_mail(subject="nieuw"))
    database = str(app.config.database.url).split("///", 1)[1]
    with sqlite3.connect(database) as conn:
        conn.execute(
            f"{YEARS}INSERT INTO spool (dedupe_key, raw_sha256, size, source, envelope_to,"
            " received_at, state, attempts, next_attempt_at)"
            f" SELECT 'old-' || x, 'sha', 1, 'smtp', '', {OLD}, 'done', 1, {OLD} FROM g"
        )
        # Small mails keep their bytes in the database (decision 0024).
        conn.execute("INSERT INTO spool_raw SELECT id, zeroblob(3000) FROM spool WHERE size = 1")
        conn.execute(
            f"{YEARS}INSERT INTO outbox (kind, recipients, envelope_from, message_id, raw, state,"
            " attempts, next_attempt_at, created_at, sent_at)"
            f" SELECT 'ack', 'a@b.nl', 'b@x.nl', 'old-' || x, zeroblob(0), 'sent', 1, {OLD},"
            f" {OLD}, {OLD} FROM g"
        )
        conn.execute("UPDATE outbox SET state = 'sent'")  # nothing waits to be sent
        conn.execute("ANALYZE")
    await app.spool.store(Received(make_mail(subject="wacht"), "test"))
    now = app.clock.now()
    with recorded(app) as statements:
        assert len(await app.processor.run_due()) == 1
        await app.blocking.write(lambda c: OutboxRepo(c).claim(now=now, stale_before=now, limit=9))
    due = [(sql, p) for sql, p in statements if "ORDER BY spool.id" in sql]
    due += [(sql, p) for sql, p in statements if "ORDER BY outbox.id" in sql]
    assert len(due) >= 2 and scans(database, due) == {}


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_checker_sees_a_scan(app: App) -> None:
    """The check above can fail: a query on an unindexed column is caught."""
    database = str(app.config.database.url).split("///", 1)[1]
    unindexed = [("SELECT id FROM tickets WHERE title = ?", ("x",))]
    assert list(scans(database, unindexed)) == [unindexed[0][0]]


async def test_a_new_ticket_as_created_is_the_ticket_as_read_back(app: App) -> None:
    """The worker hands the notifier the view ``create`` returns instead of reading the
    ticket again: the two must be the same."""
    from dataclasses import replace

    from mailgate.core.model import Participant, Role
    from mailgate.store.repos import Tx

    now = app.clock.now()
    people = [Participant("klant@org.nl", "Klant", Role.REQUESTER, "org.nl")]

    def create(conn: Any) -> tuple[Any, Any]:
        tx = Tx.on(conn)
        view = app.desk.open(
            tx,
            queue="support",
            title="Printer",
            type_="incident",
            priority="high",
            requester="klant@org.nl",
            actor="klant@org.nl",
            now=now,
        )
        added = tx.tickets.add_participants(view.number, people, known=())
        return replace(view, participants=tuple(added)), tx.tickets.view(view.number)

    handed, read = await app.blocking.write(create)
    assert handed == read


@pytest.mark.parametrize("kind", ["customer", "auto", "agent", "note"])
@pytest.mark.parametrize("message_id", ["<eerste@org.nl>", None])
async def test_a_new_tickets_anchor_as_known_is_the_anchor_as_read_back(
    app: App, kind: str, message_id: str | None
) -> None:
    """The worker hands the notifier the anchor of a ticket its mail has just opened
    (``first_anchor``) instead of querying it: the two must be the same, for every kind."""
    from mailgate.core.parse import parse_mail
    from mailgate.store.repos import Tx
    from mailgate.store.repos.history import first_anchor

    mail = parse_mail(make_mail(message_id=message_id, references="<a@org.nl> <b@org.nl>"))
    assert (mail.message_id is None) == (message_id is None)
    now = app.clock.now()

    def create(conn: Any) -> tuple[Any, Any]:
        tx = Tx.on(conn)
        view = app.desk.open(
            tx, queue="support", title="Printer", type_="incident", priority="high",
            requester=None, actor="klant@org.nl", now=now,
        )  # fmt: skip
        tx.history.add_message(
            ticket=view.number, spool_id=None, mail=mail, kind=kind, visible_text="x",
            raw_sha256=None, now=now,
        )  # fmt: skip
        return first_anchor(mail, kind), tx.history.thread_anchor(view.number)

    known, read = await app.blocking.write(create)
    assert known == read
    assert (known[0] is None) == (message_id is None or kind not in ("customer", "auto"))


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_batch_holding_cap_records_never_waits_for_more(app: App) -> None:
    """A transaction's first hold on cap records waits for them; once it holds some, a key
    another instance holds raises ``CountsBusy`` instead of waiting (which could close a
    circle of instances waiting for each other's batches)."""
    import threading

    from mailgate.errors import CountsBusy
    from mailgate.store.repos import Tx

    held = threading.Event()
    done = threading.Event()

    def other(conn: Any) -> None:
        Tx.on(conn).outbox.hold_counts(["domain org.nl"])
        held.set()
        done.wait(5)

    def batch(conn: Any) -> str:
        held.wait(5)
        outbox = Tx.on(conn).outbox
        outbox.hold_counts(["mailbox a@elders.nl", "domain elders.nl"])  # free: taken
        outbox.hold_counts(["domain elders.nl"])  # ours already: fine
        try:
            outbox.hold_counts(["domain org.nl"])
        except CountsBusy as exc:
            return str(exc)
        finally:
            done.set()
        return "not busy"

    _, busy = await asyncio.gather(
        app.blocking.write(other, writer="other"), app.blocking.write(batch, writer="batch")
    )
    assert "domain org.nl" in busy


def test_the_repositories_load_when_first_named() -> None:
    """``mailgate.store.repos`` names every repository without importing them all: the
    pipe, which needs the spool's alone, loads nothing else."""
    import json
    import subprocess
    import sys

    from mailgate.store import repos

    assert all(getattr(repos, name) is not None for name in repos.__all__)
    probe = (
        "import json, sys, mailgate.store.repos.spool\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('mailgate.store.repos'))))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, check=True)
    assert json.loads(done.stdout) == ["mailgate.store.repos", "mailgate.store.repos.spool"]
