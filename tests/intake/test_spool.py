"""The spool: group commit of rows and raw bytes (in one statement on PostgreSQL), and what
happens while SQLite is busy or PostgreSQL's connection is gone."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from mailgate.app import App, build_app
from mailgate.config import Config
from mailgate.intake.spool import GAP, Received
from mailgate.store.db import session
from mailgate.store.repos import Repo
from mailgate.store.repos.spool import SpoolRepo
from tests.mails import make_mail
from tests.runners.test_batch import count
from tests.waiting import eventually

BOTH = pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
SQLITE = pytest.mark.parametrize("backend", ["sqlite"])
POSTGRESQL = pytest.mark.parametrize("backend", ["postgresql"])


@BOTH
async def test_concurrent_mails_share_commits_and_each_is_stored_once(app: App) -> None:
    mails = [make_mail(subject=f"mail {i}") for i in range(40)]
    stored = await asyncio.gather(*(app.spool.store(Received(m, "test")) for m in mails))
    assert len({s.spool_id for s in stored}) == 40 and not any(s.duplicate for s in stored)
    again = await asyncio.gather(*(app.spool.store(Received(m, "test")) for m in mails[:5]))
    assert [s.spool_id for s in again] == [s.spool_id for s in stored[:5]]
    assert all(s.duplicate for s in again)
    async with session(app.engine) as s:
        for item, raw in zip(stored, mails, strict=True):
            assert await Repo(s).spool_raw(item.spool_id) == raw


@BOTH
async def test_a_second_copy_in_the_same_batch_is_a_duplicate(app: App) -> None:
    raw = make_mail()
    one, two = await asyncio.gather(
        app.spool.store(Received(raw, "a")), app.spool.store(Received(raw, "b"))
    )
    assert one.spool_id == two.spool_id and [one.duplicate, two.duplicate] == [False, True]


@SQLITE
async def test_another_process_holding_the_write_lock_does_not_stall_the_event_loop(
    app: App, config: Config
) -> None:
    database = config.database.url.split("///", 1)[1]
    blocker = sqlite3.connect(database, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    counting = asyncio.create_task(ticker())
    try:
        storing = asyncio.create_task(app.spool.store(Received(make_mail(), "test")))
        # The loop keeps turning while the commit waits for the other process's lock.
        await eventually(lambda: ticks >= 25, timeout=20)
        assert not storing.done()  # still waiting, on a thread
        blocker.execute("COMMIT")
        stored = await storing
        assert not stored.duplicate
    finally:
        counting.cancel()
        blocker.close()


@SQLITE
async def test_the_spool_is_busy_while_a_mail_is_stored_and_just_after(app: App) -> None:
    """The worker gives way while mail is received (``Spool.busy``): during a store, and
    for a short gap after one, in which a client's next mail usually begins."""
    assert not app.spool.busy()
    storing = asyncio.create_task(app.spool.store(Received(make_mail(), "test")))
    await asyncio.sleep(0)
    assert app.spool.busy()
    await storing
    answered = time.monotonic()
    assert app.spool.busy() or time.monotonic() - answered >= GAP
    await asyncio.sleep(GAP * 2)
    assert not app.spool.busy()


ANONYMOUS = b"Subject: geen id\r\n\r\nhoi\r\n"


@BOTH
async def test_a_mail_is_recorded_as_the_worker_reads_it(app: App) -> None:
    raw = make_mail(subject="Vraag", references="<root@org.nl> <mid@org.nl>")
    to = ("support@example.com", "sales@example.com")
    stored = await app.spool.store(Received(raw, "smtp", envelope_from="k@org.nl", envelope_to=to))
    anonymous = await app.spool.store(Received(ANONYMOUS, "pipe"))
    now = app.clock.now()
    entry = await app.blocking.read(lambda c: SpoolRepo(c).get(stored.spool_id))
    assert entry is not None
    assert (entry.source, entry.envelope_from, entry.envelope_to) == ("smtp", "k@org.nl", to)
    assert (entry.state, entry.attempts, entry.size) == ("pending", 0, len(raw))
    assert entry.message_id and entry.raw_sha256 == stored.raw_sha256
    assert abs((entry.received_at - now).total_seconds()) < 60
    due = await app.blocking.read(lambda c: SpoolRepo(c).due_sizes(now, 10))
    assert due == [(stored.spool_id, len(raw)), (anonymous.spool_id, len(ANONYMOUS))]
    assert await count(app, "SELECT count(*) FROM spool WHERE thread = 'root@org.nl'") == 1
    other = await app.blocking.read(lambda c: SpoolRepo(c).get(anonymous.spool_id))
    assert other is not None and other.message_id is None and other.envelope_from is None


@POSTGRESQL
async def test_two_instances_recording_the_same_mail_at_once_make_one_row(
    app: App, config: Config
) -> None:
    other = await build_app(config)
    try:
        mails = [make_mail(subject=f"mail {i}") for i in range(30)]
        ours, theirs = await asyncio.gather(
            asyncio.gather(*(app.spool.store(Received(m, "a")) for m in mails)),
            asyncio.gather(*(other.spool.store(Received(m, "b")) for m in mails)),
        )
        for one, two in zip(ours, theirs, strict=True):
            assert one.spool_id == two.spool_id and one.duplicate != two.duplicate
        assert await count(app, "SELECT count(*) FROM spool") == 30
        assert await count(app, "SELECT count(*) FROM spool_raw") == 30
    finally:
        await other.close()


@POSTGRESQL
async def test_the_spools_connection_ended_by_the_server_is_replaced_unnoticed(app: App) -> None:
    first = await app.spool.store(Received(make_mail(subject="een"), "test"))
    await count(
        app,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    second = await app.spool.store(Received(make_mail(subject="twee"), "test"))
    assert second.spool_id > first.spool_id and not second.duplicate
    async with session(app.engine) as s:
        assert await Repo(s).spool_raw(second.spool_id) is not None
