"""The one door every mail comes in through: store the raw bytes durably, then record them.

``Spool.store`` returns only after the raw mail is on disk (fsync'd) and its row
is committed; only then may a listener answer 250, the IMAP poller move the
mail, or the pipe exit 0. Any failure raises ``StorageUnavailable`` and leaves
nothing half-done: a file this call created is removed again.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from mailgate.blobs import BlobStore
from mailgate.clock import Clock
from mailgate.core.identity import identify
from mailgate.errors import BadMail
from mailgate.store.db import session, storage_errors
from mailgate.store.repos import Repo

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
    """Durable intake shared by every listener, poller and the pipe."""

    def __init__(
        self,
        engine: AsyncEngine,
        raw: BlobStore,
        clock: Clock,
        on_stored: Callable[[int], None] | None = None,
    ) -> None:
        self.engine = engine
        self.raw = raw
        self.clock = clock
        self.on_stored = on_stored

    async def store(self, received: Received) -> Stored:
        """Store ``received`` durably; a second delivery of the same mail is a duplicate."""
        if not received.raw.strip():
            raise BadMail("empty message")
        ident = identify(received.raw)
        bound = log.bind(message_id=ident.message_id, source=received.source)
        with storage_errors("spool lookup"):
            async with session(self.engine) as s:
                existing = await Repo(s).spool_by_key(ident.dedupe_key)
        if existing is not None:
            bound.info("mail.duplicate", spool_id=existing.id)
            return Stored(existing.id, True, ident.message_id)
        data = received.stored_bytes
        raw_sha256 = hashlib.sha256(data).hexdigest() if received.trace else ident.raw_sha256
        _, created = await asyncio.to_thread(self.raw.put, data, raw_sha256)
        try:
            spool_id = await self._record(received, ident.dedupe_key, raw_sha256, ident.message_id)
        except IntegrityError:
            # Another delivery of the same mail won the race.
            return await self._duplicate(ident.dedupe_key, raw_sha256, created, ident.message_id)
        except BaseException:
            if created:
                self.raw.discard(raw_sha256)
            raise
        bound.info("mail.stored", spool_id=spool_id, size=len(data))
        if self.on_stored is not None:
            self.on_stored(spool_id)
        return Stored(spool_id, False, ident.message_id)

    async def _record(
        self, received: Received, key: str, raw_sha256: str, message_id: str | None
    ) -> int:
        with storage_errors("spool insert"):
            async with session(self.engine, write=True) as s:
                return await Repo(s).spool_add(
                    dedupe_key=key,
                    raw_sha256=raw_sha256,
                    size=len(received.stored_bytes),
                    message_id=message_id,
                    source=received.source,
                    envelope_from=received.envelope_from,
                    envelope_to=_clean(received.envelope_to),
                    now=self.clock.now(),
                )

    async def _duplicate(
        self, key: str, raw_sha256: str, created: bool, message_id: str | None
    ) -> Stored:
        with storage_errors("spool lookup"):
            async with session(self.engine) as s:
                repo = Repo(s)
                existing = await repo.spool_by_key(key)
                referenced = await repo.raw_referenced(raw_sha256)
        if created and not referenced:
            self.raw.discard(raw_sha256)
        assert existing is not None
        log.info("mail.duplicate", spool_id=existing.id, message_id=message_id)
        return Stored(existing.id, True, message_id)


def _clean(addresses: Sequence[str]) -> list[str]:
    return [a.strip().strip("<>") for a in addresses if a.strip().strip("<>")]
