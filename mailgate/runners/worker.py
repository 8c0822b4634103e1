"""The worker: claim due spool items in batches, hand them to the ticket application, finish.

A batch goes through three steps. Gather: one query loads the pending items
with the bytes the spool still holds; on a thread (or in parsing processes), each
mail is parsed and understood (``tickets.prepare``) and the writing of its raw bytes
and attachments to the blob store begins — no transaction open, no lock held; the
next batch is gathered while this one is applied. Apply: one writing transaction
claims the batch's spool rows, applies each mail (``tickets.mail``) inside its own
SAVEPOINT, so a mail that fails rolls back alone and the others commit, and marks
the applied rows done; it commits only once the blob writes are durable (SQLite
waits for them just before the commit, PostgreSQL before the transaction opens).
The batch stops early when it has held the write lock for
``[worker] batch_time`` or a listener waits to record a mail, so intake commits
are never starved. Finish: after the commit, each failed mail is quarantined with its error and a
traceback id in its own transaction. A crash before the commit leaves the whole
batch pending, processed again after the restart, exactly once. A temporary
failure (database locked or down, disk full) defers the batch with backoff.
See docs/decisions/0014-worker-batches.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import Connection

from mailgate.clock import Clock
from mailgate.config import WorkerConfig
from mailgate.core.model import Action, SpoolEntry
from mailgate.errors import Busy, MailgateError
from mailgate.ops.metrics import Metrics
from mailgate.runners import batch
from mailgate.runners.batch import Failed, Gathered, batches, due_mails, failure, lanes
from mailgate.runners.loop import Round
from mailgate.runners.parsing import Parsers
from mailgate.store.blobs import BlobStore
from mailgate.store.db import Blocking, is_temporary, storage_errors
from mailgate.store.repos import Tx
from mailgate.store.repos.spool import Finished, SpoolRepo
from mailgate.tickets.arrival import Outcome
from mailgate.tickets.mail import Applier
from mailgate.tickets.prepare import Prepared, Preparer

MICROSECOND = timedelta(microseconds=1)
log = structlog.get_logger("mailgate.runners.worker")
NOTIFYING = (Action.CREATED, Action.APPENDED, Action.BOUNCE, Action.HELD)
FIRST = 8  # mails in a round's first batch when parsing processes gather the next ones
# PostgreSQL: the batches' worth of mail a round claims. One: a worker holds its senders
# for one batch, and the others find theirs meanwhile (with few senders, more would leave
# the others nothing: decision 0027).
CLAIMED_BATCHES = 1

__all__ = ["Outcome", "Processor"]


class Processor:
    """Runs spool items through the ticket application, a batch per transaction; on
    PostgreSQL a batch's independent mails in ``[worker] lanes`` transactions side by side.
    The daemon runs it as the ``worker`` loop (``runners.loop``)."""

    name = "worker"

    def __init__(
        self,
        *,
        blocking: Blocking,
        raw: BlobStore | None,
        attachments: BlobStore | None,
        preparer: Preparer,
        parsers: Parsers,
        applier: Applier,
        worker: WorkerConfig,
        clock: Clock,
        intake_busy: Callable[[], bool],
        on_outbox: Callable[[], None],
        metrics: Metrics,
    ) -> None:
        self.blocking = blocking
        self.raw = raw  # None: raw mails stay in the database
        self.attachments = attachments  # None: attachments go into the database
        self.preparer = preparer
        self.parsers = parsers  # SQLite: a large batch is parsed in processes of their own
        self.applier = applier
        self.worker = worker
        self.clock = clock
        self.intake_busy = intake_busy
        self.on_outbox = on_outbox
        self.metrics = metrics
        self._working = False  # in a round that found mail due
        # SQLite has one writer at a time: lanes would only queue for its lock.
        self.lanes = 1 if blocking.single_writer else worker.lanes
        # Many writers (PostgreSQL): a round's mails are claimed, so that no other worker
        # gathers them for nothing (``SpoolRepo.claim_due``).
        self.claiming = not blocking.single_writer and blocking.sync_engine is not None

    async def process(self, spool_id: int) -> Outcome | None:
        """Process one item; None when it is not pending (done, or another worker has it)."""
        return next(iter(await self.process_batch([spool_id])), None)

    async def run_due(self, limit: int = 256) -> list[Outcome]:
        """Process the items that are due now, up to ``limit``, a batch at a time. The next
        batch is gathered while the one before it is applied: its parsing and its fsyncs
        overlap the other's database work. The mails a batch did not reach (out of lock
        time, or waiting for the caps) lead the next one, gathered already."""
        count = min(self.worker.batch_size * self.lanes, limit)
        if self.claiming:  # held for this round: a batch, the next for other workers
            limit = min(limit, CLAIMED_BATCHES * count)
        now = self.clock.now()
        async with due_mails(self.blocking, now, limit, claiming=self.claiming) as due:
            return await self._run(due, count)

    async def _run(self, due: list[tuple[int, int]], count: int) -> list[Outcome]:
        """Gather and apply ``due`` (id, size) in batches of ``count``."""
        outcomes: list[Outcome] = []
        chunks = batches(due, count, first=FIRST if self.parsers.wanted(count) else None)
        size = dict(due)
        ahead: asyncio.Task[Gathered] | None = None
        rest: Gathered | None = None  # gathered, not reached by the batch before
        n = 0
        try:
            while n < len(chunks) or rest is not None:
                await self._give_way()
                if rest is not None and (n == len(chunks) or len(rest.ready) * 2 >= count):
                    gathered = rest
                else:
                    current = ahead or asyncio.create_task(self._gather(chunks[n]))
                    ahead = None
                    # The next batch is gathered while this one is applied; in parsing
                    # processes beside this one's gather too (threads share one lock).
                    following = chunks[n + 1] if n + 1 < len(chunks) else []
                    small = bool(following) and sum(size[i] for i in following) <= batch.AHEAD_BYTES
                    if small and self.parsers.wanted(len(following)):
                        ahead = asyncio.create_task(self._gather(following))
                    try:
                        fresh = await current
                    except MailgateError as exc:
                        if not exc.temporary:
                            raise
                        outcomes.extend(await self._defer(chunks[n], exc))
                        break
                    n += 1
                    if small and ahead is None:
                        ahead = asyncio.create_task(self._gather(following))
                    gathered = fresh if rest is None else rest.joined(fresh)
                done, reached = await self._apply_lanes(gathered)
                outcomes.extend(done)
                if any(o.action is Action.DEFERRED for o in done):
                    break  # storage is failing (locked, down, full): the next batch would too
                rest = gathered.without(reached)
        finally:
            if ahead is not None:  # gathered for nothing: its mails stay pending
                ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ahead
        return outcomes

    async def process_batch(self, spool_ids: Sequence[int]) -> list[Outcome]:
        """Gather, apply and finish one batch; the outcomes of the items it reached."""
        try:
            gathered = await self._gather(spool_ids)
        except MailgateError as exc:
            if not exc.temporary:
                raise
            return await self._defer(list(spool_ids), exc)
        outcomes, _ = await self._apply(gathered)
        return outcomes

    async def _gather(self, spool_ids: Sequence[int]) -> Gathered:
        with storage_errors("read spool"):
            loaded = await self.blocking.read(lambda conn: SpoolRepo(conn).load(spool_ids))
        return await self.parsers.gather(loaded, self.preparer, self.raw, self.attachments)

    async def _apply_lanes(self, gathered: Gathered) -> tuple[list[Outcome], set[int]]:
        """Apply a batch, its mails that share nothing (``Prepared.shared``) in separate
        transactions side by side, each on its own connection (PostgreSQL)."""
        parts = lanes(gathered.ready, Prepared.shared, self.lanes)
        if len(parts) <= 1:
            return await self._apply(gathered)
        done = await asyncio.gather(
            *(
                self._apply(replace(gathered, ready=part, failed=[] if n else gathered.failed), n)
                for n, part in enumerate(parts)
            )
        )
        return [o for outcomes, _ in done for o in outcomes], {i for _, ids in done for i in ids}

    async def _apply(self, gathered: Gathered, lane: int = 0) -> tuple[list[Outcome], set[int]]:
        """Apply a batch in one transaction and finish it: the outcomes, and the spool ids
        the batch reached (applied, failed, or passed over because another worker has them);
        the others wait for the next batch."""
        applied: list[tuple[Prepared, Outcome | None, BaseException | None, float]] = []
        if gathered.ready:
            try:
                with storage_errors("process mails"):
                    if not self.blocking.single_writer:
                        # Many writers (PostgreSQL): open the transaction (its row locks)
                        # once the files are durable; SQLite's waits just before commit.
                        await gathered.written()
                    applied = await self.blocking.write(
                        lambda conn: self._apply_all(conn, gathered), writer=f"lane-{lane}"
                    )
            except MailgateError as exc:
                if not exc.temporary:
                    raise
                ids = [p.entry.id for p in gathered.ready]
                return await self._defer(ids, exc), set(ids)
        outcomes = []
        for item, outcome, error, seconds in applied:
            seconds += gathered.seconds[item.entry.id]
            if error is not None:
                gathered.failed.append(failure(item.entry, error))
            elif outcome is not None:
                self._routed(item, outcome, seconds)
                outcomes.append(outcome)
        for failed in gathered.failed:
            outcomes.append(await self._fail(failed))
        if any(o.action in NOTIFYING for o in outcomes):
            self.on_outbox()
        return outcomes, {item.entry.id for item, *_ in applied}

    # --- apply (one transaction, on the database's own thread) ---------------------------

    def _apply_all(
        self, conn: Connection, gathered: Gathered
    ) -> list[tuple[Prepared, Outcome | None, BaseException | None, float]]:
        """Claim the batch, apply each mail in its savepoint, mark the applied ones done:
        all in the caller's transaction, committed together."""
        tx = Tx.on(conn)
        deadline = time.monotonic() + self.worker.batch_time
        claimed = tx.spool.claim([item.entry.id for item in gathered.ready])
        applied: list[tuple[Prepared, Outcome | None, BaseException | None, float]] = []
        done: list[Finished] = []
        last = datetime.min.replace(tzinfo=UTC)
        for item in gathered.ready:
            if item.entry.id not in claimed:  # done meanwhile, or another worker holds it
                applied.append((item, None, None, 0.0))
                continue
            if applied and (time.monotonic() > deadline or self.blocking.urgent_waiting()):
                # Held the lock long enough, or a listener waits to record a mail (its client
                # waits for the 250): commit what is done; the rest waits for the next batch.
                break
            started = time.perf_counter()
            # Each mail's own moment, strictly after the one before: its events and
            # notifications carry it, and ``mailgate trace`` finds them by it.
            now = last = max(self.clock.now(), last + MICROSECOND)
            # The batch's first mail holds nothing yet: it may wait for a ticket another batch
            # holds; a later one never waits while holding its predecessors' (``Busy``).
            tx.tickets.wait_for_rows = not done
            with structlog.contextvars.bound_contextvars(spool_id=item.entry.id):
                try:
                    with tx.savepoint():
                        tx.put_blobs(gathered.blobs.get(item.entry.id, {}))
                        outcome = self.applier.apply(tx, item, now)
                except Busy as exc:
                    # Another batch holds the same caps or ticket (PostgreSQL): rolled back;
                    # commit what is done, which ends our hold; this mail leads the next batch.
                    log.debug("mail.waits_for_next_batch", reason=str(exc))
                    break
                except Exception as exc:
                    if is_temporary(exc):
                        raise  # the database is failing: the whole batch waits
                    applied.append((item, None, exc, time.perf_counter() - started))
                    continue
            applied.append((item, outcome, None, time.perf_counter() - started))
            done.append(
                Finished(
                    item.entry.id,
                    outcome.action.value,
                    outcome.ticket,
                    outcome.reason,
                    now,
                    drop_raw=item.drop_raw,
                )
            )
        gathered.durable()  # the raw mails and attachments it names, before the commit
        tx.spool.finish(done)
        return applied

    # --- finish --------------------------------------------------------------------------

    def _routed(self, item: Prepared, outcome: Outcome, seconds: float) -> None:
        mail = item.mail
        for token in item.evidence.rejected_tokens:
            log.warning("token.rejected", token=token, spool_id=item.entry.id)
        log.info(
            "mail.routed",
            spool_id=item.entry.id,
            action=outcome.action.value,
            category=item.classified.category.value,
            ticket=f"#{outcome.ticket}" if outcome.ticket else None,
            reason=outcome.reason,
            message_id=mail.message_id,
            queue=item.evidence.queue,
            ms=round(seconds * 1000, 1),
        )
        self.metrics.mail(item.entry.source, outcome.action.value, seconds)

    async def _fail(self, failed: Failed) -> Outcome:
        exc = failed.error
        if isinstance(exc, MailgateError) and exc.temporary:
            (outcome,) = await self._defer([failed.entry.id], exc)
            return outcome
        return await self._quarantine(failed.entry, exc, failed.trace)

    async def _defer(self, spool_ids: list[int], exc: BaseException) -> list[Outcome]:
        """Count a failed attempt on each item and set its next one, with backoff."""
        error = f"{type(exc).__name__}: {exc}"[:1000]
        worker = self.worker
        now = self.clock.now()

        def defer(conn: Connection) -> None:
            spool = SpoolRepo(conn)
            for spool_id in spool_ids:
                entry = spool.get(spool_id)
                attempts = entry.attempts if entry else 0
                delay = min(worker.retry_delay * (2**attempts), worker.max_retry_delay)
                spool.defer(spool_id, error=error, retry_at=now + timedelta(seconds=delay))
                if entry is not None:
                    self.metrics.mail(entry.source, Action.DEFERRED.value)

        try:
            with storage_errors("defer"):
                await self.blocking.write(defer)
        except MailgateError:
            pass  # still pending and due: the next round tries again
        log.warning("mail.deferred", error=error, spool_ids=spool_ids)
        return [Outcome(i, Action.DEFERRED, None, error) for i in spool_ids]

    async def _quarantine(self, entry: SpoolEntry, exc: BaseException, text: str) -> Outcome:
        traceback_id = uuid.uuid4().hex[:12]
        error = f"{type(exc).__name__}: {exc}"[:1000]
        log.error(
            "mail.quarantined",
            spool_id=entry.id,
            error=error,
            traceback_id=traceback_id,
            exc_info=exc,
        )
        raw_file = self.raw.path(entry.raw_sha256) if self.raw is not None else None
        moved = raw_file is not None and raw_file.exists()
        now = self.clock.now()

        def quarantine(conn: Connection) -> None:
            spool = SpoolRepo(conn)
            if moved:
                spool.drop_raw(entry.id)
            spool.quarantine(
                entry.id, error=error, traceback_id=traceback_id, traceback=text, now=now
            )

        try:
            with storage_errors("quarantine"):
                await self.blocking.write(quarantine)
        except MailgateError as second:
            (outcome,) = await self._defer([entry.id], second)
            return outcome
        self.metrics.mail(entry.source, Action.QUARANTINED.value)
        return Outcome(entry.id, Action.QUARANTINED, None, f"{error} (traceback {traceback_id})")

    # --- the loop ------------------------------------------------------------------------

    async def _give_way(self, longest: float = 0.5) -> None:
        """While mail is being received, wait (at most ``longest``) so that 250s come first:
        a client waits for each, a stored mail can wait. The cap keeps a backlog moving."""
        waited = 0.0
        while waited < longest and self.intake_busy():
            await asyncio.sleep(0.01)
            waited += 0.01

    def busy(self) -> bool:
        """Whether the worker is working through mail that was due (the sender gives way)."""
        return self._working

    async def close(self) -> None:
        """Its parsing processes stop; its connections are the app's."""
        await self.parsers.close()

    async def round(self, *, failing: bool, stop: asyncio.Event) -> Round:
        done, self._working = await worker_round(self.run_due, failing=failing)
        return done


async def worker_round(
    run_due: Callable[[int], Awaitable[list[Outcome]]], *, failing: bool
) -> tuple[Round, bool]:
    """A worker's round (in this process or its own): what is due; while storage fails, one
    mail a round finds out whether it is back. The round, and whether the worker is busy."""
    outcomes = await run_due(1 if failing else 256)
    done = Round(
        more=bool(outcomes),
        failing=bool(outcomes) and outcomes[-1].action is Action.DEFERRED,
    )
    return done, bool(outcomes) and not failing
