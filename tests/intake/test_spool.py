"""The spool: group commit of rows and raw bytes, and what happens while SQLite is busy."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from mailgate.app import App
from mailgate.config import Config
from mailgate.intake.spool import GAP, Received
from mailgate.store.db import session
from mailgate.store.repos import Repo
from tests.mails import make_mail
from tests.waiting import eventually

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])


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


async def test_a_second_copy_in_the_same_batch_is_a_duplicate(app: App) -> None:
    raw = make_mail()
    one, two = await asyncio.gather(
        app.spool.store(Received(raw, "a")), app.spool.store(Received(raw, "b"))
    )
    assert one.spool_id == two.spool_id and [one.duplicate, two.duplicate] == [False, True]


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
