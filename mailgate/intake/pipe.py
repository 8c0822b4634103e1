"""The MTA pipe's intake: one mail stored in the spool with only the database at hand.

``mailgate ingest`` (``cli.pipe``) runs once per mail; this stores it as the listeners
do, through ``Spool.store``, with an engine of one connection made for the purpose, and
says, for a mail stored before, how far it got.
"""

from __future__ import annotations

from mailgate.clock import SystemClock
from mailgate.config import Config
from mailgate.core.model import Stored
from mailgate.intake.spool import Received, Spool
from mailgate.store.db import create_engine, create_sqlite_sync_engine, session, storage_errors
from mailgate.store.repos.spool import SpoolRepo
from mailgate.store.schema import prepare_schema


async def store(config: Config, received: Received) -> tuple[Stored, str | None, int | None]:
    """Store ``received`` in the spool of ``config``'s database; with, for a mail stored
    before, the state of that spool item and its ticket."""
    db = config.database
    engine = create_engine(db.url, busy_timeout=db.busy_timeout, pool_size=1, max_overflow=0)
    spool = Spool(
        engine,
        SystemClock(),
        sync_engine=create_sqlite_sync_engine(engine, db.busy_timeout),
        busy_timeout=db.busy_timeout,
    )
    try:
        await prepare_schema(engine)
        stored = await spool.store(received)
        if not stored.duplicate:
            return stored, None, None
        with storage_errors("read spool"):
            async with session(engine) as s:
                entry = await s.run_sync(lambda c: SpoolRepo(c.connection()).get(stored.spool_id))
        return stored, entry.state if entry else None, entry.ticket if entry else None
    finally:
        await spool.close()
        await engine.dispose()
