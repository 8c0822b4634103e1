"""``mailgate sla``: open tickets by nearest deadline, and the arithmetic of one."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any, TextIO

from mailgate.app import App
from mailgate.cli.output import EX_OK, at, print_json
from mailgate.cli.service import resolve_ref
from mailgate.core.model import TicketView
from mailgate.core.sla import Due, SlaClock, hours, status_of
from mailgate.errors import NotFound
from mailgate.store.db import session, storage_errors
from mailgate.store.repos import Repo


def local(app: App, when: datetime | None) -> str:
    return at(app.desk.calendar.zone, when)


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
    if not rows:
        print("no open deadlines", file=out)
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
    _history(app, view, out)
    _used(app, clock, now, out)
    for which in ("answer", "solve"):
        _due(app, clock, status_of(clock, targets, cal, now, which=which), which, now, out)
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


def _history(app: App, view: TicketView, out: TextIO) -> None:
    """When the clock ran and paused, and when it was recomputed or raised an alarm."""
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


def _used(app: App, clock: SlaClock, now: datetime, out: TextIO) -> None:
    used = clock.used(app.desk.calendar, now)
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


def _due(app: App, clock: SlaClock, due: Due, which: str, now: datetime, out: TextIO) -> None:
    """One target: met, or the time left and the office hours it will take, window by window."""
    cal = app.desk.calendar
    if due.met_at is not None:
        print(f"{which}: met {local(app, due.met_at)}", file=out)
        return
    if due.left is None:
        print(f"{which}: no target", file=out)
        return
    print(f"{which}: {hours(due.left)} left; due {local(app, due.due)}", file=out)
    if due.due is None or clock.running_since is None:
        return
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
