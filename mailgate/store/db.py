"""The database engines (async for the shell, blocking for the worker) and their failures.

Built from a URL; failures are translated into mailgate's errors.

SQLite runs in WAL mode with ``synchronous=FULL`` (a commit is on disk before it
returns, which is what lets the intake acknowledge a mail), foreign keys on, and
a busy timeout from config. Writing transactions start with ``BEGIN IMMEDIATE``
so that two writers queue for the lock up front instead of failing halfway.
PostgreSQL runs through asyncpg, and blocking work (``Blocking``) through psycopg.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sqlite3
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import SingletonThreadPool
from sqlmodel.ext.asyncio.session import AsyncSession

from mailgate.errors import StorageUnavailable
from mailgate.store.checkpoints import BACKSTOP, Checkpointer
from mailgate.store.files import private_file

# PostgreSQL SQLSTATEs after which the same transaction may succeed when run again.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300"})
IMMEDIATE = "mailgate_immediate"
T = TypeVar("T")


def create_engine(
    url: str,
    *,
    busy_timeout: float = 5.0,
    echo: bool = False,
    pool_size: int = 5,
    max_overflow: int = 5,
    statement_timeout: float = 0.0,
) -> AsyncEngine:
    """An engine for ``url``; SQLite files get their directory and pragmas; PostgreSQL a pool
    that checks connections before use (so a restarted server is reconnected to) and a
    statement timeout (0: none)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            private_file(Path(database))  # SQLite gives its -wal and -shm files this mode
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": busy_timeout})
        _sqlite_pragmas(engine.sync_engine, busy_timeout)
        return engine
    return create_async_engine(
        url,
        echo=echo,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        connect_args=asyncpg_arguments(busy_timeout, statement_timeout),
    )


def asyncpg_arguments(busy_timeout: float, statement_timeout: float) -> dict[str, Any]:
    """What an asyncpg connection of ours is opened with: its connect timeout, and the
    statement timeout (0: none)."""
    settings = (
        {"statement_timeout": str(int(statement_timeout * 1000))} if statement_timeout else {}
    )
    return {"timeout": max(busy_timeout, 1.0), "server_settings": settings}


def create_sqlite_sync_engine(engine: AsyncEngine, busy_timeout: float) -> Engine | None:
    """A blocking engine on the same SQLite file (same pragmas): one connection per thread.

    The spool records each batch through it on the event loop's thread (one
    call instead of a thread hop per statement through aiosqlite), and on a
    worker thread only when another process holds the write lock. None for any
    other backend.
    """
    url = engine.url
    if url.get_backend_name() != "sqlite" or (url.database or ":memory:") == ":memory:":
        return None
    sync = sa_create_engine(
        url.set(drivername="sqlite"),
        poolclass=SingletonThreadPool,
        connect_args={"timeout": busy_timeout, "check_same_thread": False},
    )
    _sqlite_pragmas(sync, busy_timeout)
    return sync


def create_blocking_engine(
    engine: AsyncEngine, *, busy_timeout: float, statement_timeout: float = 0.0, writers: int = 1
) -> Engine | None:
    """The blocking engine ``Blocking`` runs its work on: the SQLite file's (above), or for
    PostgreSQL the same database through psycopg, a connection for each of ``writers``
    threads and the reading one, checked before use and with the same statement timeout.
    None for SQLite in memory, whose work stays on the async engine's one connection.
    """
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return create_sqlite_sync_engine(engine, busy_timeout)
    options = f"-c statement_timeout={int(statement_timeout * 1000)}" if statement_timeout else ""
    return sa_create_engine(
        url.set(drivername="postgresql+psycopg"),
        pool_pre_ping=True,
        pool_size=writers + 1,
        max_overflow=2,
        connect_args={"connect_timeout": max(int(busy_timeout), 1), "options": options},
    )


def _sqlite_pragmas(engine: Engine, busy_timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when a transaction begins.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP}")  # store.checkpoints does it
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


_TEMPORARY = (OperationalError, sqlite3.OperationalError, DisconnectionError, OSError, TimeoutError)


