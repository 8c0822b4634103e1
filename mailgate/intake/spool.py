"""The one door every mail comes in through: record the raw bytes durably.

``Spool.store`` returns only after the mail's row and its raw bytes are
committed (SQLite WAL with synchronous=FULL, or PostgreSQL): only then may a
listener answer 250, the IMAP poller move the mail, or the pipe exit 0. Any
failure raises ``StorageUnavailable`` and leaves nothing behind. The worker
later moves the bytes into the content-addressed blob store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection

from mailgate.clock import Clock
from mailgate.core.identity import RawBytes, identify, plain_address
from mailgate.core.model import NewSpoolItem, Stored
from mailgate.core.parties import sender_key
from mailgate.errors import BadMail, StorageUnavailable
from mailgate.store.db import (
    RETRYABLE_SQLSTATES,
    asyncpg_arguments,
    session,
    storage_errors,
    write_lock,
)
from mailgate.store.repos.received import (
    spool_add_postgresql,
    spool_add_rows,
    spool_add_sqlite,
    sqlite_timestamp,
)

log = structlog.get_logger("mailgate.intake")


_BLANK = re.compile(rb"\s*")
# After a mail is stored, the worker waits this long for the next before it takes the
# write lock: a client's next mail follows its 250 within a few round trips.
GAP = 0.01
# The sources of mail written on the server itself: by ``mailgate reply``/``note``, and by
# a signed-in agent on the web desk. No way in from outside uses them, so such a mail is
# the team's by construction.
SERVER_SOURCE = "cli"
WEB_SOURCE = "web"
TEAM_SOURCES = frozenset({SERVER_SOURCE, WEB_SOURCE})


@dataclass(frozen=True, slots=True)
class Received:
    """A mail as a way in hands it over: the exact bytes and where they came from."""

    raw: RawBytes
    source: str
    envelope_from: str | None = None
    envelope_to: tuple[str, ...] = ()
    trace: bytes = b""  # our own Received: header, stored in front; not part of the identity
    framed: RawBytes | None = None  # trace and raw in one buffer already (see ``in_buffer``)

    @classmethod
    def in_buffer(
        cls,
        buffer: bytearray,
        trace_length: int,
        source: str,
        envelope_from: str | None = None,
        envelope_to: tuple[str, ...] = (),
    ) -> Received:
        """A mail received straight into ``buffer`` behind our trace header (the SMTP
        listener does so): stored as it is, never copied."""
        return cls(
            memoryview(buffer)[trace_length:],
            source,
            envelope_from,
            envelope_to,
            trace=bytes(buffer[:trace_length]),
            framed=buffer,
        )

    @property
    def stored_bytes(self) -> RawBytes:
        if self.framed is not None:
            return self.framed
        return self.trace + self.raw if self.trace else self.raw


class Spool:
    """Durable intake shared by every listener, poller and the pipe.

    Rows are written by group commit: mails that arrive while a commit is in
    progress are recorded together in the next one, so concurrent SMTP
    transactions share one fsync instead of queueing for one each. Each caller
    still returns only after the commit that holds its own row.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        clock: Clock,
        on_stored: Callable[[int], None] | None = None,
        batch_size: int = 64,
        sync_engine: Engine | None = None,
        busy_timeout: float = 5.0,
        statement_timeout: float = 0.0,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.on_stored = on_stored
        self.batch_size = batch_size
        self.sync_engine = sync_engine
        self.busy_ms = int(busy_timeout * 1000)
        self._connection: PoolProxiedConnection | None = None
        self._postgresql: Any = None  # PostgreSQL: the spool's own asyncpg connection
        url = engine.url
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._connect_args = asyncpg_arguments(busy_timeout, statement_timeout)
        self._waiting: list[tuple[NewSpoolItem, RawBytes, asyncio.Future[Stored]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._storing = 0  # stores begun, not yet answered
        self._last_store = float("-inf")  # when the last one was answered

    def busy(self, within: float = GAP) -> bool:
        """Whether mail is being received right now (for the worker to give way): a mail
        is being stored, or one was stored less than ``within`` seconds ago (a client's next
        mail follows its 250 within a few round trips)."""
        return self._storing > 0 or time.monotonic() - self._last_store < within

    async def store(self, received: Received) -> Stored:
        """Store ``received`` durably; a second delivery of the same mail is a duplicate."""
        if _BLANK.fullmatch(received.raw):
            raise BadMail("empty message")
        self._storing += 1
        try:
            return await self._store(received)
        finally:
            self._storing -= 1
            self._last_store = time.monotonic()

    async def _store(self, received: Received) -> Stored:
        ident = identify(received.raw)
        data = received.stored_bytes
        raw_sha256 = hashlib.sha256(data).hexdigest() if received.trace else ident.raw_sha256
        author = ident.sender or plain_address(received.envelope_from)
        item = NewSpoolItem(
            dedupe_key=ident.dedupe_key,
            raw_sha256=raw_sha256,
            size=len(data),
            message_id=ident.message_id,
            source=received.source,
            envelope_from=received.envelope_from,
            envelope_to=tuple(_clean(received.envelope_to)),
            thread=ident.thread,
            sender_key=sender_key(author) if author is not None else None,
        )
        receipt = await self._record(item, data)
        bound = log.bind(
            message_id=ident.message_id, source=received.source, spool_id=receipt.spool_id
        )
        if receipt.duplicate:
            bound.info("mail.duplicate")
            return receipt
        bound.info("mail.stored", size=len(data))
        if self.on_stored is not None:
            self.on_stored(receipt.spool_id)
        return receipt

    async def _record(self, item: NewSpoolItem, data: RawBytes) -> Stored:
        """Queue the item for the next group commit and wait for it."""
        future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, data, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches())
        return await asyncio.shield(future)

    async def _write_batches(self) -> None:
        """Commit what is waiting, batch after batch: rows and bytes in one transaction."""
        await asyncio.sleep(0)  # let the mails that arrived in this loop turn join the batch
        while self._waiting:
            batch = self._waiting[: self.batch_size]
            del self._waiting[: self.batch_size]
            items = [item for item, _, _ in batch]
            raws = [data for _, data, _ in batch]
            try:
                receipts = await self._commit(items, raws)
            except BaseException as exc:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, _, future), receipt in zip(batch, receipts, strict=True):
                if not future.done():
                    future.set_result(receipt)

    async def _commit(self, items: list[NewSpoolItem], raws: list[RawBytes]) -> list[Stored]:
        """Write one batch durably: one transaction, one fsync."""
        now = self.clock.now()
        lock = write_lock(self.engine)
        if self.sync_engine is not None and lock is not None:
            async with lock.hold(urgent=True):
                return await self._commit_sqlite(items, raws, now)
        if self.engine.dialect.name == "postgresql":
            return await self._commit_postgresql(items, raws, now)
        for attempt in range(3):
            try:
                with storage_errors("spool insert"):
                    async with session(self.engine, write=True, urgent=True) as s:
                        return await s.run_sync(
                            lambda sync: spool_add_rows(sync.connection(), items, raws, now)
                        )
            except IntegrityError:
                # Another instance recorded one of these keys meanwhile: look again.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _commit_postgresql(
        self, items: list[NewSpoolItem], raws: list[RawBytes], now: datetime
    ) -> list[Stored]:
        """One statement through asyncpg on the spool's own connection, in autocommit
        (``spool_add_postgresql``): SQLAlchemy's session, transaction and three statements
        cost 2.4 ms of CPU for a batch of one mail, this about a tenth. A kept connection
        found gone (the server restarted) is replaced and the batch sent again: a batch
        that was committed before its answer was lost comes back as duplicates of itself."""
        import asyncpg

        failures = (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,  # a connection the server ended under a statement
            OSError,
            TimeoutError,
        )
        for _ in range(3):
            if self._postgresql is not None and self._postgresql.is_closed():
                self._drop_postgresql()  # the server ended it, and asyncpg noticed
            kept = self._postgresql is not None
            try:
                if self._postgresql is None:
                    self._postgresql = await asyncpg.connect(self._dsn, **self._connect_args)
                receipts = await spool_add_postgresql(self._postgresql, items, raws, now)
            except failures as exc:
                state = str(getattr(exc, "sqlstate", None) or "")
                lost = not state or state.startswith(("08", "57P"))  # the connection is gone
                if lost or state in RETRYABLE_SQLSTATES:
                    self._drop_postgresql()
                    if kept and lost:
                        continue
                    detail = str(exc).splitlines()[0][:200] if str(exc) else ""
                    message = f"spool insert: {type(exc).__name__}: {detail}"
                    raise StorageUnavailable(message) from exc
                raise
            if receipts is not None:
                return receipts
        raise StorageUnavailable("spool insert: the same mails kept arriving at another instance")

    def _drop_postgresql(self) -> None:
        if self._postgresql is not None:
            self._postgresql.terminate()
            self._postgresql = None

    async def _commit_sqlite(
        self, items: list[NewSpoolItem], raws: list[RawBytes], now: datetime
    ) -> list[Stored]:
        """One SQLite transaction through the driver: the inserts on the event loop (a
        thread would fight the loop for the GIL over every statement), the COMMIT, which
        is the fsync and releases the GIL, on a thread. Waiting for another process's
        write lock (``mailgate ingest``, a backup) also happens on a thread. See
        docs/decisions/0004-smtp-acknowledgement.md."""
        driver = self._driver()
        with storage_errors("spool insert"):
            try:
                driver.execute(f"PRAGMA busy_timeout = {INLINE_BUSY_MS}")
                driver.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
                await asyncio.to_thread(self._begin_waiting, driver)
            try:
                assert self.sync_engine is not None
                stamp = sqlite_timestamp(self.sync_engine.dialect, now)
                receipts = spool_add_sqlite(driver, items, raws, stamp)
                await asyncio.to_thread(driver.execute, "COMMIT")
            except BaseException:
                if driver.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        driver.execute("ROLLBACK")
                raise
        return receipts

    def _begin_waiting(self, driver: sqlite3.Connection) -> None:
        driver.execute(f"PRAGMA busy_timeout = {self.busy_ms}")
        driver.execute("BEGIN IMMEDIATE")

    def _driver(self) -> sqlite3.Connection:
        """The spool's own SQLite connection, checked out of its engine for good."""
        if self._connection is None:
            assert self.sync_engine is not None
            self._connection = self.sync_engine.raw_connection()
        driver = self._connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        return driver

    async def close(self) -> None:
        """Release the spool's own connection."""
        self._drop_postgresql()
        await asyncio.to_thread(self._close_sqlite)

    def _close_sqlite(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self.sync_engine is not None:
            self.sync_engine.dispose()


# How long BEGIN on the event loop waits for another process's SQLite write lock before
# the wait moves to a thread: short, because the whole daemon waits with it.
INLINE_BUSY_MS = 20


def _clean(addresses: Sequence[str]) -> list[str]:
    return [a.strip().strip("<>") for a in addresses if a.strip().strip("<>")]
