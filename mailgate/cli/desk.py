"""Commands an agent works the desk with: ``tickets``, ``show``, ``set``, ``reply``,
``note``, ``sla``, ``preview``."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, TextIO

from sqlalchemy import Connection

from mailgate.app import App
from mailgate.cli.output import EX_FAILED, EX_OK, EX_USAGE, print_json, read_file, ref
from mailgate.cli.service import deliver, resolve_ref
from mailgate.core.commands import Command, CommandBlock, Verb
from mailgate.core.desk import Plan, Refusal, plan_agent
from mailgate.core.model import Action, TicketView
from mailgate.core.notify import Kind
from mailgate.core.sla import hours, status_of
from mailgate.errors import (
    NotFound,
)
from mailgate.intake.spool import SERVER_SOURCE, Received
from mailgate.store.db import session, storage_errors
from mailgate.store.repos import Repo, Tx


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
        "merged_into": ref(ticket.merged_into),
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


async def tickets(app: App, args: argparse.Namespace, out: TextIO) -> int:
    with storage_errors("list tickets"):
        async with session(app.engine) as s:
            repo = Repo(s)
            numbers = await repo.tickets_list(
                status=args.status, action_by=args.action_by, assignee=args.assignee
            )
            views = [await repo.ticket_view(n, with_messages=False) for n in numbers]
    tickets = [v for v in views if v is not None]
    if args.json:
        print_json(out, [ticket_json(app, t, with_messages=False) for t in tickets])
        return EX_OK
    for t in tickets:
        print(
            f"#{t.number:<6} {t.status:<16} {t.action_by:<8} {t.priority:<8} "
            f"{t.requester or '-':<30} {t.title}",
            file=out,
        )
    return EX_OK


async def show(app: App, args: argparse.Namespace, out: TextIO) -> int:
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
        print_json(out, ticket_json(app, ticket, with_messages=True))
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


SET_FIELDS = {
    "status": Verb.STATUS,
    "priority": Verb.PRIORITY,
    "type": Verb.TYPE,
    "assignee": Verb.ASSIGN,
}


async def change(app: App, args: argparse.Namespace, out: TextIO) -> int:
    """Change fields by the same rules as an agent's commands; mail what the workflow says."""
    number = resolve_ref(app, args.ref)
    commands = []
    for change in args.changes:
        key, eq, value = change.partition("=")
        if not eq or key.strip().lower() not in SET_FIELDS:
            print(
                f"mailgate: expected FIELD=VALUE with FIELD one of {', '.join(SET_FIELDS)}",
                file=sys.stderr,
            )
            return EX_USAGE
        verb = SET_FIELDS[key.strip().lower()]
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
    await deliver(app)
    return EX_OK


async def reply(app: App, args: argparse.Namespace, out: TextIO) -> int:
    """An agent's answer or note, composed as the agent's mail and taken in like one."""
    number = resolve_ref(app, args.ref)
    author = args.author.strip().lower()
    if not app.policy.is_agent(author):
        print(f"mailgate: {author} is not an agent ([agents] in config.toml)", file=sys.stderr)
        return EX_FAILED
    body = (sys.stdin.buffer.read() if args.file == "-" else read_file(args.file)).decode(
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
    print_json(
        out,
        {
            "action": outcome.action.value if outcome else Action.STORED.value,
            "ticket": ref(outcome.ticket if outcome else number),
            "reason": outcome.reason if outcome else "stored; processed by another worker",
            "spool_id": stored.spool_id,
        },
    )
    await deliver(app)
    return EX_OK


def local(app: App, when: datetime | None) -> str:
    return f"{when.astimezone(app.desk.calendar.zone):%a %Y-%m-%d %H:%M}" if when else "-"


async def sla(app: App, args: argparse.Namespace, out: TextIO) -> int:
    """Open tickets with their answer and solve deadlines, nearest first, breached on top."""
    if args.explain:
        return await sla_explain(app, resolve_ref(app, args.explain), out)
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
        print_json(out, rows)
        return EX_OK
    for row in rows:
        running = "BREACHED" if row["breached"] else ("paused" if row["paused"] else "running")
        print(
            f"{row['ticket']:<7} {row['target']:<7} {running:<9} {row['left_hours']:>8.1f} h left  "
            f"due {local(app, row['due'])}  {row['type']}/{row['priority']} {row['status']}",
            file=out,
        )
    return EX_OK


DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


async def sla_explain(app: App, number: int, out: TextIO) -> int:
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
        f"{', '.join(DAYS[d] for d in sorted(cal.workdays))}.",
        file=out,
    )
    for which, target in (("answer", targets.answer), ("solve", targets.solve)):
        written = (
            f"{target.amount:g} {target.unit}(s) = {hours(target.seconds(cal))}"
            if target
            else ("to agree" if which == "solve" and targets.agree else "n/a")
        )
        print(f"{view.type}/{view.priority} {which} target: {written}", file=out)
    print(f"Created {local(app, view.created_at)}.", file=out)
    for event in view.events:
        if event.kind == "status_changed":
            group = app.config.workflow.group(event.new or "")
            verb = "runs" if group.value == "support" else "pauses"
            print(
                f"  {local(app, event.at)}  {event.old} -> {event.new}: the clock {verb}",
                file=out,
            )
        elif event.kind in ("sla_recomputed", "sla_alert"):
            print(f"  {local(app, event.at)}  {event.kind}: {event.detail}", file=out)
    used = clock.used(cal, now)
    print(
        f"Used so far: {hours(clock.consumed)} before the last resume"
        + (
            f", then {hours(used - clock.consumed)} since {local(app, clock.running_since)}"
            if clock.running_since
            else " (paused now)"
        )
        + f": {hours(used)} in all.",
        file=out,
    )
    for which in ("answer", "solve"):
        due = status_of(clock, targets, cal, now, which=which)
        if due.met_at is not None:
            print(f"{which}: met {local(app, due.met_at)}", file=out)
            continue
        if due.left is None:
            print(f"{which}: no target", file=out)
            continue
        print(f"{which}: {hours(due.left)} left; due {local(app, due.due)}", file=out)
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


async def preview(app: App, args: argparse.Namespace, out: TextIO) -> int:
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