def is_temporary(exc: BaseException) -> bool:
    """Whether a database failure may pass when the same work is tried again."""
    if isinstance(
        exc,
        OperationalError | sqlite3.OperationalError | DisconnectionError | OSError | TimeoutError,
    ):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        return sqlstate in RETRYABLE_SQLSTATES
    return False


@contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Translate temporary database and disk failures into ``StorageUnavailable``."""
    try:
        yield
    except IntegrityError:
        raise
    except Exception as exc:
        if is_temporary(exc):
            detail = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
            raise StorageUnavailable(f"{what}: {type(exc).__name__}: {detail}") from exc
        raise


# SQLite has one writer at a time. Writers of this process queue on an asyncio
# lock (first come, first served) instead of polling SQLite's busy handler,
# which starves unlucky writers under load; busy_timeout still covers writers
# in other processes (``mailgate ingest`` beside the daemon).
class WriteLock:
    """A FIFO lock in which urgent waiters (mail intake) go before the others (the worker)."""

    def __init__(self) -> None:
        self._held = False
        self._urgent: collections.deque[asyncio.Future[None]] = collections.deque()
        self._normal: collections.deque[asyncio.Future[None]] = collections.deque()

    @asynccontextmanager
    async def hold(self, *, urgent: bool) -> AsyncIterator[None]:
        if self._held or self._urgent or self._normal:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            (self._urgent if urgent else self._normal).append(future)
            try:
                await future
            except BaseException:
                if future.done() and not future.cancelled():
                    self._release()  # we were handed the lock while being cancelled
                else:
                    with contextlib.suppress(ValueError):
                        (self._urgent if urgent else self._normal).remove(future)
                raise
        else:
            self._held = True
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        for queue in (self._urgent, self._normal):
            while queue:
                future = queue.popleft()
                if not future.done():
                    future.set_result(None)  # ownership passes on; _held stays True
                    return
        self._held = False

    @property
    def urgent_waiting(self) -> bool:
        return bool(self._urgent)


_WRITE_LOCKS: weakref.WeakKeyDictionary[AsyncEngine, WriteLock] = weakref.WeakKeyDictionary()


def write_lock(engine: AsyncEngine) -> WriteLock | None:
    """This process's queue of SQLite writers for ``engine``; None for other backends."""
    if engine.dialect.name != "sqlite":
        return None
    return _WRITE_LOCKS.setdefault(engine, WriteLock())


@asynccontextmanager
async def session(
    engine: AsyncEngine, *, write: bool = False, urgent: bool = False
) -> AsyncIterator[AsyncSession]:
    """One transaction; ``write=True`` takes SQLite's write lock at BEGIN.

    ``urgent`` writers (recording received mail, which a client waits on) go
    before the others in this process.
    """
    if not write:
        async with AsyncSession(engine, expire_on_commit=False) as s, s.begin():
            yield s
        return
    bind = engine.execution_options(**{IMMEDIATE: True})
    if engine.dialect.name != "sqlite":
        async with AsyncSession(bind, expire_on_commit=False) as s, s.begin():
            yield s
        return
    lock = write_lock(engine)
    assert lock is not None
    async with lock.hold(urgent=urgent), AsyncSession(bind, expire_on_commit=False) as s, s.begin():
        yield s


