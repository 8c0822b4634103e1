"""The one door every mail comes in through: store the raw bytes durably, then record them.

``Spool.store`` returns only after the raw mail is on disk (fsync'd) and its row
is committed; only then may a listener answer 250, the IMAP poller move the
mail, or the pipe exit 0. Any failure raises ``StorageUnavailable`` and leaves
nothing half-done: a file this call created is removed again.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from mailgate.blobs import BlobStore
from mailgate.clock import Clock
from mailgate.core.identity import identify
from mailgate.core.model import NewSpoolItem, SpoolReceipt
from mailgate.errors import BadMail
from mailgate.store.db import IMMEDIATE, session, storage_errors, write_lock
from mailgate.store.repos import Repo, spool_add_rows

log = structlog.get_logger("mailgate.intake")


@dataclass(frozen=True, slots=True)
class Received:
    """A mail as a way in hands it over: the exact bytes and where they came from."""

    raw: bytes
    source: str
    envelope_from: str | None = None
    envelope_to: tuple[str, ...] = ()
    trace: bytes = b""  # our own Received: header, stored in front; not part of the identity

    @property
    def stored_bytes(self) -> bytes:
        return self.trace + self.raw


@dataclass(frozen=True, slots=True)
class Stored:
    """The spool's receipt: the row that holds the mail, and whether it was a duplicate."""

    spool_id: int
    duplicate: bool
    message_id: str | None


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
        raw: BlobStore,
        clock: Clock,
        on_stored: Callable[[int], None] | None = None,
        batch_size: int = 64,
        sync_engine: Engine | None = None,
    ) -> None:
        self.engine = engine
        self.raw = raw
        self.clock = clock
        self.on_stored = on_stored
        self.batch_size = batch_size
        self.sync_engine = sync_engine
        self._executor: ThreadPoolExecutor | None = None
        self._waiting: list[
            tuple[NewSpoolItem, bytes, asyncio.Future[tuple[SpoolReceipt, bool]]]
        ] = []
        self._writer: asyncio.Task[None] | None = None
        self._last_store = float("-inf")

    def busy(self, within: float = 0.05) -> bool:
        """Whether mail is being received right now (for the worker to give way)."""
        return bool(self._waiting) or time.monotonic() - self._last_store < within

    async def store(self, received: Received) -> Stored:
        """Store ``received`` durably; a second delivery of the same mail is a duplicate."""
        if not received.raw.strip():
            raise BadMail("empty message")
        self._last_store = time.monotonic()
        ident = identify(received.raw)
        data = received.stored_bytes
        raw_sha256 = hashlib.sha256(data).hexdigest() if received.trace else ident.raw_sha256
        item = NewSpoolItem(
            dedupe_key=ident.dedupe_key,
            raw_sha256=raw_sha256,
            size=len(data),
            message_id=ident.message_id,
            source=received.source,
            envelope_from=received.envelope_from,
            envelope_to=tuple(_clean(received.envelope_to)),
        )
        receipt, created = await self._record(item, data)
        bound = log.bind(
            message_id=ident.message_id, source=received.source, spool_id=receipt.spool_id
        )
        if receipt.duplicate:
            if created and receipt.raw_sha256 != raw_sha256:
                self.raw.discard(raw_sha256)  # this copy differs only in trace headers
            bound.info("mail.duplicate")
            return Stored(receipt.spool_id, True, ident.message_id)
        bound.info("mail.stored", size=len(data))
        if self.on_stored is not None:
            self.on_stored(receipt.spool_id)
        return Stored(receipt.spool_id, False, ident.message_id)

    async def _record(self, item: NewSpoolItem, data: bytes) -> tuple[SpoolReceipt, bool]:
        """Queue the item for the next group commit and wait for it."""
        future: asyncio.Future[tuple[SpoolReceipt, bool]] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting.append((item, data, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches())
        return await asyncio.shield(future)

    async def _write_batches(self) -> None:
        """Commit what is waiting, batch after batch: files first (fsync'd), then the rows."""
        while self._waiting:
            batch = self._waiting[: self.batch_size]
            del self._waiting[: self.batch_size]
            files = [(data, item.raw_sha256) for item, data, _ in batch]
            items = [item for item, _, _ in batch]
            try:
                receipts, created = await self._commit(files, items)
            except BaseException as exc:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, _, future), receipt, made in zip(batch, receipts, created, strict=True):
                if not future.done():
                    future.set_result((receipt, made))

    async def _commit(
        self, files: list[tuple[bytes, str]], items: list[NewSpoolItem]
    ) -> tuple[list[SpoolReceipt], list[bool]]:
        """Write one batch durably; files that this batch created are removed on failure."""
        now = self.clock.now()
        lock = write_lock(self.engine)
        if self.sync_engine is not None and lock is not None:
            # SQLite: files and rows in one hop to the spool's own thread.
            async with lock.hold(urgent=True):
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(
                    self._thread(), self._commit_sync, files, items, now
                )
        created = await asyncio.to_thread(self.raw.put_many, files)
        try:
            for attempt in range(3):
                try:
                    with storage_errors("spool insert"):
                        async with session(self.engine, write=True, urgent=True) as s:
                            return await Repo(s).spool_add(items, now), created
                except IntegrityError:
                    # Another instance recorded one of these keys meanwhile: look again.
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")
        except BaseException:
            self._discard(files, created)
            raise

    def _commit_sync(
        self, files: list[tuple[bytes, str]], items: list[NewSpoolItem], now: datetime
    ) -> tuple[list[SpoolReceipt], list[bool]]:
        assert self.sync_engine is not None
        created = self.raw.put_many(files)
        try:
            with (
                storage_errors("spool insert"),
                self.sync_engine.execution_options(**{IMMEDIATE: True}).begin() as conn,
            ):
                return spool_add_rows(conn, items, now), created
        except BaseException:
            self._discard(files, created)
            raise

    def _discard(self, files: list[tuple[bytes, str]], created: list[bool]) -> None:
        for (_, digest), made in zip(files, created, strict=False):
            if made:
                self.raw.discard(digest)

    def _thread(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailgate-spool")
        return self._executor

    def close(self) -> None:
        """Release the spool's own thread and its connection (closed in that thread)."""
        if self._executor is not None:
            if self.sync_engine is not None:
                self._executor.submit(self.sync_engine.dispose).result()
            self._executor.shutdown(wait=True)
            self._executor = None


def _clean(addresses: Sequence[str]) -> list[str]:
    return [a.strip().strip("<>") for a in addresses if a.strip().strip("<>")]
