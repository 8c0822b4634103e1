"""The SLA clock's effects on a ticket: its due times saved, its alarms armed, its alerts sent.

Blocking, inside the caller's ``Tx``. The clock's arithmetic is ``core.sla``'s;
here it is stored with its due times, the warnings and breaches still ahead are
re-armed (never one already sent), and an alarm that fires tells the team once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import structlog

from mailgate.core.calendar import BusinessCalendar
from mailgate.core.notify import Kind
from mailgate.core.sla import Due, SlaClock, SlaPolicy, alarm_times, hours, status_of
from mailgate.core.workflow import Party
from mailgate.ops.metrics import Metrics
from mailgate.outbound.notifier import Change, Notifier
from mailgate.store.repos import Tx
from mailgate.store.repos.history import Event

log = structlog.get_logger("mailgate.desk")
SLA_ALERT = "sla_alert"  # the event that records a warning or breach sent (once each)


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaKeeper:
    """Keeps each ticket's SLA clock, due times and alarms in step with what happens."""

    calendar: BusinessCalendar
    policy: SlaPolicy
    notifier: Notifier
    metrics: Metrics

    def store(self, tx: Tx, ticket: int, clock: SlaClock, now: datetime) -> tuple[Due, Due]:
        """Save the clock and its due times; re-arm the warnings and breaches still ahead
        (never one already sent)."""
        status, type_, priority = tx.tickets.rating(ticket)
        targets = self.policy.for_ticket(type_, priority)
        answer = status_of(clock, targets, self.calendar, now, which="answer")
        solve = status_of(clock, targets, self.calendar, now, which="solve")
        tx.timers.sla_save(ticket, clock, answer_due=answer.due, solve_due=solve.due)
        tx.timers.cancel(ticket, sla=True)
        alarms = alarm_times(clock, targets, self.calendar, self.policy.warn_at)
        if alarms:
            sent = tx.history.event_values(ticket, SLA_ALERT)
            alarms = [(trigger, at) for trigger, at in alarms if trigger not in sent]
            tx.timers.arm(ticket, status, alarms, now)
        return answer, solve

    def answered(self, tx: Tx, ticket: int, now: datetime) -> None:
        """The first agent answer relayed to the customer meets the answer target."""
        clock = tx.timers.sla_clock(ticket)
        if clock.answered_at is None:
            self.store(tx, ticket, replace(clock, answered_at=now), now)

    def agree(self, tx: Tx, ticket: int, due: int | datetime, *, actor: str, now: datetime) -> None:
        """An agreed solve target (#due): a business duration from now, or a date."""
        clock = tx.timers.sla_clock(ticket)
        if isinstance(due, datetime):
            clock = replace(clock, fixed_solve_due=due, agreed_solve=None)
        else:
            clock = replace(
                clock, agreed_solve=clock.used(self.calendar, now) + due, fixed_solve_due=None
            )
        answer, solve = self.store(tx, ticket, clock, now)
        tx.history.add_events(
            [
                Event(
                    ticket,
                    kind="sla_recomputed",
                    actor=actor,
                    at=now,
                    field="due",
                    new=solve.due.isoformat() if solve.due else None,
                    detail=self.describe(answer, solve, now),
                )
            ]
        )

    def describe(self, answer: Due, solve: Due, now: datetime) -> str:
        def one(name: str, due: Due) -> str:
            if due.met_at is not None:
                return f"{name} met {due.met_at.astimezone(self.calendar.zone):%Y-%m-%d %H:%M}"
            if due.left is None:
                return f"{name}: no target"
            when = (
                f"due {due.due.astimezone(self.calendar.zone):%Y-%m-%d %H:%M}, "
                if due.due
                else "paused, "
            )
            return f"{name} {when}{hours(due.left)} left"

        return f"{one('answer', answer)}; {one('solve', solve)}"

    def alert(self, tx: Tx, ticket: int, trigger: str, now: datetime) -> int:
        """Tell the team (and the assignee) of a warning or breach, once per ticket and
        threshold; returns 1 when told."""
        if tx.history.event_exists(SLA_ALERT, new=trigger, ticket=ticket):
            return 0
        state = tx.tickets.state(ticket)
        assert state is not None
        clock = tx.timers.sla_clock(ticket)
        targets = self.policy.for_ticket(state.type, state.priority)
        answer = status_of(clock, targets, self.calendar, now, which="answer")
        solve = status_of(clock, targets, self.calendar, now, which="solve")
        reason = self.describe(answer, solve, now)
        tx.history.add_events(
            [Event(ticket, kind=SLA_ALERT, actor="mailgate", at=now, new=trigger, detail=reason)]
        )
        log.warning("sla.alerted", ticket=f"#{ticket}", alert=trigger)
        self.metrics.sla_alerts.labels(alert=trigger.removeprefix("sla_")).inc()
        kind = Kind.TEAM_SLA_BREACH if trigger.endswith("breach") else Kind.TEAM_SLA_WARNING
        change = Change.system(ticket, reason=reason)
        self.notifier.workflow_notice(tx, ticket, kind, Party.TEAM, change, now)
        if state.assignee:
            self.notifier.agent_notice(tx, ticket, kind, change, state.assignee, now)
        return 1
