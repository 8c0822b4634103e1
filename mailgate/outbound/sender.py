"""The sender: deliver due outbox mails, retrying what may pass and burying what cannot.

A mail is marked ``sending`` (committed) before the SMTP transaction and
``sent`` (committed) after the relay's 250. When the database will not take
"sent" (locked, full), the delivery is remembered in memory and recorded on a
later round; the mail is never sent again meanwhile. The maildir transport
names each file after its outbox row and Message-ID, so even after a crash in
that window the second try finds the file and writes nothing. Only a crash of
the process between the relay's 250 and the commit can send a mail twice
through a relay: it stays ``sending`` and is tried again once its claim is older
than ``[outbound] claim_timeout``; SMTP offers no way to close that window. 4xx replies and
connection errors retry with exponential backoff and jitter; a 5xx, or
``max_attempts`` tries, make the mail dead, recorded on the ticket's events.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from mailgate.clock import Clock
from mailgate.config import OutboundConfig
from mailgate.core.model import OutboxItem
from mailgate.errors import DeliveryDeferred, DeliveryFailed, MailgateError, StorageUnavailable
from mailgate.metrics import Metrics
from mailgate.outbound.transport import Transport
from mailgate.store.db import session, storage_errors
from mailgate.store.repos import OUTBOX_DEAD, OUTBOX_PENDING, OUTBOX_SENT, Repo, Tx
from mailgate.store.repos.tickets import Event
from mailgate.tasks import wait_for_work

log = structlog.get_logger("mailgate.outbox")
RECORD_TRIES = 3  # marking a delivered mail sent, before it waits for the next round


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
    """Delivers the outbox through one transport."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        transport: Transport,
        config: OutboundConfig,
        clock: Clock,
        metrics: Metrics | None = None,
    ) -> None:
        self.engine = engine
        self.transport = transport
        self.config = config
        self.clock = clock
        self.stale_claim = timedelta(seconds=config.claim_timeout)
        self.metrics = metrics
        # Delivered mails whose "sent" the database has not recorded yet: outbox id -> receipt.
        self.unrecorded: dict[int, str] = {}
        self.trimmed_at: datetime | None = None

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.deliveries.labels(result=result).inc()

    def _backoff(self, attempts: int) -> timedelta:
        base = min(
            self.config.retry_delay * (2 ** max(attempts - 1, 0)), self.config.max_retry_delay
        )
        return timedelta(seconds=base * random.uniform(0.8, 1.2))  # jitter, not cryptography

    async def deliver(self, outbox_id: int) -> Delivery | None:
        """One attempt for one mail; None when it is not due (sent, dead, or taken)."""
        if outbox_id in self.unrecorded:  # delivered already: record it, never send it again
            await self._record_pending()
            return Delivery(outbox_id, OUTBOX_SENT, self.unrecorded.get(outbox_id, "recorded"))
        now = self.clock.now()
        with storage_errors("outbox claim"):
            async with session(self.engine, write=True) as s:
                claimed = await Repo(s).outbox_claim(outbox_id, now, now - self.stale_claim)
        if claimed is None:
            return None
        item, raw = claimed
        bound = log.bind(
            outbox_id=outbox_id, kind=item.kind, ticket=f"#{item.ticket}" if item.ticket else None
        )
        try:
            receipt = await self.transport.send(
                item.envelope_from, item.recipients, raw, key=delivery_key(item)
            )
        except DeliveryFailed as exc:
            return await self._bury(item.id, item.ticket, f"refused: {exc}", bound)
        except DeliveryDeferred as exc:
            if item.attempts >= self.config.max_attempts:
                return await self._bury(
                    item.id, item.ticket, f"gave up after {item.attempts} tries: {exc}", bound
                )
            retry_at = self.clock.now() + self._backoff(item.attempts)
            with storage_errors("outbox defer"):
                async with session(self.engine, write=True) as s:
                    await Repo(s).outbox_finish(
                        item.id,
                        state=OUTBOX_PENDING,
                        now=now,
                        error=str(exc)[:1000],
                        retry_at=retry_at,
                    )
            bound.warning(
                "outbox.deferred",
                error=str(exc),
                attempts=item.attempts,
                retry_at=retry_at.isoformat(),
            )
            self._count("retried")
            return Delivery(item.id, OUTBOX_PENDING, str(exc))
        # Delivered: from here on the mail must never go out again, even when the database
        # will not take the news right now.
        self.unrecorded[item.id] = receipt
        await self._record_sent(item.id)
        bound.info("outbox.sent", receipt=receipt[:200], recipients=len(item.recipients))
        self._count("sent")
        return Delivery(item.id, OUTBOX_SENT, receipt)

    async def _record_sent(self, outbox_id: int) -> bool:
        """Mark a delivered mail sent, trying a few times; while the database refuses, the
        mail stays in ``unrecorded`` and is marked (never sent) on a later round."""
        for attempt in range(RECORD_TRIES):
            try:
                with storage_errors("outbox sent"):
                    async with session(self.engine, write=True) as s:
                        await Repo(s).outbox_finish(
                            outbox_id, state=OUTBOX_SENT, now=self.clock.now()
                        )
            except MailgateError as exc:
                log.warning("outbox.unrecorded", outbox_id=outbox_id, error=str(exc))
                await asyncio.sleep(0.2 * 2**attempt)
                continue
            self.unrecorded.pop(outbox_id, None)
            return True
        return False

    async def _record_pending(self) -> None:
        """Record the deliveries the database refused to take before; raise while it still
        refuses, so that nothing new is sent meanwhile."""
        for outbox_id in list(self.unrecorded):
            if not await self._record_sent(outbox_id):
                raise StorageUnavailable(f"outbox {outbox_id} delivered but not yet recorded")

    async def _bury(
        self,
        outbox_id: int,
        ticket: int | None,
        reason: str,
        bound: structlog.typing.FilteringBoundLogger,
    ) -> Delivery:
        now = self.clock.now()
        with storage_errors("outbox dead"):
            async with session(self.engine, write=True) as s:
                repo = Repo(s)
                await repo.outbox_finish(outbox_id, state=OUTBOX_DEAD, now=now, error=reason[:1000])
                if ticket is not None:
                    detail = f"outbox {outbox_id}: {reason}"[:2000]
                    await repo.event_add(
                        Event(ticket, "delivery_failed", "mailgate", now, detail=detail)
                    )
        bound.error("outbox.dead", reason=reason)
        self._count("dead")
        return Delivery(outbox_id, OUTBOX_DEAD, reason)

    async def run_due(self, limit: int = 50) -> list[Delivery]:
        await self._record_pending()
        now = self.clock.now()
        with storage_errors("outbox due"):
            async with session(self.engine) as s:
                due = await Repo(s).outbox_due(now, now - self.stale_claim, limit)
        results = []
        for outbox_id in due:
            if self.unrecorded:  # the database is refusing writes: send nothing more for now
                break
            result = await self.deliver(outbox_id)
            if result is not None:
                results.append(result)
        return results

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
            async with session(self.engine, write=True) as s:
                trimmed, removed = await s.run_sync(
                    lambda sync: Tx.on(sync.connection()).outbox.trim(
                        sent_before=sent_before, counted_before=now - timedelta(days=1)
                    )
                )
        if trimmed or removed:
            log.info("outbox.trimmed", mails=trimmed, cap_records=removed)
        return trimmed, removed

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """Deliver until ``stop``: what is due, then wait for a wake-up or the poll interval."""
        while not stop.is_set():
            wake.clear()
            try:
                await self.trim()
                results = await self.run_due()
            except MailgateError as exc:
                log.warning("outbox.storage_unavailable", error=str(exc))
                results = []
            if any(r.state == OUTBOX_SENT for r in results):
                continue
            await wait_for_work(stop, wake, self.config.poll_interval)
