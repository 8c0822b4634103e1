"""The ``mailgate`` command line; the only place that decides exit codes.

Exit codes follow sysexits(3): 0 done, 1 not found or failed, 65 the mail is
unusable (EX_DATAERR), 75 a temporary failure, retry later (EX_TEMPFAIL),
78 the configuration is wrong (EX_CONFIG).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, TextIO

import structlog
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from mailgate import __version__
from mailgate.app import App, build_app, run_daemon
from mailgate.blobs import BlobStore
from mailgate.config import Config, load_config, resolve_config_path
from mailgate.core.classify import classify
from mailgate.core.commands import Command, CommandBlock, Verb
from mailgate.core.desk import Plan, Refusal, plan_agent
from mailgate.core.model import Action, SpoolEntry, TicketView
from mailgate.core.notify import LANGUAGES, Kind
from mailgate.core.parse import parse_mail
from mailgate.core.route import gather_evidence
from mailgate.core.sla import hours, status_of
from mailgate.errors import (
    BadMail,
    ConfigError,
    LoginFailed,
    MailgateError,
    NotFound,
    SchemaMismatch,
)
from mailgate.intake.imap import probe
from mailgate.intake.spool import SERVER_SOURCE, Received
from mailgate.log import configure
from mailgate.outbound.render import Templates
from mailgate.progress import Steps
from mailgate.retention import parse_age, purger_for
from mailgate.store.db import create_engine, session, storage_errors
from mailgate.store.repos import PENDING, Repo, Tx
from mailgate.store.schema import migrate, pending, upgrade_sql

EX_OK = 0
EX_FAILED = 1
EX_USAGE = 2
EX_DATAERR = 65
EX_TEMPFAIL = 75
EX_CONFIG = 78

log = structlog.get_logger("mailgate.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailgate", description="Email ticket gateway.")
    parser.add_argument(
        "--config", metavar="PATH", help="config file (default: $MAILGATE_CONFIG or ./config.toml)"
    )
    parser.add_argument("--version", action="version", version=f"mailgate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("check", help="validate the configuration and exit (0 ok, 78 invalid)")
    sub.add_parser("init", help="create the data directory, database schema and secret")
    sub.add_parser("run", help="run the daemon until SIGTERM/SIGINT")
    migrate = sub.add_parser("migrate", help="upgrade the database schema to this version's")
    migrate.add_argument(
        "--sql", action="store_true", help="print the SQL of a fresh upgrade instead of running it"
    )
    ingest = sub.add_parser("ingest", help="take one raw mail from FILE or stdin (MTA pipe mode)")
    ingest.add_argument("file", nargs="?", default="-", metavar="FILE|-")
    ingest.add_argument(
        "--recipient",
        action="append",
        default=[],
        metavar="ADDR",
        help="envelope recipient (repeatable), as given by the MTA",
    )
    ingest.add_argument("--sender", metavar="ADDR", help="envelope sender, as given by the MTA")
    tickets = sub.add_parser("tickets", help="list tickets")
    tickets.add_argument("--json", action="store_true")
    tickets.add_argument("--status", metavar="STATE")
    tickets.add_argument("--action-by", choices=("support", "customer", "nobody"))
    tickets.add_argument("--assignee", metavar="ADDR")
    setter = sub.add_parser(
        "set", help="change a ticket: status=... priority=... type=... assignee=..."
    )
    setter.add_argument("ref", metavar="REF")
    setter.add_argument("changes", nargs="+", metavar="FIELD=VALUE")
    setter.add_argument("--from", dest="author", metavar="AGENT", help="who makes the change")
    for name, what in (
        ("reply", "answer a ticket as an agent, exactly as if the agent had mailed it"),
        ("note", "add an internal note as an agent (not sent to the customer)"),
    ):
        command = sub.add_parser(name, help=what)
        command.add_argument("ref", metavar="REF")
        command.add_argument("--from", dest="author", required=True, metavar="AGENT")
        command.add_argument("--file", default="-", metavar="F", help="the text (default: stdin)")
    show = sub.add_parser("show", help="show one ticket: #1042, 1042 or its token")
    show.add_argument("ref", metavar="REF")
    show.add_argument("--json", action="store_true")
    quarantine = sub.add_parser("quarantine", help="list quarantined mails, or retry them")
    quarantine.add_argument("--json", action="store_true")
    qsub = quarantine.add_subparsers(dest="quarantine_command", metavar="retry")
    retry = qsub.add_parser("retry", help="re-run quarantined mails")
    retry.add_argument("id", nargs="?", type=int)
    retry.add_argument("--all", action="store_true")
    outbox = sub.add_parser("outbox", help="list outgoing mail, or retry dead mail")
    outbox.add_argument("--json", action="store_true")
    outbox.add_argument("--state", choices=("pending", "sending", "sent", "dead"))
    osub = outbox.add_subparsers(dest="outbox_command", metavar="retry")
    oretry = osub.add_parser("retry", help="put dead mail back in line")
    oretry.add_argument("id", nargs="?", type=int)
    oretry.add_argument("--dead", action="store_true", help="all dead mail")
    purge = sub.add_parser(
        "purge", help="remove raw mails and attachments of long-archived tickets (dry run)"
    )
    purge.add_argument("--archived-older-than", required=True, metavar="AGE", help="365d, 52w, 2y")
    purge.add_argument("--apply", action="store_true", help="remove them (default: only count)")
    purge.add_argument("--json", action="store_true")
    trace = sub.add_parser("trace", help="every decision taken on one mail, and why")
    trace.add_argument("ref", metavar="MESSAGE-ID|SPOOL-ID")
    trace.add_argument("--json", action="store_true")
    sla = sub.add_parser("sla", help="open tickets by nearest deadline, breached first")
    sla.add_argument("--json", action="store_true")
    sla.add_argument("--explain", metavar="REF", help="the calendar arithmetic of one ticket")
    preview = sub.add_parser("preview", help="print a notification as it would be sent")
    preview.add_argument("template", choices=[k.value for k in Kind], metavar="TEMPLATE")
    preview.add_argument("--ticket", required=True, metavar="REF")
    preview.add_argument("--lang", choices=LANGUAGES, default=None)
    return parser


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None) -> int:
    """Run one command; its exit code. Output cut short by its reader (``mailgate outbox |
    head``) ends the command quietly, as it does for any Unix tool."""
    out = stdout or sys.stdout
    try:
        return _main(argv, out)
    except BrokenPipeError:
        if out is sys.stdout:  # nothing more may reach the closed pipe, not even at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EX_OK


def _main(argv: Sequence[str] | None, out: TextIO) -> int:
    # Raw mails, tickets and the token secret are private to mailgate's user, however it is
    # started (the systemd unit sets the same umask).
    os.umask(0o077)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(resolve_config_path(args.config, os.environ))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EX_CONFIG
    configure(_log_level(args.command, config.general.log_level), config.general.log_format)
    if args.command == "check":
        try:  # every template loaded and rendered against a sample, as the daemon does
            Templates(config.outbound.template_dir).check()
        except ConfigError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            return EX_CONFIG
        print(f"{config.path}: ok ({len(config.queues)} queue(s))", file=out)
        return asyncio.run(_check_sources(config, out))
    if (
        args.command == "quarantine"
        and args.quarantine_command == "retry"
        and ((args.id is None) == (not args.all))
    ):
        parser.error("quarantine retry takes either an ID or --all")
    try:
        if args.command == "migrate":
            return asyncio.run(_migrate(config, args, out))
        handler = _COMMANDS[args.command]
        return asyncio.run(_with_app(config, lambda app: handler(app, args, out)))
    except (ConfigError, SchemaMismatch) as exc:
        for problem in exc.problems if isinstance(exc, ConfigError) else [f"mailgate: {exc}"]:
            print(problem, file=sys.stderr)
        return EX_CONFIG
    except MailgateError as exc:
        print(f"mailgate: {exc}", file=sys.stderr)
        if args.command == "ingest":
            _print_json(out, {"action": "failed", "ticket": None, "reason": str(exc)})
        if exc.temporary:
            return EX_TEMPFAIL
        return EX_FAILED
    except KeyboardInterrupt:
        return EX_OK


_LEVELS = ("debug", "info", "warning", "error")
# Commands whose log is the record of a service (the daemon; the MTA pipe, whose stderr the
# MTA keeps); the others are a person at a terminal, who wants the result, not the trace.
_LOGGING_COMMANDS = frozenset({"run", "ingest"})


def _log_level(command: str, configured: str) -> str:
    """The configured level for the daemon and the pipe; at least "warning" otherwise."""
    if command in _LOGGING_COMMANDS:
        return configured
    return max(configured, "warning", key=_LEVELS.index)


async def _migrate(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    """Upgrade the schema (or print the SQL that would create it)."""
    if args.sql:
        print(upgrade_sql(config.database.url), file=out)
        return EX_OK
    engine = create_engine(config.database.url, busy_timeout=config.database.busy_timeout)
    try:
        async with engine.connect() as conn:
            current = await conn.run_sync(
                lambda c: MigrationContext.configure(c).get_current_revision()
            )
        todo = pending(current) if current else []
        with Steps("migrating", len(todo)) as steps:
            before, after = await migrate(engine, on_step=lambda _rev: steps.advance())
    finally:
        await engine.dispose()
    if before == after:
        print(f"schema already at {after}", file=out)
    else:
        print(f"schema upgraded from {before or 'nothing'} to {after}", file=out)
    return EX_OK


async def _check_sources(config: Config, out: TextIO) -> int:
    """Log in to every configured IMAP mailbox and report what waits there."""
    code = EX_OK
    for mailbox in config.imap:
        try:
            state = await probe(mailbox)
        except LoginFailed as exc:
            print(f"imap {mailbox.name}: login failed: {exc}", file=out)
            code = EX_CONFIG
        except MailgateError as exc:
            print(f"imap {mailbox.name}: unreachable: {exc}", file=out)
            code = code or EX_TEMPFAIL
        else:
            print(
                f"imap {mailbox.name}: ok, {state.waiting} mail(s) waiting in "
                f"{mailbox.folder} (UIDVALIDITY {state.uidvalidity})",
                file=out,
            )
    return code


async def _with_app(config: Config, body: Callable[[App], Awaitable[int]]) -> int:
    app = await build_app(config)
    try:
        return await body(app)
    finally:
        await app.close()


async def _init(app: App, args: argparse.Namespace, out: TextIO) -> int:
    print(f"data directory: {app.config.general.data_dir}", file=out)
    print("database schema: ready", file=out)
    print(f"ticket tag example: {app.codec.subject_tag(1)}", file=out)
    return EX_OK


async def _run(app: App, args: argparse.Namespace, out: TextIO) -> int:
    await run_daemon(app)
    return EX_OK


def _print_json(out: TextIO, value: object) -> None:
    print(json.dumps(value, ensure_ascii=False, default=_json_default), file=out)


def _json_default(value: object) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


async def _ingest(app: App, args: argparse.Namespace, out: TextIO) -> int:
    """MTA pipe mode: exit 0 once the mail is durably stored, 75 when it could not be."""
    try:
        raw = sys.stdin.buffer.read() if args.file == "-" else _read_file(args.file)
        stored = await app.spool.store(
            Received(raw, "pipe", envelope_from=args.sender, envelope_to=tuple(args.recipient))
        )
    except BadMail as exc:
        _print_json(out, {"action": "rejected", "ticket": None, "reason": str(exc)})
        return EX_DATAERR
    except MailgateError as exc:
        _print_json(out, {"action": "failed", "ticket": None, "reason": str(exc)})
        return EX_TEMPFAIL if exc.temporary else EX_FAILED
    entry = await _spool_entry(app, stored.spool_id) if stored.duplicate else None
    if entry is not None and entry.state != PENDING:
        _print_json(
            out,
            {
                "action": Action.DUPLICATE.value,
                "ticket": _ref(entry.ticket),
                "reason": f"same mail as spool item {stored.spool_id}",
                "spool_id": stored.spool_id,
            },
        )
        return EX_OK
    # New, or stored by an earlier try that died before processing it: in a set-up with no
    # daemon nothing else would ever process it, so this run does.
    outcome = await app.processor.process(stored.spool_id)
    if outcome is None:  # the daemon took it first
        _print_json(
            out,
            {
                "action": Action.STORED.value,
                "ticket": None,
                "reason": "stored; processed by another worker",
                "spool_id": stored.spool_id,
            },
        )
        return EX_OK
    _print_json(
        out,
        {
            "action": outcome.action.value,
            "ticket": _ref(outcome.ticket),
            "reason": outcome.reason,
            "spool_id": stored.spool_id,
        },
    )
    await _deliver(app)  # what this mail caused
    return EX_OK


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise NotFound(f"cannot read {path}: {exc.strerror}") from exc


async def _spool_entry(app: App, spool_id: int) -> SpoolEntry | None:
    with storage_errors("spool lookup"):
        async with session(app.engine) as s:
            return await Repo(s).spool_get(spool_id)


def _ref(number: int | None) -> str | None:
    return None if number is None else f"#{number}"


def ticket_json(app: App, ticket: TicketView, *, with_messages: bool) -> dict[str, Any]:
    """The documented JSON shape of a ticket (``show --json``, ``tickets --json``)."""
    result: dict[str, Any] = {
        "ref": f"#{ticket.number}",
        "number": ticket.number,
        "token": app.codec.token(ticket.number),
        "subject_tag": app.codec.subject_tag(ticket.number),
        "queue": ticket.queue,
        "title": ticket.title,
        "type": ticket.type,
        "priority": ticket.priority,
        "status": ticket.status,
        "requester": ticket.requester,
        "organisation": ticket.organisation,
        "assignee": ticket.assignee,
        "action_by": ticket.action_by,
        "approval": ticket.approval,
        "quote": ticket.quote,
        "merged_into": _ref(ticket.merged_into),
        "created_at": ticket.created_at,
        "updated_at": ticket.updated_at,
        "updated_by": ticket.updated_by,
        "participants": [
            {
                "address": p.address,
                "name": p.name,
                "role": p.role.value,
                "organisation": p.organisation,
            }
            for p in ticket.participants
        ],
    }
    if with_messages:
        result["messages"] = [
            {
                "direction": m.direction,
                "kind": m.kind,
                "from": m.from_addr,
                "from_name": m.from_name,
                "to": list(m.to),
                "cc": list(m.cc),
                "subject": m.subject,
                "text": m.text,
                "full_text": m.full_text,
                "message_id": m.message_id,
                "created_at": m.created_at,
                "attachments": [
                    {
                        "filename": a.filename,
                        "content_type": a.content_type,
                        "size": a.size,
                        "sha256": a.sha256,
                    }
                    for a in m.attachments
                ],
            }
            for m in ticket.messages
        ]
    result["events"] = [
        {
            "at": e.at,
            "actor": e.actor,
            "kind": e.kind,
            "field": e.field,
            "old": e.old,
            "new": e.new,
            "detail": e.detail,
        }
        for e in ticket.events
    ]
    return result


async def _tickets(app: App, args: argparse.Namespace, out: TextIO) -> int:
    with storage_errors("list tickets"):
        async with session(app.engine) as s:
            repo = Repo(s)
            numbers = await repo.tickets_list(
                status=args.status, action_by=args.action_by, assignee=args.assignee
            )
            views = [await repo.ticket_view(n, with_messages=False) for n in numbers]
    tickets = [v for v in views if v is not None]
    if args.json:
        _print_json(out, [ticket_json(app, t, with_messages=False) for t in tickets])
        return EX_OK
    for t in tickets:
        print(
            f"#{t.number:<6} {t.status:<16} {t.action_by:<8} {t.priority:<8} "
            f"{t.requester or '-':<30} {t.title}",
            file=out,
        )
    return EX_OK


def _local(app: App, when: datetime | None) -> str:
    return f"{when.astimezone(app.desk.calendar.zone):%a %Y-%m-%d %H:%M}" if when else "-"


async def _sla(app: App, args: argparse.Namespace, out: TextIO) -> int:
    """Open tickets with their answer and solve deadlines, nearest first, breached on top."""
    if args.explain:
        return await _sla_explain(app, resolve_ref(app, args.explain), out)
    now = app.clock.now()
    desk = app.desk
    closed = [s.name for s in app.config.workflow.states if s.group.value in ("closed", "archived")]
    rows: list[dict[str, Any]] = []
    with storage_errors("sla"):
        async with session(app.engine) as s:
            repo = Repo(s)
            for number in await repo.tickets_open(closed):
                state = await repo.ticket_state(number)
                assert state is not None
                clock = await repo.sla_clock(number)
                targets = desk.sla.for_ticket(state.type, state.priority)
                for which in ("answer", "solve"):
                    due = status_of(clock, targets, desk.calendar, now, which=which)
                    if due.left is None or due.met_at is not None:
                        continue
                    rows.append(
                        {
                            "ticket": f"#{number}",
                            "target": which,
                            "status": state.status,
                            "type": state.type,
                            "priority": state.priority,
                            "due": due.due,
                            "paused": clock.running_since is None,
                            "left_hours": round(due.left / 3600, 2),
                            "breached": due.left < 0,
                        }
                    )
    rows.sort(key=lambda r: (not r["breached"], r["left_hours"]))
    if args.json:
        _print_json(out, rows)
        return EX_OK
    for row in rows:
        running = "BREACHED" if row["breached"] else ("paused" if row["paused"] else "running")
        print(
            f"{row['ticket']:<7} {row['target']:<7} {running:<9} {row['left_hours']:>8.1f} h left  "
            f"due {_local(app, row['due'])}  {row['type']}/{row['priority']} {row['status']}",
            file=out,
        )
    return EX_OK


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


async def _sla_explain(app: App, number: int, out: TextIO) -> int:
    """How the deadlines of one ticket were computed, day by day."""
    desk = app.desk
    cal = desk.calendar
    now = app.clock.now()
    with storage_errors("sla explain"):
        async with session(app.engine) as s:
            repo = Repo(s)
            view = await repo.ticket_view(number, with_messages=False)
            if view is None:
                raise NotFound(f"no ticket #{number}")
            clock = await repo.sla_clock(number)
    targets = desk.sla.for_ticket(view.type, view.priority)
    day = cal.day_seconds
    print(f"#{number} {view.title}", file=out)
    print(
        f"Units: an hour is an office hour; a day is one business day "
        f"({hours(day)}, {cal.opens:%H:%M}-{cal.closes:%H:%M}); a week is 5 business days; "
        f"a month is 21 business days. Zone {cal.zone}; workdays "
        f"{', '.join(_DAYS[d] for d in sorted(cal.workdays))}.",
        file=out,
    )
    for which, target in (("answer", targets.answer), ("solve", targets.solve)):
        written = (
            f"{target.amount:g} {target.unit}(s) = {hours(target.seconds(cal))}"
            if target
            else ("to agree" if which == "solve" and targets.agree else "n/a")
        )
        print(f"{view.type}/{view.priority} {which} target: {written}", file=out)
    print(f"Created {_local(app, view.created_at)}.", file=out)
    for event in view.events:
        if event.kind == "status_changed":
            group = app.config.workflow.group(event.new or "")
            verb = "runs" if group.value == "support" else "pauses"
            print(
                f"  {_local(app, event.at)}  {event.old} -> {event.new}: the clock {verb}",
                file=out,
            )
        elif event.kind in ("sla_recomputed", "sla_alert"):
            print(f"  {_local(app, event.at)}  {event.kind}: {event.detail}", file=out)
    used = clock.used(cal, now)
    print(
        f"Used so far: {hours(clock.consumed)} before the last resume"
        + (
            f", then {hours(used - clock.consumed)} since {_local(app, clock.running_since)}"
            if clock.running_since
            else " (paused now)"
        )
        + f": {hours(used)} in all.",
        file=out,
    )
    for which in ("answer", "solve"):
        due = status_of(clock, targets, cal, now, which=which)
        if due.met_at is not None:
            print(f"{which}: met {_local(app, due.met_at)}", file=out)
            continue
        if due.left is None:
            print(f"{which}: no target", file=out)
            continue
        print(f"{which}: {hours(due.left)} left; due {_local(app, due.due)}", file=out)
        if due.due is not None and clock.running_since is not None:
            left = max(due.left, 0)
            for window in cal.windows(max(clock.running_since, now)):
                if left <= 0 or window.start > due.due:
                    break
                start = max(window.start, now.astimezone(cal.zone))
                if start >= window.end:
                    continue
                take = min(left, int((window.end - start).total_seconds()))
                left -= take
                print(
                    f"    {window.day:%a %Y-%m-%d} {start:%H:%M}-{window.end:%H:%M}: "
                    f"{hours(take)}, {hours(left)} to go",
                    file=out,
                )
    skipped = sorted(
        d for d in cal.holiday_names if now.date() <= d <= (now.date().replace(year=now.year + 1))
    )[:8]
    if skipped:
        print(
            "Closed days ahead: "
            + ", ".join(f"{d:%Y-%m-%d} ({cal.holiday_names[d]})" for d in skipped),
            file=out,
        )
    return EX_OK


async def _purge(app: App, args: argparse.Namespace, out: TextIO) -> int:
    """Count (or with --apply remove) raw mails and attachments of long-archived tickets."""
    days = parse_age(args.archived_older_than)
    if days is None:
        print("mailgate: --archived-older-than takes 365d, 52w or 2y", file=sys.stderr)
        return EX_USAGE
    purger = purger_for(app.engine, app.config)
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
        _print_json(out, summary)
    else:
        verb = "removed" if args.apply else "would remove (dry run; --apply to remove)"
        print(
            f"{verb}: {len(plan.raw)} raw mail(s) and {len(plan.attachments)} attachment(s), "
            f"{plan.bytes:,} bytes, of {len(plan.tickets)} ticket(s) archived over {days} days ago",
            file=out,
        )
    return EX_OK


async def _trace(app: App, args: argparse.Namespace, out: TextIO) -> int:
    """How one mail was taken in: stored, classified, matched, and what followed.

    Classification and evidence are computed again from the raw mail by the same
    pure functions the worker used; the outcome, the ticket's events and the
    notifications are what the database recorded."""
    ref = args.ref.strip()
    with storage_errors("trace"):
        async with session(app.engine) as s:
            repo = Repo(s)
            ids = [int(ref)] if ref.isdigit() else await repo.spool_by_message_id(ref)
            if not ids:
                raise NotFound(f"no mail with Message-ID or spool id {ref}")
            entry = await repo.spool_get(ids[0])
            if entry is None:
                raise NotFound(f"no spool item {ref}")
            raw = await repo.spool_raw(entry.id)
            view = await repo.ticket_view(entry.ticket) if entry.ticket else None
            window = _processing_window(entry)
            sent = (
                await repo.outbox_of_ticket_between(view.number, *window)
                if view is not None and window is not None
                else []
            )
    if raw is None:
        raw = await asyncio.to_thread(BlobStore(app.config.spool_dir, ".eml").get, entry.raw_sha256)
    mail = parse_mail(raw, app.config.intake.fallback_charsets)
    kind = classify(mail, entry.envelope_from, app.codec.installation_id)
    evidence = gather_evidence(mail, entry.envelope_to, app.codec, app.policy)
    steps: list[tuple[str, str]] = [
        (
            "received",
            f"spool #{entry.id} from {entry.source} at {entry.received_at:%Y-%m-%d %H:%M:%S} UTC, "
            f"envelope {entry.envelope_from or '<>'} -> {', '.join(entry.envelope_to) or '-'}",
        ),
        ("message-id", entry.message_id or "(none; the raw bytes are its identity)"),
        (
            "classified",
            f"{kind.category.value}: {kind.reason}; may open a ticket "
            f"{_yes(kind.decisions.create_ticket)}, be answered {_yes(kind.decisions.answer)}, "
            f"tell the team {_yes(kind.decisions.tell_team)}",
        ),
        (
            "evidence",
            "; ".join(
                [f"{h} <{m}>" for h, m in evidence.references]
                + [
                    f"subject token {t.text} ({'valid' if t.valid else 'check failed'})"
                    for t in evidence.subject_tokens
                ]
                + [f"plus-address {a}" for a, _ in evidence.plus_tokens]
            )
            or "no ticket reference",
        ),
        ("queue", evidence.queue),
        (
            "outcome",
            f"{entry.outcome or entry.state}"
            + (f" #{entry.ticket}" if entry.ticket else "")
            + (f": {entry.reason}" if entry.reason else ""),
        ),
    ]
    if entry.error:
        steps.append(("error", f"{entry.error} (traceback {entry.traceback_id})"))
    if view is not None and window is not None:
        for event in view.events:
            if event.kind in _TRACE_EVENTS and window[0] <= event.at <= window[1]:
                if event.field or event.old:
                    change = f"{event.old or '-'} -> {event.new or '-'}"
                else:
                    change = f"-> {event.new}" if event.new else ""
                steps.append((event.kind, f"{change} {event.detail or ''}".strip()))
        for item in sent:
            steps.append(
                ("notification", f"{item.kind} to {', '.join(item.recipients)} ({item.state})")
            )
    if args.json:
        _print_json(out, [{"step": k, "detail": v} for k, v in steps])
    else:
        for key, value in steps:
            print(f"{key:<16} {value}", file=out)
    return EX_OK


_TRACE_EVENTS = (
    "created",
    "message_added",
    "message_held",
    "status_changed",
    "priority_changed",
    "type_changed",
    "assignee_changed",
    "approval_changed",
    "participant_added",
    "linked",
    "merged_into",
    "command_failed",
    "privacy_masked",
    "delivery_failed",
    "sla_recomputed",
)


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _processing_window(entry: SpoolEntry) -> tuple[datetime, datetime] | None:
    """When the transaction that processed ``entry`` ran (well under ten seconds)."""
    if entry.processed_at is None:
        return None
    return max(entry.received_at, entry.processed_at - timedelta(seconds=10)), entry.processed_at


_SET_FIELDS = {
    "status": Verb.STATUS,
    "priority": Verb.PRIORITY,
    "type": Verb.TYPE,
    "assignee": Verb.ASSIGN,
}


async def _set(app: App, args: argparse.Namespace, out: TextIO) -> int:
    """Change fields by the same rules as an agent's commands; mail what the workflow says."""
    number = resolve_ref(app, args.ref)
    commands = []
    for change in args.changes:
        key, eq, value = change.partition("=")
        if not eq or key.strip().lower() not in _SET_FIELDS:
            print(
                f"mailgate: expected FIELD=VALUE with FIELD one of {', '.join(_SET_FIELDS)}",
                file=sys.stderr,
            )
            return EX_USAGE
        verb = _SET_FIELDS[key.strip().lower()]
        commands.append(Command(verb, value.strip(), f"{key}={value}"))
    actor = (args.author or "cli").lower()
    now = app.clock.now()

    def carry_out(conn: Connection) -> Plan | Refusal:
        tx = Tx.on(conn)
        state = tx.tickets.state(number, lock=True)
        if state is None:
            raise NotFound(f"no ticket {args.ref}")
        plan = plan_agent(
            app.config.workflow,
            state,
            CommandBlock(tuple(commands), (), ""),
            author=actor,
            policy=app.policy,
            calendar=app.desk.calendar,
            now=now,
        )
        if isinstance(plan, Plan):
            app.desk.carry_out(tx, number, plan, actor=actor, now=now)
            if plan.move is not None:
                app.desk.announce(tx, number, plan.move, now=now)
        return plan

    with storage_errors("set"):
        plan = await app.blocking.write(carry_out)
    if isinstance(plan, Refusal):
        for error in plan.errors:
            print(f"mailgate: {error}", file=sys.stderr)
        return EX_FAILED
    for change in plan.changes:
        print(f"#{number} {change.field}: {change.old or '-'} -> {change.new}", file=out)
    if plan.move is not None and plan.move.changed:
        print(f"#{number} status: {plan.move.old} -> {plan.move.new}", file=out)
    await _deliver(app)
    return EX_OK


