"""Run a job in exactly one instance at a time: whoever holds its lock runs it.

Each IMAP mailbox and the timer scheduler are such jobs. On PostgreSQL the lock
is a session-level advisory lock held on a dedicated connection outside the
pool; on SQLite (instances on one machine) it is an ``flock`` on a file in the
data directory. Both vanish with the process that holds them, so when an
instance dies another takes over within ``retry`` seconds. A holder that loses
its database connection stops its job at once and competes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

import structlog
from sqlalchemy.engine import make_url

from mailgate.store.files import private_dir

log = structlog.get_logger("mailgate.ops.leader")

Job = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


class Lock(Protocol):
    """One named lock: ``acquire`` tries once; ``alive`` says whether it is still held."""

    async def acquire(self) -> bool: ...

    async def alive(self) -> bool: ...

    async def release(self) -> None: ...


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for ``name``."""
    digest = hashlib.sha256(f"mailgate:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PgAdvisoryLock:
    """``pg_try_advisory_lock`` on a connection of its own, held until released or lost."""

    def __init__(self, url: str, name: str, timeout: float = 10.0) -> None:
        parsed = make_url(url).set(drivername="postgresql")
        self.dsn = parsed.render_as_string(hide_password=False)
        self.key = lock_key(name)
        self.timeout = timeout
        self.connection: Any = None

    async def acquire(self) -> bool:
        import asyncpg

        try:
            if self.connection is None or self.connection.is_closed():
                self.connection = await asyncpg.connect(self.dsn, timeout=self.timeout)
            got = await self.connection.fetchval("SELECT pg_try_advisory_lock($1)", self.key)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            log.warning("leader.unreachable", error=str(exc))
            await self.release()
            return False
        return bool(got)

    async def alive(self) -> bool:
        import asyncpg

        if self.connection is None or self.connection.is_closed():
            return False
        try:
            await asyncio.wait_for(self.connection.fetchval("SELECT 1"), self.timeout)
        except (TimeoutError, OSError, asyncpg.PostgresError):
            return False
        return True

    async def release(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None and not connection.is_closed():
            with contextlib.suppress(Exception):
                await connection.close(timeout=self.timeout)


class FileLock:
    """An exclusive ``flock`` on ``directory/name.lock``."""

    def __init__(self, directory: Path, name: str) -> None:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        self.path = directory / f"{safe}.lock"
        self.fd: int | None = None

    async def acquire(self) -> bool:
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return True

    async def alive(self) -> bool:
        return self.fd is not None

    async def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the lock


class Leadership:
    """Makes locks for the jobs of one installation and runs jobs under them."""

    def __init__(
        self, database_url: str, lock_dir: Path, *, retry: float = 2.0, heartbeat: float = 2.0
    ) -> None:
        self.database_url = database_url
        self.lock_dir = lock_dir
        self.retry = retry
        self.heartbeat = heartbeat
        self.refused = 0  # times a lock was found held by another instance

    def lock(self, name: str) -> Lock:
        if make_url(self.database_url).get_backend_name() == "postgresql":
            return PgAdvisoryLock(self.database_url, name)
        return FileLock(self.lock_dir, name)

    async def run(self, name: str, job: Job, stop: asyncio.Event) -> None:
        """Run ``job`` whenever this instance holds lock ``name``, until ``stop`` is set."""
        lock = self.lock(name)
        try:
            while not stop.is_set():
                if not await lock.acquire():
                    self.refused += 1
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.retry)
                    continue
                log.info("leader.acquired", job=name, pid=os.getpid())
                lost = await self._hold(lock, name, job, stop)
                # Said while the lock is still held (the job has ended): another instance
                # can only say "acquired" after this line, so the log never shows two
                # leaders at once (logged after the release, the next one's "acquired"
                # could come first).
                log.info(
                    "leader.released",
                    job=name,
                    pid=os.getpid(),
                    reason="lost" if lost else ("stopped" if stop.is_set() else "job ended"),
                )
                await lock.release()
                if lost:  # give the others a turn first: our connection may be the sick one
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), 2 * self.retry)
        finally:
            await lock.release()

    async def _hold(self, lock: Lock, name: str, job: Job, stop: asyncio.Event) -> bool:
        """Run the job until ``stop`` is set, the job ends, or the lock is lost (True)."""
        job_stop = asyncio.Event()
        task = asyncio.create_task(job(job_stop))
        stopper = asyncio.ensure_future(stop.wait())
        lost = False
        try:
            while not task.done() and not stop.is_set():
                await asyncio.wait({task, stopper}, timeout=self.heartbeat)
                if not task.done() and not stop.is_set() and not await lock.alive():
                    log.warning("leader.lost", job=name)
                    lost = True
                    break
        finally:
            stopper.cancel()
            job_stop.set()
            await asyncio.gather(task, return_exceptions=True)
        if not task.cancelled() and task.exception() is not None:
            log.error("leader.job_failed", job=name, error=str(task.exception()))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.retry)
        return lost
