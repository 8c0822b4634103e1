"""Commands an agent works the desk with: ``tickets``, ``show``, ``set``, ``reply``,
``note``, ``preview``."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from typing import Any, TextIO

from mailgate.app import App
from mailgate.cli.output import EX_FAILED, EX_OK, EX_USAGE, at, print_json, read_file, ref
from mailgate.cli.service import deliver, resolve_ref
from mailgate.core.desk import Refusal
from mailgate.core.model import PRIORITIES, MessageKind, MessageView, TicketView
from mailgate.core.notify import Kind
from mailgate.core.terms import priority, ticket_type
from mailgate.errors import NotFound
from mailgate.intake.spool import SERVER_SOURCE
from mailgate.service import change_fields, mail_as
from mailgate.store.db import session, storage_errors
from mailgate.store.repos import Repo, Tx
from mailgate.tickets.agents import SET_FIELDS, field_commands


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
        "fields": dict(ticket.fields),
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
        result["messages"] = [_message_json(m) for m in ticket.messages]
    result["events"] = [asdict(e) for e in ticket.events]
    return result


def _login() -> str:
    """Who runs a command without ``--from``: the login user on this host, for the log."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = "unknown"
    return f"{user}@{socket.gethostname()} (command line)"


def _message_json(m: MessageView) -> dict[str, Any]:
    return {
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
        "attachments": [asdict(a) for a in m.attachments],
    }


async def tickets(app: App, args: argparse.Namespace, out: TextIO) -> int:
    """The tickets that match every filter given, in the order asked, with a header."""
    status = None
    if args.status:
        state = app.config.workflow.find(args.status)
        if state is None:
            names = ", ".join(s.name for s in app.config.workflow.states)
            print(f"mailgate: no status {args.status!r}; known: {names}", file=sys.stderr)
            return EX_USAGE
        status = state.name
    with storage_errors("list tickets"):
        async with session(app.engine) as s:
            repo = Repo(s)
            numbers = await repo.tickets_list(
                status=status, action_by=args.action_by, assignee=args.assignee
            )
            views = [await repo.ticket_view(n, with_messages=False) for n in numbers]
    found = _sorted([v for v in views if v is not None and _matches(v, args)], args.sort)
    if args.json:
        print_json(out, [ticket_json(app, t, with_messages=False) for t in found])
        return EX_OK
    if not found:
        print("no tickets", file=out)
        return EX_OK
    row = "{:<7} {:<18} {:<8} {:<9} {:<20} {:<30} {}"
    print(
        row.format("TICKET", "STATUS", "ACTS", "PRIORITY", "TYPE", "REQUESTER", "TITLE"), file=out
    )
    for t in found:
        requester = t.requester or "-"
        title = t.title + "".join(f" [{name} {value}]" for name, value in t.fields)
        print(
            row.format(f"#{t.number}", t.status, t.action_by, t.priority, t.type, requester, title),
            file=out,
        )
    return EX_OK


def _matches(view: TicketView, args: argparse.Namespace) -> bool:
    """Whether ``view`` passes the filters of ``tickets`` (words in English or Dutch)."""
    if args.priority and view.priority != (priority(args.priority) or args.priority):
        return False
    if args.type_ and view.type != (ticket_type(args.type_) or args.type_):
        return False
    if args.queue and view.queue != args.queue:
        return False
    if args.requester and (view.requester or "").lower() != args.requester.lower():
        return False
    if args.organisation and (view.organisation or "").lower() != args.organisation.lower():
        return False
    values = " ".join(v for _, v in view.fields)
    text = f"{view.title} {view.requester or ''} {values}".lower()
    return not args.search or args.search.lower() in text


def _sorted(views: list[TicketView], key: str) -> list[TicketView]:
    if key == "priority":  # "incidents first": the most urgent, and among them bugs
        return sorted(
            views, key=lambda v: (_rank(PRIORITIES, v.priority), _rank(_TYPE_ORDER, v.type))
        )
    if key == "type":
        return sorted(views, key=lambda v: (_rank(_TYPE_ORDER, v.type), v.number))
    if key == "updated":
        return sorted(views, key=lambda v: v.updated_at, reverse=True)
    return views


_TYPE_ORDER = ("bug", "question", "configuration_change", "extra_request", "feedback")


def _rank(order: tuple[str, ...], value: str) -> int:
    return order.index(value) if value in order else len(order)


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
    zone = app.desk.calendar.zone
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
        f"requester {ticket.requester or '-'} · last changed {at(zone, ticket.updated_at)} "
        f"by {ticket.updated_by}",
        file=out,
    )
    if ticket.fields:
        print(" · ".join(f"{name} {value}" for name, value in ticket.fields), file=out)
    for m in ticket.messages:
        if m.kind == MessageKind.SYSTEM.value and m.direction == "out" and not args.full:
            # mailgate's own notices: one line each (--full prints them whole)
            print(f"--- {at(zone, m.created_at)} sent {m.subject!r} to {', '.join(m.to)}", file=out)
            continue
        print(f"\n--- {at(zone, m.created_at)} {m.kind} {m.from_addr or '-'}", file=out)
        print(m.text, file=out)
        for a in m.attachments:
            print(f"    [attachment] {a.filename} ({a.size} bytes)", file=out)
    return EX_OK


async def change(app: App, args: argparse.Namespace, out: TextIO) -> int:
    """Change fields by the same rules as an agent's commands; mail what the workflow says."""
    number = resolve_ref(app, args.ref)
    commands = field_commands(args.changes)
    if commands is None:
        fields = ", ".join(SET_FIELDS)
        print(f"mailgate: expected FIELD=VALUE with FIELD one of {fields}", file=sys.stderr)
        return EX_USAGE
    actor = (args.author or _login()).lower()
    plan = await change_fields(app, number, commands, actor=actor, source=SERVER_SOURCE)
    if isinstance(plan, Refusal):
        for line in plan.text("en", app.desk.workflow).splitlines():
            print(f"mailgate: {line}", file=sys.stderr)
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
    commands = ["#internal"] if args.command == "note" else []
    taken = await mail_as(app, number, author, body, source=SERVER_SOURCE, commands=commands)
    outcome = taken.outcome
    print_json(
        out,
        {
            "action": taken.action,
            "ticket": ref(outcome.ticket if outcome else number),
            "reason": outcome.reason if outcome else "stored; processed by another worker",
            "spool_id": taken.spool_id,
        },
    )
    await deliver(app)
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
                lambda sync: Tx.on(sync.connection()).history.thread_anchor(number)
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