async def _reply(app: App, args: argparse.Namespace, out: TextIO) -> int:
    """An agent's answer or note, composed as the agent's mail and taken in like one."""
    number = resolve_ref(app, args.ref)
    author = args.author.strip().lower()
    if not app.policy.is_agent(author):
        print(f"mailgate: {author} is not an agent ([agents] in config.toml)", file=sys.stderr)
        return EX_FAILED
    body = (sys.stdin.buffer.read() if args.file == "-" else _read_file(args.file)).decode(
        "utf-8", "replace"
    )
    if args.command == "note":
        body = f"#internal\n{body}"
    with storage_errors("reply"):
        async with session(app.engine) as s:
            view = await Repo(s).ticket_view(number, with_messages=False, with_events=False)
    if view is None:
        raise NotFound(f"no ticket {args.ref}")
    queue = next((q for q in app.config.queues if q.name == view.queue), app.config.queues[0])
    to = app.policy.plus_address(queue.addresses[0], app.codec.token(number))
    mail = EmailMessage()
    mail["From"] = author
    mail["To"] = to
    mail["Subject"] = f"Re: {app.codec.subject_tag(number)} {view.title}"
    mail["Date"] = format_datetime(app.clock.now())
    mail["Message-ID"] = make_msgid(domain=author.rpartition("@")[2])
    mail.set_content(body)
    stored = await app.spool.store(
        Received(mail.as_bytes(), SERVER_SOURCE, envelope_from=author, envelope_to=(to,))
    )
    outcome = await app.processor.process(stored.spool_id)
    _print_json(
        out,
        {
            "action": outcome.action.value if outcome else Action.STORED.value,
            "ticket": _ref(outcome.ticket if outcome else number),
            "reason": outcome.reason if outcome else "stored; processed by another worker",
            "spool_id": stored.spool_id,
        },
    )
    await _deliver(app)
    return EX_OK


