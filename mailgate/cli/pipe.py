"""``mailgate ingest``, the MTA pipe: one mail stored durably in the spool, then exit.

An MTA runs it once per mail, so it imports and does only what the acknowledgment needs:
the configuration, the database and the spool; no parser, templates, calendar, web or
IMAP code. Exit 0 means the mail is committed; the daemon's worker applies it within
``[worker] poll_interval``. ``--now`` applies it in this process as well and sends what
it caused (what a script or a first try wants to see), at the cost of loading
everything. See docs/decisions/0015-the-pipe-stores.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TextIO

from mailgate.cli.output import (
    EX_DATAERR,
    EX_FAILED,
    EX_OK,
    EX_TEMPFAIL,
    print_json,
    read_file,
    ref,
)
from mailgate.clock import SystemClock
from mailgate.config import Config
from mailgate.errors import BadMail, ConfigError, MailgateError, SchemaMismatch
from mailgate.intake.spool import Received, Spool, Stored
from mailgate.store.db import create_engine, create_sqlite_sync_engine, session, storage_errors
from mailgate.store.repos.spool import PENDING, SpoolRepo
from mailgate.store.schema import prepare_schema


async def ingest(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    """MTA pipe mode: exit 0 once the mail is durably stored, 75 when it could not be."""
    try:
        raw = sys.stdin.buffer.read() if args.file == "-" else read_file(args.file)
        received = Received(
            raw, "pipe", envelope_from=args.sender, envelope_to=tuple(args.recipient)
        )
        if args.now:
            from mailgate.cli.mail import ingest_now

            return await ingest_now(config, received, out)
        stored, state, ticket = await store(config, received)
    except (ConfigError, SchemaMismatch):
        raise  # the configuration is wrong: exit 78, as for every command
    except BadMail as exc:
        print_json(out, {"action": "rejected", "ticket": None, "reason": str(exc)})
        return EX_DATAERR
    except MailgateError as exc:
        print_json(out, {"action": "failed", "ticket": None, "reason": str(exc)})
        return EX_TEMPFAIL if exc.temporary else EX_FAILED
    if stored.duplicate and state != PENDING:
        action, reason = "duplicate", f"same mail as spool item {stored.spool_id}"
    else:
        action, reason = "stored", "stored; the daemon's worker applies it"
    result = {"action": action, "ticket": ref(ticket), "reason": reason}
    print_json(out, {**result, "spool_id": stored.spool_id})
    return EX_OK


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
        await asyncio.to_thread(spool.close)
        await engine.dispose()