class Blocking:
    """Runs blocking database work (``Callable[[Connection], T]``) in one transaction.

    On a SQLite file or PostgreSQL: on a dedicated thread with its own connection
    (one per named writer, one for reading): a whole batch of statements is one
    hop off the event loop, not one per statement as through an async driver.
    SQLite's writers of this process take turns by this process's write lock
    first. On SQLite in memory: on the async engine's one connection through
    ``run_sync``.
    """

    def __init__(self, engine: AsyncEngine, sync_engine: Engine | None) -> None:
        self.engine = engine
        self.sync_engine = sync_engine
        # A thread (and connection) per writer, one for reading: in WAL a read never
        # waits for the writer, so the next batch loads while the one before is applied.
        self._threads: dict[str, ThreadPoolExecutor] = {}
        # Connections kept from call to call (``in_session``), by name: their session-level
        # locks with them.
        self._sessions: dict[str, Connection] = {}
        # SQLite's log copied into the file on a thread of its own, after our commits
        self.checkpoints: Checkpointer | None = None
        if sync_engine is not None and sync_engine.dialect.name == "sqlite":
            self.checkpoints = Checkpointer(str(sync_engine.url.database))
            self.checkpoints.watch(sync_engine)

    def watch(self, engine: Engine | None) -> None:
        """Checkpoint after the commits of ``engine`` (the intake's, on the same file) too."""
        if self.checkpoints is not None and engine is not None:
            self.checkpoints.watch(engine)

    async def write(self, work: Callable[[Connection], T], *, writer: str = "write") -> T:
        """``work`` in a writing transaction (SQLite: ``BEGIN IMMEDIATE``), committed, on the
        thread of ``writer``: work of different writers runs side by side on PostgreSQL."""
        if self.sync_engine is None:
            async with session(self.engine, write=True) as s:
                return await s.run_sync(lambda sync: work(sync.connection()))
        lock = write_lock(self.engine)
        if lock is None:
            return await self._on_thread(work, writer, write=True)
        async with lock.hold(urgent=False):  # one writer at a time: one thread serves them
            return await self._on_thread(work, "write", write=True)

    @property
    def single_writer(self) -> bool:
        """Whether one writer at a time is all the database takes (SQLite)."""
        return self.engine.dialect.name == "sqlite"

    def urgent_waiting(self) -> bool:
        """Whether an urgent writer of this process (mail intake) waits for the lock that
        the current blocking work holds (SQLite); a long write should end early then."""
        lock = write_lock(self.engine)
        return lock is not None and lock.urgent_waiting

    async def read(self, work: Callable[[Connection], T]) -> T:
        """``work`` in a reading transaction."""
        if self.sync_engine is None:
            async with session(self.engine) as s:
                return await s.run_sync(lambda sync: work(sync.connection()))
        return await self._on_thread(work, "read", write=False)

    async def in_session(self, work: Callable[[Connection], T], name: str) -> T:
        """``work`` on the thread of ``name``, on a connection of that name's own, kept from
        call to call, in autocommit (PostgreSQL): what the session holds (advisory locks)
        it holds until released or the session ends. A connection that failed is dropped,
        its locks with it; when the kept one was found gone (the server restarted), ``work``
        runs again on a new one, so it must be safe to run twice."""
        engine = self.sync_engine
        assert engine is not None

        def run() -> T:
            while True:
                conn = self._sessions.get(name)
                kept = conn is not None
                if conn is None:
                    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                    self._sessions[name] = conn
                try:
                    return work(conn)
                except DBAPIError as exc:
                    self._sessions.pop(name, None)
                    with contextlib.suppress(Exception):
                        conn.invalidate()
                    if not (kept and exc.connection_invalidated):
                        raise

        return await asyncio.get_running_loop().run_in_executor(self._thread(name), run)

    def _thread(self, name: str) -> ThreadPoolExecutor:
        thread = self._threads.get(name)
        if thread is None:
            prefix = f"mailgate-db-{name}"
            thread = self._threads[name] = ThreadPoolExecutor(1, thread_name_prefix=prefix)
        return thread

    async def _on_thread(self, work: Callable[[Connection], T], name: str, *, write: bool) -> T:
        thread = self._thread(name)
        engine = self.sync_engine
        assert engine is not None
        bind = engine.execution_options(**{IMMEDIATE: True}) if write else engine

        def run() -> T:
            with bind.begin() as conn:
                return work(conn)

        return await asyncio.get_running_loop().run_in_executor(thread, run)

    def close(self) -> None:
        for thread in self._threads.values():
            thread.shutdown(wait=True)
        self._threads.clear()
        for conn in self._sessions.values():
            with contextlib.suppress(Exception):  # gone already: its locks with it
                conn.close()
        self._sessions.clear()
        if self.checkpoints is not None:
            self.checkpoints.close()
        if self.sync_engine is not None:
            self.sync_engine.dispose()