async def _deliver(app: App) -> None:
    """Send what a command caused; what fails stays in the outbox for the daemon."""
    try:
        await app.sender.run_due()
    except MailgateError as exc:
        log.warning("outbox.deferred", error=str(exc))


def resolve_ref(app: App, ref: str) -> int:
    """The ticket number named by ``#1042``, ``1042`` or a token; NotFound otherwise."""
    text = ref.strip()
    if text.lstrip("#").isdigit():
        return int(text.lstrip("#"))
    token = app.codec.parse_token(text)
    if token is None or not token.valid:
        raise NotFound(f"not a ticket reference: {ref}")
    return token.number


async def _show(app: App, args: argparse.Namespace, out: TextIO) -> int:
    try:
        number = resolve_ref(app, args.ref)
    except NotFound as exc:
        print(f"mailgate: {exc}", file=sys.stderr)
        return EX_FAILED
    with storage_errors("show ticket"):
        async with session(app.engine) as s:
            ticket = await Repo(s).ticket_view(number)
    if ticket is None:
        print(f"mailgate: no ticket {args.ref}", file=sys.stderr)
        return EX_FAILED
    if args.json:
        _print_json(out, ticket_json(app, ticket, with_messages=True))
        return EX_OK
    print(f"{app.codec.subject_tag(ticket.number)} {ticket.title}", file=out)
    print(
        f"queue {ticket.queue} · type {ticket.type} · priority {ticket.priority} · "
        f"status {ticket.status}",
        file=out,
    )
    print(
        f"action by {ticket.action_by} · assignee {ticket.assignee or '-'} · "
        f"approval {ticket.approval}" + (f" ({ticket.quote})" if ticket.quote else ""),
        file=out,
    )
    if ticket.merged_into is not None:
        print(f"merged into #{ticket.merged_into}", file=out)
    print(
        f"requester {ticket.requester or '-'} · last changed {ticket.updated_at:%Y-%m-%d %H:%M} "
        f"by {ticket.updated_by}",
        file=out,
    )
    for m in ticket.messages:
        print(f"\n--- {m.created_at:%Y-%m-%d %H:%M} {m.kind} {m.from_addr or '-'}", file=out)
        print(m.text, file=out)
        for a in m.attachments:
            print(f"    [attachment] {a.filename} ({a.size} bytes)", file=out)
    return EX_OK


