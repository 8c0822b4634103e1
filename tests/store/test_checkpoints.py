"""SQLite's checkpoints: on a thread of their own after our commits, never in a commit of
ours short of the backstop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from mailgate.app import App, build_app
from mailgate.config import Config
from mailgate.store.checkpoints import BACKSTOP, Checkpointer
from tests.conftest import deliver
from tests.mails import make_mail


def _thread_alive() -> bool:
    return any(t.name == "mailgate-checkpoints" for t in threading.enumerate())


async def test_the_log_is_copied_by_the_thread_not_by_the_commits(app: App) -> None:
    checkpoints = app.blocking.checkpoints
    if app.engine.dialect.name != "sqlite":
        assert checkpoints is None  # PostgreSQL checkpoints itself
        return
    assert checkpoints is not None
    # every connection of ours leaves checkpoints to the thread up to the backstop
    pages = await app.blocking.read(
        lambda conn: conn.execute(text("PRAGMA wal_autocheckpoint")).scalar_one()
    )
    assert pages == BACKSTOP
    assert app.spool.sync_engine is not None
    with app.spool.sync_engine.connect() as conn:  # the intake's
        assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar_one() == BACKSTOP
    before = checkpoints.checkpoints
    await deliver(app, make_mail(subject="Printer"))
    for _ in range(100):  # the commits woke the thread
        if checkpoints.checkpoints > before and checkpoints.last is not None:
            break
        await asyncio.sleep(0.05)
    assert checkpoints.last is not None
    busy, log_pages, copied = checkpoints.last
    assert busy == 0 and log_pages > 0
    assert copied == log_pages  # nobody was reading an older state: all of it copied
    assert _thread_alive()


async def test_closing_stops_the_thread(config: Config) -> None:
    app = await build_app(config)
    try:
        await deliver(app, make_mail(subject="Printer"))
    finally:
        await app.close()
    assert not _thread_alive()


def test_a_failed_checkpoint_is_logged_and_the_next_commit_tries_again(tmp_path: Path) -> None:
    path = tmp_path / "later" / "m.db"
    checkpointer = Checkpointer(str(path))
    try:
        checkpointer.poke()  # the directory is not there yet: the file cannot be opened
        threading.Event().wait(0.3)
        assert checkpointer.checkpoints == 0 and _thread_alive()
        path.parent.mkdir()
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE t (x)")
            conn.execute("INSERT INTO t VALUES (1)")
        checkpointer.poke()
        for _ in range(100):
            if checkpointer.checkpoints:
                break
            threading.Event().wait(0.05)
        assert checkpointer.checkpoints == 1
        assert checkpointer.last is not None and checkpointer.last[1] > 0
    finally:
        checkpointer.close()
    assert not _thread_alive()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_thread_merges_the_search_index_when_a_second_passes_without_a_commit(
    app: App,
) -> None:
    from tests.store.test_search import add_messages, found, segments

    checkpoints = app.blocking.checkpoints
    assert checkpoints is not None
    await deliver(app, make_mail(subject="Printer", body="De printer piept."))
    await add_messages(app, 12, "toner")  # a dozen commits, a dozen segments
    assert checkpoints.merges == 0  # not while the commits came (each well within GAP)
    for _ in range(100):
        if checkpoints.merges and await app.blocking.read(segments) < 4:
            break
        await asyncio.sleep(0.05)
    assert checkpoints.merges > 0
    assert await app.blocking.read(segments) < 4
    assert await found(app, search="toner") == [1]
