"""Remove what the desk no longer needs: raw mails and attachments of long-archived tickets.

GDPR/AVG asks a desk to keep personal data no longer than needed. ``purge``
finds the tickets archived before a cut-off and removes their raw mails (the
spool's bytes and files) and attachment bytes, unless another ticket that is
kept still shares the same content. The tickets, their messages' text, their
events and the spool rows (the dedupe keys) stay; each purged ticket gets a
``purged`` event. A dry run counts what would go and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from mailgate.clock import Clock
from mailgate.core.workflow import Group
from mailgate.runners.loop import Round
from mailgate.store.blobs import BlobStore
from mailgate.store.db import session, storage_errors
from mailgate.store.repos.purge import PurgeRepo

if TYPE_CHECKING:
    from mailgate.app import App

log = structlog.get_logger("mailgate.runners.retention")


@dataclass(frozen=True, slots=True)
class PurgePlan:
    tickets: tuple[int, ...]
    raw: tuple[str, ...]  # SHA-256 of raw mails no kept mail shares
    attachments: tuple[str, ...]  # SHA-256 of attachment bytes no kept ticket shares
    spool_ids: tuple[int, ...]
    bytes: int


class Purger:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        raw: BlobStore | None,
        attachments: BlobStore | None,
        archived_states: tuple[str, ...],
    ) -> None:
        self.engine = engine
        self.raw = raw
        self.attachments = attachments
        self.archived_states = archived_states

    async def plan(self, cutoff: datetime) -> PurgePlan:
        """What a purge of tickets archived before ``cutoff`` would remove."""
        with storage_errors("purge plan"):
            async with session(self.engine) as s:
                repo = PurgeRepo(s)
                tickets = await repo.tickets_archived_before(self.archived_states, cutoff)
                spool, raw = await repo.raw_of_tickets(tickets)
                attachments = await repo.attachments_only_of(tickets)
                size = await repo.blob_sizes(raw, attachments)
        return PurgePlan(tuple(tickets), tuple(raw), tuple(attachments), tuple(spool), size)

    async def apply(
        self, plan: PurgePlan, now: datetime, on_removed: Callable[[int], None] | None = None
    ) -> None:
        """Remove what ``plan`` names: rows first (one transaction), then the files, in
        slices (``on_removed`` hears how many after each)."""
        with storage_errors("purge"):
            async with session(self.engine, write=True) as s:
                await PurgeRepo(s).purge(plan.tickets, plan.spool_ids, plan.attachments, now)
            if self.engine.dialect.name == "sqlite":
                # The write-ahead log still holds the pages as they were before: copied back
                # into the database (its deleted bytes overwritten) and emptied.
                async with self.engine.connect() as conn:
                    await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        for store, shas in ((self.raw, plan.raw), (self.attachments, plan.attachments)):
            for start in range(0, len(shas), 100):
                part = shas[start : start + 100]
                if store is not None:
                    await asyncio.to_thread(_remove, [store.path(sha) for sha in part])
                if on_removed is not None:
                    on_removed(len(part))
        log.info(
            "retention.purged",
            tickets=len(plan.tickets),
            raw=len(plan.raw),
            attachments=len(plan.attachments),
            bytes=plan.bytes,
        )


def _remove(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def parse_age(text: str) -> int | None:
    """Days in "365d", "52w", "2y" (a year is 365 days); None when unreadable."""
    value = text.strip().lower()
    units = {"d": 1, "w": 7, "y": 365}
    if len(value) < 2 or value[-1] not in units or not value[:-1].isdigit():
        return None
    return int(value[:-1]) * units[value[-1]]


def purger_for(app: App) -> Purger:
    """The purger of this installation's stores (the worker's) and workflow."""
    states = app.config.workflow.states
    return Purger(
        engine=app.engine,
        raw=app.processor.raw,
        attachments=app.processor.attachments,
        archived_states=tuple(s.name for s in states if s.group is Group.ARCHIVED),
    )


DAILY = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Retention:
    """The ``retention`` loop: once a day, purge what is ``days`` past archiving."""

    purger: Purger
    days: float
    clock: Clock
    name: str = "retention"

    async def round(self, *, failing: bool, stop: asyncio.Event) -> Round:
        plan = await self.purger.plan(self.clock.now() - timedelta(days=self.days))
        if plan.tickets:
            await self.purger.apply(plan, self.clock.now())
        return Round()
