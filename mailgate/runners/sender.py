"""The sender: deliver due outbox mails, retrying what may pass and burying what cannot.

A round claims up to 50 due mails at once: marked ``sending`` (committed, one
transaction) before any SMTP transaction, and ``sent`` (committed) after the relay's
250: through a relay each before the next is sent; into the maildir, which writes a mail
at most once, together for the mails delivered in the last quarter second or at the end
of the round. When the database will not take "sent" (locked, full), the deliveries are
remembered in memory and recorded on a later round; they are never sent again meanwhile,
and nothing new is sent until they are recorded. The maildir transport names each file
after its outbox row and Message-ID, so even after a crash in that window the second try
finds the file and writes nothing. Only a crash of the process between the relay's 250
and the commit (one mail) can send a mail twice through a relay: it stays ``sending``
and is tried again once its claim is older than ``[outbound] claim_timeout``; SMTP
offers no way to close that window. 4xx replies and connection errors retry with
exponential backoff and jitter; a 5xx, or ``max_attempts`` tries, make the mail dead,
recorded on the ticket's events. A sender that stops mid-round hands the mails it has
not tried back.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import structlog
from sqlalchemy import Connection

from mailgate.clock import Clock
from mailgate.config import OutboundConfig
from mailgate.core.model import OutboxItem
from mailgate.errors import DeliveryDeferred, DeliveryFailed, MailgateError, StorageUnavailable
from mailgate.ops.metrics import Metrics
from mailgate.outbound.transport import Transport
from mailgate.runners.loop import Round
from mailgate.store.db import Blocking, storage_errors
from mailgate.store.repos import OUTBOX_DEAD, OUTBOX_PENDING, OUTBOX_SENT, Tx
from mailgate.store.repos.history import Event

log = structlog.get_logger("mailgate.outbox")
RECORD_TRIES = 3  # marking delivered mails sent, before they wait for the next round
RECORD_AFTER = 0.25  # seconds: delivered mails are marked sent together at most this late
ROUND = 50  # mails claimed at once
GIVE_WAY = 2.0  # seconds a round waits at most while the worker has a backlog
T = TypeVar("T")


def delivery_key(item: OutboxItem) -> str:
    """A name for one outbox mail, the same on every try: its row, then its Message-ID."""
    digest = hashlib.sha256(item.message_id.encode()).hexdigest()[:20]
    return f"{item.id:012d}.{digest}"


@dataclass(frozen=True, slots=True)
class Delivery:
    outbox_id: int
    state: str
    detail: str


TRIM_EVERY = timedelta(hours=1)


class Sender:
    """Delivers the outbox through one transport; the daemon's ``sender`` loop."""

    name = "sender"

    def __init__(
        self,
        *,
        blocking: Blocking,
        transport: Transport,
        config: OutboundConfig,
        clock: Clock,
        metrics: Metrics,
        worker_busy: Callable[[], bool],
    ) -> None:
        self.blocking = blocking
        self.worker_busy = worker_busy
        self.transport = transport
        self.config = config
        self.clock = clock
        self.stale_claim = timedelta(seconds=config.claim_timeout)
        self.metrics = metrics
        # Delivered mails whose "sent" the database has not recorded yet: outbox id -> receipt.
        self.unrecorded: dict[int, str] = {}
        self.trimmed_at: datetime | None = None

    async def _write(self, work: Callable[[Connection], T]) -> T:
        """``work`` in a writing transaction on the sender's own connection."""
        return await self.blocking.write(work, writer="sender")

    async def _give_way(self, stop: asyncio.Event) -> None:
        """While the worker works through a backlog, wait (at most ``GIVE_WAY``) before a
        round: on one database, every round's commits queue with the worker's, and a
        notice can wait a moment while mail becomes tickets. The cap keeps notices going
        out under sustained load."""
        waited = 0.0
        while waited < GIVE_WAY and self.worker_busy() and not stop.is_set():
            await asyncio.sleep(0.05)
            waited += 0.05

    def _backoff(self, attempts: int) -> timedelta:
        base = min(
            self.config.retry_delay * (2 ** max(attempts - 1, 0)), self.config.max_retry_delay
        )
        return timedelta(seconds=base * random.uniform(0.8, 1.2))  # jitter, not cryptography

    async def run_due(
        self, limit: int = ROUND, stop: asyncio.Event | None = None
    ) -> list[Delivery]:
        """One round: claim what is due (up to ``limit``) and try each once."""
        return await self._round(None, limit, stop)

    async def send_now(self, ids: Sequence[int]) -> list[Delivery]:
        """Try the mails ``ids`` now, those of them that are due (``outbox retry``)."""
        results: list[Delivery] = []
        for start in range(0, len(ids), ROUND):
            chunk = list(ids[start : start + ROUND])
            results += await self._round(chunk, len(chunk), None)
        return results

    async def _round(
        self, only: list[int] | None, limit: int, stop: asyncio.Event | None
    ) -> list[Delivery]:
        await self._record_pending()  # raises while the database still refuses
        now = self.clock.now()
        with storage_errors("outbox claim"):
            claimed = await self._write(
                lambda conn: Tx.on(conn).outbox.claim(
                    now=now, stale_before=now - self.stale_claim, limit=limit, only=only
                )
            )
        results: list[Delivery] = []
        oldest = 0.0  # when the oldest unrecorded delivery of this round was made
        try:
            for n, (item, raw) in enumerate(claimed):
                if stop is not None and stop.is_set():
                    await self._release([i.id for i, _ in claimed[n:]])
                    break
                late = self.unrecorded and (
                    not self.transport.at_most_once or time.monotonic() - oldest >= RECORD_AFTER
                )
                if late and not await self._settle_and_record():
                    break  # the database refuses: send nothing more; the rest goes stale
                delivery = await self._attempt(item, raw, now)
                results.append(delivery)
                if delivery.state == OUTBOX_SENT and len(self.unrecorded) == 1:
                    oldest = time.monotonic()
            if self.unrecorded:
                await self._settle_and_record()
        finally:
            await self.transport.close()
        return results

    async def _settle_and_record(self) -> bool:
        """Make the deliveries so far durable, then record them sent. When they cannot be
        made durable, they are not recorded: still ``sending``, they are tried again
        (and found, if they did arrive) once their claim goes stale."""
        try:
            await self.transport.settle()
        except DeliveryDeferred as exc:
            log.error("outbox.unsettled", outbox_ids=sorted(self.unrecorded), error=str(exc))
            self.unrecorded.clear()
            return False
        return await self._record_sent()

    async def _attempt(self, item: OutboxItem, raw: bytes, now: datetime) -> Delivery:
        bound = log.bind(
            outbox_id=item.id, kind=item.kind, ticket=f"#{item.ticket}" if item.ticket else None
        )
        try:
            receipt = await self.transport.send(
                item.envelope_from,
                item.recipients,
                raw,
                key=delivery_key(item),
                again=item.attempts > 1,  # an earlier try may have delivered it
            )
        except DeliveryFailed as exc:
            return await self._bury(item, f"refused: {exc}", bound)
        except DeliveryDeferred as exc:
            if item.attempts >= self.config.max_attempts:
                return await self._bury(item, f"gave up after {item.attempts} tries: {exc}", bound)
            retry_at = self.clock.now() + self._backoff(item.attempts)
            error = str(exc)[:1000]
            with storage_errors("outbox defer"):
                await self._write(
                    lambda conn: Tx.on(conn).outbox.finish(
                        [item.id], state=OUTBOX_PENDING, now=now, error=error, retry_at=retry_at
                    )
                )
            bound.warning(
                "outbox.deferred",
                error=str(exc),
                attempts=item.attempts,
                retry_at=retry_at.isoformat(),
            )
            self.metrics.deliveries.labels(result="retried").inc()
            return Delivery(item.id, OUTBOX_PENDING, str(exc))
        # Delivered: from here on the mail must never go out again, even when the database
        # will not take the news right now.
        self.unrecorded[item.id] = receipt
        bound.info("outbox.sent", receipt=receipt[:200], recipients=len(item.recipients))
        self.metrics.deliveries.labels(result="sent").inc()
        return Delivery(item.id, OUTBOX_SENT, receipt)

    async def _record_sent(self) -> bool:
        """Mark the delivered mails sent, in one transaction, trying a few times; while the
        database refuses, they stay in ``unrecorded`` and are marked (never sent) later."""
        ids = list(self.unrecorded)

        def write(conn: Connection) -> None:
            Tx.on(conn).outbox.finish(ids, state=OUTBOX_SENT, now=self.clock.now())

        for attempt in range(RECORD_TRIES):
            try:
                with storage_errors("outbox sent"):
                    await self._write(write)
            except MailgateError as exc:
                log.warning("outbox.unrecorded", outbox_ids=ids, error=str(exc))
                await asyncio.sleep(0.2 * 2**attempt)
                continue
            for outbox_id in ids:
                self.unrecorded.pop(outbox_id, None)
            return True
        return False

    async def _record_pending(self) -> None:
        """Record the deliveries the database refused to take before; raise while it still
        refuses, so that nothing new is sent meanwhile."""
        if self.unrecorded and not await self._record_sent():
            raise StorageUnavailable(
                f"outbox {sorted(self.unrecorded)} delivered but not yet recorded"
            )

    async def _release(self, ids: list[int]) -> None:
        with storage_errors("outbox release"):
            await self._write(lambda conn: Tx.on(conn).outbox.release(ids))

    async def _bury(
        self, item: OutboxItem, reason: str, bound: structlog.typing.FilteringBoundLogger
    ) -> Delivery:
        now = self.clock.now()

        def write(conn: Connection) -> None:
            tx = Tx.on(conn)
            tx.outbox.finish([item.id], state=OUTBOX_DEAD, now=now, error=reason[:1000])
            if item.ticket is not None:
                detail = f"outbox {item.id}: {reason}"[:2000]
                tx.history.add_events(
                    [Event(item.ticket, "delivery_failed", "mailgate", now, detail=detail)]
                )

        with storage_errors("outbox dead"):
            await self._write(write)
        bound.error("outbox.dead", reason=reason)
        self.metrics.deliveries.labels(result="dead").inc()
        return Delivery(item.id, OUTBOX_DEAD, reason)

    async def trim(self) -> tuple[int, int]:
        """Keep the outbox bounded: drop the bytes of mails sent ``keep_sent_days`` ago and
        the cap records no cap looks at any more (older than a day). At most hourly."""
        now = self.clock.now()
        if self.trimmed_at is not None and now - self.trimmed_at < TRIM_EVERY:
            return 0, 0
        self.trimmed_at = now
        days = self.config.keep_sent_days
        sent_before = now - timedelta(days=days) if days > 0 else now - timedelta(days=36500)
        with storage_errors("trim outbox"):
            trimmed, removed = await self._write(
                lambda conn: Tx.on(conn).outbox.trim(
                    sent_before=sent_before, counted_before=now - timedelta(days=1)
                )
            )
        if trimmed or removed:
            log.info("outbox.trimmed", mails=trimmed, cap_records=removed)
        return trimmed, removed

    async def round(self, *, failing: bool, stop: asyncio.Event) -> Round:
        """Trim (hourly), then deliver what is due; more at once while mails went out."""
        await self._give_way(stop)
        await self.trim()
        results = await self.run_due(stop=stop)
        return Round(more=any(r.state == OUTBOX_SENT for r in results))
