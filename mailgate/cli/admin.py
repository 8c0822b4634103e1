"""Commands a sysadmin runs: ``migrate``, ``init``, ``run``, ``purge``, ``quarantine``,
``outbox``."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from typing import TextIO

from sqlalchemy.ext.asyncio import AsyncEngine

from mailgate.app import App
from mailgate.cli.output import EX_FAILED, EX_OK, EX_USAGE, at, print_json, ref
from mailgate.cli.progress import Steps
from mailgate.config import Config
from mailgate.daemon import run_daemon
from mailgate.runners.retention import parse_age, purger_for
from mailgate.store.db import create_engine, session, storage_errors
from mailgate.store.repos import Repo
from mailgate.store.schema import migrate as upgrade
from mailgate.store.schema import pending, upgrade_sql


async def migrate(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    """Upgrade the schema (or print the SQL that would upgrade it from where it is)."""
    engine = create_engine(config.database.url, busy_timeout=config.database.busy_timeout)
    try:
        if args.sql:
            since = args.since or await _revision(engine)
            sql = upgrade_sql(config.database.url, None if since == "base" else since)
            print(sql, file=out)
            return EX_OK
        current = await _revision(engine)
        todo = pending(current) if current else []
        with Steps("migrating", len(todo)) as steps:
            before, after = await upgrade(engine, on_step=lambda _rev: steps.advance())
    finally:
        await engine.dispose()
    if before == after:
        print(f"schema already at {after}", file=out)
    else:
        print(f"schema upgraded from {before or 'nothing'} to {after}", file=out)
    return EX_OK


async def _revision(engine: AsyncEngine) -> str | None:
    """The schema revision the database is at; None when it has none."""
    # alembic imports mako and pygments' lexers: a third of a second that ``run`` and
    # the other commands of this module need not pay
    from alembic.runtime.migration import MigrationContext

    with storage_errors("read schema revision"):
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda c: MigrationContext.configure(c).get_current_revision()
            )


async def init(app: App, args: argparse.Namespace, out: TextIO) -> int:
    print(f"data directory: {app.config.general.data_dir}", file=out)
    print("database schema: ready", file=out)
    if args.adopt_secret:
        print("token secret: adopted (tokens in mails sent before no longer match)", file=out)
    print(f"ticket tag example: {app.codec.subject_tag(1)}", file=out)
    return EX_OK


async def run(app: App, args: argparse.Namespace, out: TextIO) -> int:
    await run_daemon(app)
    return EX_OK


async def purge(app: App, args: argparse.Namespace, out: TextIO) -> int:
    """Count (or with --apply remove) raw mails and attachments of long-archived tickets."""
    days = parse_age(args.archived_older_than)
    if days is None:
        print("mailgate: --archived-older-than takes 365d, 52w or 2y", file=sys.stderr)
        return EX_USAGE
    purger = purger_for(app)
    plan = await purger.plan(app.clock.now() - timedelta(days=days))
    if args.apply:
        with Steps("removing", len(plan.raw) + len(plan.attachments)) as steps:
            await purger.apply(plan, app.clock.now(), on_removed=steps.advance)
    summary = {
        "applied": bool(args.apply),
        "tickets": len(plan.tickets),
        "raw_mails": len(plan.raw),
        "attachments": len(plan.attachments),
        "bytes": plan.bytes,
    }
    if args.json:
        print_json(out, summary)
    else:
        verb = "removed" if args.apply else "would remove (dry run; --apply to remove)"
        print(
            f"{verb}: {len(plan.raw)} raw mail(s) and {len(plan.attachments)} attachment(s), "
            f"{plan.bytes:,} bytes, of {len(plan.tickets)} ticket(s) archived over {days} days ago",
            file=out,
        )
    return EX_OK


async def quarantine(app: App, args: argparse.Namespace, out: TextIO) -> int:
    if args.quarantine_command == "retry":
        with storage_errors("requeue"):
            async with session(app.engine, write=True) as s:
                ids = await Repo(s).requeue(None if args.all else [args.id], app.clock.now())
        if not ids and not args.all:
            print(f"mailgate: no quarantined mail {args.id}", file=sys.stderr)
            return EX_FAILED
        results = []
        with Steps("retrying quarantined mail", len(ids)) as steps:
            for spool_id in ids:
                results.append(await app.processor.process(spool_id))
                steps.advance()
        for outcome in results:
            if outcome is not None:
                print_json(
                    out,
                    {
                        "spool_id": outcome.spool_id,
                        "action": outcome.action.value,
                        "ticket": ref(outcome.ticket),
                        "reason": outcome.reason,
                    },
                )
        return EX_OK
    with storage_errors("list quarantine"):
        async with session(app.engine) as s:
            entries = await Repo(s).quarantined()
    if args.json:
        print_json(
            out,
            [
                {
                    "id": e.id,
                    "received_at": e.received_at,
                    "source": e.source,
                    "message_id": e.message_id,
                    "size": e.size,
                    "attempts": e.attempts,
                    "error": e.error,
                    "traceback_id": e.traceback_id,
                }
                for e in entries
            ],
        )
        return EX_OK
    if not entries:
        print("no mail in quarantine", file=out)
    for e in entries:
        print(
            f"{e.id:<6} {at(app.desk.calendar.zone, e.received_at)} {e.source:<10} {e.error} "
            f"(traceback {e.traceback_id})",
            file=out,
        )
    return EX_OK


async def outbox(app: App, args: argparse.Namespace, out: TextIO) -> int:
    if args.outbox_command == "retry":
        with storage_errors("outbox retry"):
            async with session(app.engine, write=True) as s:
                ids = await Repo(s).outbox_retry(None if args.dead else [args.id], app.clock.now())
        if not ids and not args.dead:
            print(f"mailgate: no dead outbox mail {args.id}", file=sys.stderr)
            return EX_FAILED
        for delivery in await app.sender.send_now(ids):
            print_json(
                out, {"id": delivery.outbox_id, "state": delivery.state, "detail": delivery.detail}
            )
        return EX_OK
    with storage_errors("outbox list"):
        async with session(app.engine) as s:
            items = await Repo(s).outbox_list(args.state)
    if args.json:
        print_json(
            out,
            [
                {
                    "id": i.id,
                    "ticket": ref(i.ticket),
                    "kind": i.kind,
                    "to": list(i.recipients),
                    "envelope_from": i.envelope_from,
                    "message_id": i.message_id,
                    "state": i.state,
                    "attempts": i.attempts,
                    "last_error": i.last_error,
                    "created_at": i.created_at,
                    "sent_at": i.sent_at,
                }
                for i in items
            ],
        )
        return EX_OK
    if not items:
        print(f"no {args.state or 'outgoing'} mail in the outbox", file=out)
    for i in items:
        print(
            f"{i.id:<6} {i.state:<8} {ref(i.ticket) or '-':<8} {i.kind:<20} "
            f"{', '.join(i.recipients)} {i.last_error or ''}",
            file=out,
        )
    return EX_OK
