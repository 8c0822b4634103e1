"""The gather step's CPU work in processes of their own (SQLite), beside the daemon's worker.

SQLite takes one writer, so the daemon applies every mail in its own process
(``runners.worker``); on PostgreSQL whole workers run in processes (``runners.processes``).
What a batch needs before its transaction — parsing, understanding, classifying,
detecting the language: a third of a mail's CPU — needs no database at all. While the
daemon applies one batch, ``Parsers`` parses the next in ``[worker] processes`` processes
of their own (started with the daemon), a batch large enough to pay for the trip cut
in one part per process; the mails go there as bytes and come back understood
(``Prepared``). A batch of a few mails is parsed in the daemon, which costs less than
the trip. Reading raw mails and writing blobs stays in the daemon (``runners.batch``).

A process that dies takes only its part with it: the pool is started again and that
batch parsed in the daemon. See docs/decisions/0023-parsing-processes.md.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import multiprocessing.connection
import os
import pickle
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import structlog

from mailgate.core.language import detect_language
from mailgate.core.model import SpoolEntry
from mailgate.runners.batch import (
    Failed,
    Gathered,
    prepare_all,
    stored,
    understand,
    with_raw,
)
from mailgate.store.blobs import BlobStore
from mailgate.tickets.prepare import Preparer

log = structlog.get_logger("mailgate.runners.parsing")
# Fewer mails than this in a batch are parsed in the daemon: a trip to a process and back
# (pickling both ways, a wake-up) costs about what one small mail's parsing does.
AWAY_FROM = 4
NICENESS = 10  # added to a parsing process's nice value
WARM_SECONDS = 0.2  # each process's task while warming: long enough for all to start


class Parsers:
    """Processes that run ``prepare_all`` for the daemon's worker."""

    def __init__(self, count: int, level: str, fmt: str) -> None:
        self.count = count
        self.level = level
        self.fmt = fmt
        self._pool: ProcessPoolExecutor | None = None

    def wanted(self, mails: int) -> bool:
        """Whether a batch of ``mails`` goes to the processes."""
        return self.count > 0 and mails >= AWAY_FROM

    async def gather(
        self,
        loaded: list[tuple[SpoolEntry, bytes | None]],
        preparer: Preparer,
        raw_store: BlobStore | None,
        attachments: BlobStore | None,
    ) -> Gathered:
        """The gather step of a loaded batch (``runners.batch``): parsed on a thread of the
        daemon, or a batch large enough in the processes; its bytes stored."""
        if not self.wanted(len(loaded)):
            return await asyncio.to_thread(understand, loaded, preparer, raw_store, attachments)
        raws, unread = await asyncio.to_thread(with_raw, loaded, raw_store)
        parsed = await self.prepare(raws, preparer)
        return stored(parsed.joined(unread), loaded, raw_store, attachments)

    async def prepare(
        self, raws: Sequence[tuple[SpoolEntry, bytes, bool]], preparer: Preparer
    ) -> Gathered:
        """``prepare_all`` of ``raws``, a part in each process; in this one (on a thread)
        when the pool broke (a process died: started again for the next batch)."""
        if not raws:
            return Gathered([], [], {}, {})
        pool = self._started()
        loop = asyncio.get_running_loop()
        size = -(-len(raws) // self.count)  # parts in order: joined back, the batch's order
        parts = [list(raws[i : i + size]) for i in range(0, len(raws), size)]
        try:
            done = await asyncio.gather(
                *(loop.run_in_executor(pool, _prepare, part, preparer) for part in parts)
            )
        except BrokenProcessPool as exc:
            log.error("worker.parser_died", error=str(exc))
            self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            return await asyncio.to_thread(prepare_all, raws, preparer)
        return functools.reduce(Gathered.joined, done)

    def start(self) -> list[Future[None]]:
        """Start the processes now, each to get ready to parse (its imports done, the
        language model loaded), instead of at the first large batch: the daemon does it as
        it starts, so that the first burst of mail — an MTA's queue after downtime — does
        not pay for it (a second of both cores) while its clients wait for their 250s.
        Returns at once; the futures are done when the processes are ready."""
        if self.count <= 0:
            return []
        pool = self._started()
        try:
            # Each process takes one (the pool spawns a process for a task no idle one takes).
            return [pool.submit(time.sleep, WARM_SECONDS) for _ in range(self.count)]
        except OSError as exc:  # no process to be had now (limits, memory): at the first batch
            log.warning("worker.parsers_not_started", error=str(exc))
            self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            return []

    async def warm(self) -> None:
        """``start`` and wait until every process is ready (the benchmarks' start)."""
        await asyncio.gather(*(asyncio.wrap_future(f) for f in self.start()))

    def _started(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.count,
                mp_context=multiprocessing.get_context("spawn"),  # no fork of the event loop
                initializer=_ready,
                initargs=(self.level, self.fmt),
            )
            log.info("worker.parsers_started", processes=self.count)
        return self._pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, True, cancel_futures=True)


# --- in a parsing process --------------------------------------------------------------------


def _ready(level: str, fmt: str) -> None:
    """A parsing process's start: the daemon's log format and a lower priority; SIGTERM
    and SIGINT, which a service manager or a terminal sends to the whole group, are the
    daemon's to act on (it shuts the pool down when it stops); and when the daemon is
    gone (killed), this process ends too instead of waiting for work that never comes."""
    import signal

    from mailgate.log import configure

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    configure(level, fmt)
    # Parsing ahead is background work: when the cores are busy, the daemon's listeners
    # (a client waits for each 250) and its applying go first.
    os.nice(NICENESS)
    detect_language("Een zin om het taalmodel te laden.", ("nl",))  # loaded once, up front
    parent = multiprocessing.parent_process()
    if parent is not None:
        watch = threading.Thread(target=_orphaned, args=(parent.sentinel,), daemon=True)
        watch.start()


def _orphaned(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])  # returns when the daemon has ended
    os._exit(0)


def _prepare(raws: list[tuple[SpoolEntry, bytes, bool]], preparer: Preparer) -> Gathered:
    gathered = prepare_all(raws, preparer)
    return Gathered(gathered.ready, [_portable(f) for f in gathered.failed], {}, gathered.seconds)


def _portable(failed: Failed) -> Failed:
    """``failed`` with an error that crosses back to the daemon: an exception that does not
    pickle becomes a ``RuntimeError`` of the same text (its traceback is kept as text)."""
    try:
        pickle.loads(pickle.dumps(failed.error))  # noqa: S301 - our own bytes, just made
    except Exception:
        error = RuntimeError(f"{type(failed.error).__name__}: {failed.error}")
        return Failed(failed.entry, error, failed.trace)
    return failed
