"""Timers fired by the scheduler: SLA warnings and breaches, once, across restarts.

The clock is frozen at Monday 5 January 2026, 10:00 in Amsterdam. A critical bug
must be answered within 24 business hours and solved within 2 business days
(17 office hours): the solve warning falls on Tuesday 15:06, the solve breach on
Wednesday 10:00, the answer warning on Wednesday 12:12, the answer breach on
Wednesday 17:00.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from mailgate.cli.sla import sla as _sla
from mailgate.clock import FrozenClock
from mailgate.core.model import Action
from tests.mails import make_mail
from tests.tickets.test_effects import AGENT, TEAM, view
from tests.world import World


def subjects(mails: list[Any]) -> list[str]:
    return [str(m["Subject"]).split(":")[0] for m in mails]


async def sla_rows(app: Any) -> list[dict[str, Any]]:
    """What ``mailgate sla --json`` prints."""
    out = io.StringIO()
    await _sla(app, argparse.Namespace(json=True, explain=None), out)
    return list(json.loads(out.getvalue()))


async def test_warnings_and_breaches_are_sent_once_across_a_restart(
    desk: Any, clock: FrozenClock
) -> None:
    app = await desk()
    world = World(app)
    outcome = await world.send(make_mail(subject="[bug] [kritiek] Niemand kan inloggen"))
    assert outcome.ticket is not None
    ack = await world.only("alice@customer.nl")
    # KampAdmin's critical bug: answer within one working day, solve within two.
    assert "binnen 1 werkdag" in World.text(ack)
    notice = await world.only(TEAM)
    await world.send(World.answer(notice, sender=AGENT, body="#assign me"))

    # Monday 10:00 local + 80 % of 8.5 office hours: the answer warning at 16:48.
    clock.current = datetime(2026, 1, 6, 8, 30, tzinfo=UTC)  # Tuesday 09:30 local
    assert await app.scheduler.run_due() == 1
    assert subjects(await world.inbox(TEAM)) == ["SLA-waarschuwing"]
    assert subjects(await world.inbox(AGENT)) == ["SLA-waarschuwing"]
    await app.close()

    again = await desk()  # restart
    assert await again.scheduler.run_due() == 0
    clock.current = datetime(2026, 1, 6, 11, 0, tzinfo=UTC)  # Tuesday 12:00 local
    other = await desk()  # a second instance on the same database
    fired = await asyncio.gather(again.scheduler.run_due(), other.scheduler.run_due())
    assert sum(fired) == 1  # the answer breach (Tuesday 10:00), once
    world = World(again)  # reads the maildir from the start: every mail the team ever got
    team = subjects(await world.inbox(TEAM))
    assert sorted(team) == ["Nieuw ticket", "SLA overschreden", "SLA-waarschuwing"]
    clock.advance(timedelta(days=1))  # Wednesday 12:00: solve warning and breach (10:00)
    assert await again.scheduler.run_due() == 2
    assert await other.scheduler.run_due() == 0
    ticket = await view(again, outcome.ticket)
    alerts = sorted(e.new or "" for e in ticket.events if e.kind == "sla_alert")
    assert alerts == [
        "sla_answer_breach",
        "sla_answer_warning",
        "sla_solve_breach",
        "sla_solve_warning",
    ]


async def test_an_answer_meets_the_answer_target_and_waiting_pauses_the_solve_clock(
    desk: Any, clock: FrozenClock
) -> None:
    app = await desk()
    world = World(app)
    outcome = await world.send(make_mail(subject="[bug] [kritiek] Export kapot"))
    assert outcome.ticket is not None
    await world.inbox("alice@customer.nl")
    notice = await world.only(TEAM)
    clock.advance(timedelta(hours=2))
    await world.send(World.answer(notice, sender=AGENT, body="Welke browser gebruikt u?"))
    ticket = await view(app, outcome.ticket)
    assert ticket.status == "waiting_customer"
    # The customer takes a week to answer: a reminder, but no SLA alarm while they must act.
    clock.current = datetime(2026, 1, 12, 8, 0, tzinfo=UTC)
    assert await app.scheduler.run_due() == 1
    assert not [e for e in (await view(app, outcome.ticket)).events if e.kind == "sla_alert"]
    assert await world.inbox(TEAM) == []
    reminded = await world.inbox("alice@customer.nl")
    assert subjects(reminded)[1:] == ["Herinnering"]  # after the relayed answer
    rows = await sla_rows(app)
    assert [(r["target"], r["paused"], r["left_hours"]) for r in rows] == [
        ("solve", True, 15.0)  # 17 h - the 2 h before the answer
    ]
    relayed = reminded[0]
    await world.send(World.answer(relayed, sender="alice@customer.nl", body="Firefox."))
    (row,) = await sla_rows(app)
    # 15 h from Monday 09:00 local: Monday 8.5 h, Tuesday 6.5 h -> 15:30 local.
    assert (row["paused"], row["due"]) == (False, "2026-01-13T14:30:00+00:00")


async def test_a_priority_change_recomputes_the_deadlines(desk: Any, clock: FrozenClock) -> None:
    app = await desk()
    world = World(app)
    outcome = await world.send(make_mail(subject="Hoe exporteer ik naar Excel?"))
    assert outcome.ticket is not None
    notice = await world.only(TEAM)
    before = {r["target"]: r["left_hours"] for r in await sla_rows(app)}
    assert before == {"answer": 85.0, "solve": 178.5}  # question/medium: 2 weeks, 1 month
    clock.advance(timedelta(hours=1))
    await world.send(World.answer(notice, sender=AGENT, body="#prioriteit kritiek\n#intern\nBaas"))
    after = {r["target"]: r["left_hours"] for r in await sla_rows(app)}
    assert after == {"answer": 16.0, "solve": 41.5}  # critical: 2 days, 5 days; 1 h used
    ticket = await view(app, outcome.ticket)
    assert any(e.kind == "sla_recomputed" for e in ticket.events)


async def test_to_agree_is_set_by_due_and_listed_breached_first(
    desk: Any, clock: FrozenClock
) -> None:
    app = await desk()
    world = World(app)
    wish = await world.send(make_mail(subject="[meerwerk] Nieuw rapport"))
    bug = await world.send(make_mail(subject="[bug] [kritiek] Alles plat", sender="c@other.nl"))
    assert wish.action is Action.CREATED and wish.ticket and bug.ticket
    await world.inbox("alice@customer.nl")
    notices = await world.inbox(TEAM)
    wish_notice = next(m for m in notices if "rapport" in str(m["Subject"]))
    refused = await world.send(World.answer(wish_notice, sender=AGENT, body="#due gisteren"))
    assert "commands refused" in refused.reason
    await world.send(
        World.answer(wish_notice, sender=AGENT, body="#termijn 2026-01-16\n#intern\nx")
    )
    clock.current = datetime(2026, 1, 8, 12, 0, tzinfo=UTC)
    rows = [(r["ticket"], r["target"], r["breached"]) for r in await sla_rows(app)]
    # Most overdue first: the answer (one working day) before the solve target (two).
    assert rows[:2] == [(f"#{bug.ticket}", "answer", True), (f"#{bug.ticket}", "solve", True)]
    assert (f"#{wish.ticket}", "solve", False) in rows
    text = io.StringIO()
    await _sla(app, argparse.Namespace(json=False, explain=f"#{bug.ticket}"), text)
    explained = text.getvalue()
    assert "a day is one business day (8.5 h, 09:00-17:30)" in explained
    assert "bug/critical answer target: 1 day(s) = 8.5 h" in explained
    assert "Created Mon 2026-01-05 10:00 CET." in explained  # the zone named, as in show
