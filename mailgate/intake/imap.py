"""The IMAP poller: take new mail from a hosted mailbox into the spool, exactly once.

Per mailbox, one blocking imapclient connection runs in a worker thread. Each
round fetches what waits in the watched folder with ``BODY.PEEK[]`` (never
marking it seen), stores every mail through the spool (fsync'd, committed),
records a checkpoint (UIDVALIDITY, highest stored UID), and only then MOVEs the
mails to the processed folder (COPY + ``\\Deleted`` + UID EXPUNGE where MOVE is
missing). A crash before the MOVE leaves the mail on the server; the next
round finds it below the checkpoint and only moves it, and the spool's
de-duplication catches whatever is fetched twice. Between rounds the poller
waits in IDLE when the server offers it (renewed before the server's 29-minute
limit), else it polls. Any connection failure reconnects with exponential
backoff and jitter; a refused login is logged loudly and retried slowly,
without touching the other mailboxes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from mailgate.clock import Clock
from mailgate.config import ImapConfig
from mailgate.core.model import Stored
from mailgate.errors import BadMail, LoginFailed, MailgateError
from mailgate.intake.mailbox import ImapConnection
from mailgate.intake.spool import Received, Spool
from mailgate.ops.oauth import tokens_for
from mailgate.store.db import session, storage_errors
from mailgate.store.repos import Repo

log = structlog.get_logger("mailgate.imap")

T = TypeVar("T")
FETCH_BYTES = 16 * 1024 * 1024  # fetch bodies in slices of about this many bytes
MAX_BACKOFF = 300.0


class ImapPoller:
    """Watches one mailbox for the daemon's lifetime."""

    def __init__(
        self,
        config: ImapConfig,
        *,
        spool: Spool,
        engine: AsyncEngine,
        clock: Clock,
        envelope_to: tuple[str, ...] = (),
        on_state: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.tokens = tokens_for(config)  # OAuth2: one source, its token kept across sessions
        self.on_state = on_state or (lambda _state: None)
        self.spool = spool
        self.engine = engine
        self.clock = clock
        self.envelope_to = envelope_to
        self.stopped = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop: asyncio.Event | None = None
        self.log = log.bind(mailbox=config.name)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set, reconnecting after failures."""
        self.loop = asyncio.get_running_loop()
        self.stop = stop
        watcher = asyncio.create_task(self._watch(stop))
        failures = 0
        try:
            while not self.stopped.is_set():
                try:
                    await asyncio.to_thread(self._session)
                    failures = 0
                except LoginFailed as exc:
                    failures += 1
                    self.on_state(f"login failed: {exc}")
                    self.log.error("imap.login_failed", reason=str(exc), attempt=failures)
                    await self._pause(max(60.0, self._backoff(failures)))
                except MailgateError as exc:
                    failures += 1
                    delay = self._backoff(failures)
                    self.on_state(f"disconnected: {exc}")
                    self.log.warning("imap.disconnected", reason=str(exc), retry_in=round(delay, 1))
                    await self._pause(delay)
        finally:
            watcher.cancel()

    async def _watch(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.stopped.set()

    def _backoff(self, failures: int) -> float:
        base = min(MAX_BACKOFF, 2.0 ** min(failures, 9) / 2)
        return base * random.uniform(0.5, 1.5)  # jitter, not cryptography

    async def _pause(self, seconds: float) -> None:
        assert self.stop is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    # --- the blocking side, in a worker thread -------------------------------------------

    def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run a coroutine on the daemon's loop from this thread and wait for it."""
        assert self.loop is not None

        async def wrapper() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result()

    def _session(self) -> None:
        connection = ImapConnection(self.config, self.tokens)
        try:
            state = connection.open()
            idle = connection.can_idle()
            self.on_state("connected")
            self.log.info(
                "imap.connected",
                folder=self.config.folder,
                waiting=state.waiting,
                uidvalidity=state.uidvalidity,
                idle=idle,
            )
            while not self.stopped.is_set():
                self._drain(connection, state.uidvalidity)
                if self.stopped.is_set():
                    break
                if idle:
                    connection.idle(min(self.config.idle_renew, 29 * 60.0), self.stopped)
                else:
                    self._sleep(self.config.poll_interval)
                    connection.noop()
        finally:
            connection.close()

    def _sleep(self, seconds: float) -> None:
        self.stopped.wait(seconds)

    def _checkpoint(self) -> tuple[int, int] | None:
        async def read() -> tuple[int, int] | None:
            with storage_errors("imap checkpoint"):
                async with session(self.engine) as s:
                    return await Repo(s).imap_checkpoint(self.config.name, self.config.folder)

        return self._call(read)

    def _record(self, uidvalidity: int, last_uid: int) -> None:
        async def write() -> None:
            with storage_errors("imap checkpoint"):
                async with session(self.engine, write=True) as s:
                    await Repo(s).imap_checkpoint_set(
                        self.config.name,
                        self.config.folder,
                        uidvalidity,
                        last_uid,
                        self.clock.now(),
                    )

        self._call(write)

    def _drain(self, connection: ImapConnection, uidvalidity: int) -> None:
        """Store and move everything waiting in the folder, in UID order, batch by batch."""
        checkpoint = self._checkpoint()
        if checkpoint is not None and checkpoint[0] != uidvalidity:
            self.log.warning("imap.uidvalidity_changed", old=checkpoint[0], new=uidvalidity)
            checkpoint = None  # every mail present is fetched; the spool's dedupe decides
        stored_up_to = checkpoint[1] if checkpoint else 0
        uids = connection.waiting()
        for start in range(0, len(uids), self.config.batch_size):
            if self.stopped.is_set():
                return
            batch = uids[start : start + self.config.batch_size]
            known = [uid for uid in batch if uid <= stored_up_to]
            fresh = [uid for uid in batch if uid > stored_up_to]
            stored, failed = self._store(connection, fresh, known, uidvalidity)
            connection.move(stored, self.config.processed_folder)
            connection.move(failed, self.config.failed_folder)

    def _store_all(self, received: list[Received]) -> list[Stored | BaseException]:
        async def store_all() -> list[Stored | BaseException]:
            return await asyncio.gather(
                *(self.spool.store(r) for r in received), return_exceptions=True
            )

        return self._call(store_all)

    def _store(
        self, connection: ImapConnection, uids: list[int], known: list[int], uidvalidity: int
    ) -> tuple[list[int], list[int]]:
        """Store ``uids``; returns what goes to the processed and to the failed folder.

        ``known`` were stored in an earlier round (below the checkpoint): they are
        only sorted into processed or failed again.
        """
        if not uids and not known:
            return [], []
        sizes = connection.sizes(uids + known)
        stored: list[int] = []
        failed: list[int] = []
        wanted: list[int] = []
        for uid in known:
            too_large = sizes.get(uid, 0) > self.config.max_message_size
            (failed if too_large else stored).append(uid)
        for uid in uids:
            if sizes.get(uid, 0) > self.config.max_message_size:
                self.log.warning(
                    "imap.too_large",
                    uid=uid,
                    size=sizes[uid],
                    limit=self.config.max_message_size,
                    folder=self.config.failed_folder,
                )
                failed.append(uid)
            elif uid in sizes:
                wanted.append(uid)
        for chunk in _slices(wanted, sizes, FETCH_BYTES):
            bodies = connection.bodies(chunk)
            received = [
                Received(
                    bodies.get(uid, b""), f"imap:{self.config.name}", envelope_to=self.envelope_to
                )
                for uid in chunk
            ]
            # Stored concurrently, so that the spool commits the chunk in few group commits.
            results = self._store_all(received)
            for uid, result in zip(chunk, results, strict=True):
                if isinstance(result, BadMail):
                    self.log.warning(
                        "imap.unusable",
                        uid=uid,
                        reason=str(result),
                        folder=self.config.failed_folder,
                    )
                    failed.append(uid)
                elif isinstance(result, BaseException):
                    raise result
                else:
                    stored.append(uid)
                    self.log.info(
                        "imap.stored", uid=uid, spool_id=result.spool_id, duplicate=result.duplicate
                    )
            # Every mail up to here is committed: remember it before moving anything.
            self._record(uidvalidity, max([*stored, *failed, *chunk]))
        return stored, failed


def _slices(uids: list[int], sizes: dict[int, int], budget: int) -> Iterator[list[int]]:
    """Consecutive groups of UIDs whose bodies add up to about ``budget`` bytes."""
    current: list[int] = []
    total = 0
    for uid in uids:
        if current and total + sizes.get(uid, 0) > budget:
            yield current
            current, total = [], 0
        current.append(uid)
        total += sizes.get(uid, 0)
    if current:
        yield current