async def _quarantine(app: App, args: argparse.Namespace, out: TextIO) -> int:
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
                _print_json(
                    out,
                    {
                        "spool_id": outcome.spool_id,
                        "action": outcome.action.value,
                        "ticket": _ref(outcome.ticket),
                        "reason": outcome.reason,
                    },
                )
        return EX_OK
    with storage_errors("list quarantine"):
        async with session(app.engine) as s:
            entries = await Repo(s).quarantined()
    if args.json:
        _print_json(
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
    for e in entries:
        print(
            f"{e.id:<6} {e.received_at:%Y-%m-%d %H:%M} {e.source:<10} {e.error} "
            f"(traceback {e.traceback_id})",
            file=out,
        )
    return EX_OK


async def _outbox(app: App, args: argparse.Namespace, out: TextIO) -> int:
    if args.outbox_command == "retry":
        with storage_errors("outbox retry"):
            async with session(app.engine, write=True) as s:
                ids = await Repo(s).outbox_retry(None if args.dead else [args.id], app.clock.now())
        if not ids and not args.dead:
            print(f"mailgate: no dead outbox mail {args.id}", file=sys.stderr)
            return EX_FAILED
        for delivery in await app.sender.send_now(ids):
            _print_json(
                out, {"id": delivery.outbox_id, "state": delivery.state, "detail": delivery.detail}
            )
        return EX_OK
    with storage_errors("outbox list"):
        async with session(app.engine) as s:
            items = await Repo(s).outbox_list(args.state)
    if args.json:
        _print_json(
            out,
            [
                {
                    "id": i.id,
                    "ticket": _ref(i.ticket),
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
    for i in items:
        print(
            f"{i.id:<6} {i.state:<8} {_ref(i.ticket) or '-':<8} {i.kind:<20} "
            f"{', '.join(i.recipients)} {i.last_error or ''}",
            file=out,
        )
    return EX_OK


async def _preview(app: App, args: argparse.Namespace, out: TextIO) -> int:
    """Render a notification for a real ticket, exactly as the outbox would hold it."""
    number = resolve_ref(app, args.ticket)
    with storage_errors("preview"):
        async with session(app.engine) as s:
            repo = Repo(s)
            view = await repo.ticket_view(number)
            if view is None:
                print(f"mailgate: no ticket {args.ticket}", file=sys.stderr)
                return EX_FAILED
            queue = next(
                (q for q in app.config.queues if q.name == view.queue), app.config.queues[0]
            )
            anchor = await s.run_sync(
                lambda sync: Tx.on(sync.connection()).tickets.thread_anchor(number)
            )
            raw = app.notifier.preview(
                anchor,
                view,
                queue,
                Kind(args.template),
                args.lang or queue.language,
                app.clock.now(),
            )
    out.write(raw.decode("utf-8", "replace"))
    return EX_OK


_COMMANDS: dict[str, Callable[[App, argparse.Namespace, TextIO], Awaitable[int]]] = {
    "init": _init,
    "run": _run,
    "ingest": _ingest,
    "tickets": _tickets,
    "show": _show,
    "quarantine": _quarantine,
    "outbox": _outbox,
    "preview": _preview,
    "set": _set,
    "sla": _sla,
    "trace": _trace,
    "purge": _purge,
    "reply": _reply,
    "note": _reply,
}
