"""The database engine: SQLite's pragmas, which failures are temporary, this process's
queue of writers, and blocking work in one transaction on its own thread."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import threading
from pathlib import Path

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from mailgate.errors import StorageUnavailable
from mailgate.store.db import (
    Blocking,
    WriteLock,
    create_engine,
    create_sqlite_sync_engine,
    is_temporary,
    storage_errors,
)


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def test_which_failures_are_temporary() -> None:
    assert is_temporary(OperationalError("x", {}, Exception("database is locked")))
    assert is_temporary(sqlite3.OperationalError("disk I/O error"))
    assert is_temporary(OSError(28, "No space left on device"))
    assert is_temporary(DBAPIError("x", {}, _PgError("40001")))  # serialization failure
    assert not is_temporary(DBAPIError("x", {}, _PgError("23505")))  # unique violation
    assert not is_temporary(ValueError("a bug"))


def test_storage_errors_names_what_failed_and_lets_the_rest_through() -> None:
    locked = "list due: OperationalError: database is locked"
    with pytest.raises(StorageUnavailable, match=locked), storage_errors("list due"):
        raise OperationalError("x", {}, Exception("database is locked"))
    with pytest.raises(IntegrityError), storage_errors("insert"):
        raise IntegrityError("x", {}, Exception("UNIQUE"))
    with pytest.raises(KeyError), storage_errors("a bug"):
        raise KeyError("x")


async def test_urgent_writers_go_before_the_others_first_come_first_served() -> None:
    lock = WriteLock()
    order: list[str] = []

    async def writer(name: str, *, urgent: bool) -> None:
        async with lock.hold(urgent=urgent):
            order.append(name)
            await asyncio.sleep(0)

    async with lock.hold(urgent=False):
        tasks = [
            asyncio.create_task(writer("worker 1", urgent=False)),
            asyncio.create_task(writer("worker 2", urgent=False)),
            asyncio.create_task(writer("intake 1", urgent=True)),
            asyncio.create_task(writer("intake 2", urgent=True)),
        ]
        await asyncio.sleep(0.01)
        assert lock.urgent_waiting
    await asyncio.gather(*tasks)
    assert order == ["intake 1", "intake 2", "worker 1", "worker 2"]


async def test_a_cancelled_waiter_never_keeps_the_lock() -> None:
    lock = WriteLock()
    async with lock.hold(urgent=False):
        waiting = asyncio.create_task(lock.hold(urgent=True).__aenter__())
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    async with asyncio.timeout(1):  # free again
        async with lock.hold(urgent=False):
            pass


async def test_sqlite_runs_in_wal_with_full_sync_and_foreign_keys(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", busy_timeout=2.0)
    try:
        async with engine.connect() as conn:
            pragmas = {
                name: (await conn.execute(text(f"PRAGMA {name}"))).scalar_one()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
    finally:
        await engine.dispose()
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 2,
        "foreign_keys": 1,
        "busy_timeout": 2000,
    }
    assert (tmp_path / "m.db").stat().st_mode & 0o077 == 0  # the owner's alone


async def test_a_database_in_a_shared_directory_leaves_that_directory_as_it_was(
    tmp_path: Path,
) -> None:
    """The file is the owner's alone; the directory it was put in (``/var/lib``, ``/srv``)
    is the administrator's: tightening it would lock every other program out of it."""
    shared = tmp_path / "lib"
    shared.mkdir()
    shared.chmod(0o1777)
    engine = create_engine(f"sqlite+aiosqlite:///{shared / 'm.db'}", busy_timeout=2.0)
    await engine.dispose()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert stat.S_IMODE((shared / "m.db").stat().st_mode) == 0o600
    missing = tmp_path / "new" / "deeper"
    engine = create_engine(f"sqlite+aiosqlite:///{missing / 'm.db'}", busy_timeout=2.0)
    await engine.dispose()
    assert stat.S_IMODE(missing.stat().st_mode) == 0o700  # made by mailgate: its own


async def test_blocking_work_commits_as_a_whole_or_not_at_all_on_one_thread(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    blocking = Blocking(engine, create_sqlite_sync_engine(engine, 5.0))
    threads: set[int] = set()

    def write(conn: Connection, value: int, fail: bool = False) -> int:
        threads.add(threading.get_ident())
        conn.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": value})
        if fail:
            raise ValueError("after the insert")
        return value

    try:
        await blocking.write(lambda c: c.execute(text("CREATE TABLE t (v INTEGER)")))
        assert await blocking.write(lambda c: write(c, 1)) == 1
        with pytest.raises(ValueError):
            await blocking.write(lambda c: write(c, 2, fail=True))
        rows = await blocking.read(lambda c: list(c.execute(text("SELECT v FROM t")).scalars()))
        assert rows == [1]  # the failed transaction left nothing
        assert len(threads) == 1 and threading.get_ident() not in threads  # one writer
    finally:
        blocking.close()
        await engine.dispose()


async def test_blocking_work_without_a_file_runs_on_the_async_engine(tmp_path: Path) -> None:
    engine = create_engine("sqlite+aiosqlite:///:memory:")
    blocking = Blocking(engine, create_sqlite_sync_engine(engine, 5.0))
    assert blocking.sync_engine is None
    try:
        assert await blocking.read(lambda c: c.execute(text("SELECT 41 + 1")).scalar_one()) == 42
    finally:
        blocking.close()
        await engine.dispose()
