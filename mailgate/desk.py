"""Carry out workflow moves and agents' plans on a ticket, inside the caller's transaction.

The intake worker, the timer scheduler and ``mailgate set`` all change tickets
through here, so a status change always records its event, sets who must act,
re-arms the timers of the new state and sends the transition's template.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

import structlog

from mailgate.core.calendar import BusinessCalendar
from mailgate.core.classify import DECISIONS, Category
from mailgate.core.desk import FieldChange, Plan
from mailgate.core.model import MessageKind, ParsedMail, Participant, Role
from mailgate.core.notify import Kind
from mailgate.core.sla import (
    DEFAULT_POLICY,
    Due,
    SlaPolicy,
    alarm_times,
    hours,
    on_status,
    parse_due,
    status_of,
)
from mailgate.core.sla import Clock as SlaClock
from mailgate.core.workflow import ACTION_BY, Audience, Group, Move, Workflow
from mailgate.metrics import Metrics
from mailgate.outbound.notifier import Change, Notifier
from mailgate.store.repos import Repo

log = structlog.get_logger("mailgate.desk")
SLA_ALERT = "sla_alert"  # the event that records a warning or breach sent (once each)


class Desk:
    """Applies moves and plans; the one place where a ticket's status changes."""

    def __init__(
        self,
        *,
        workflow: Workflow,
        calendar: BusinessCalendar,
        notifier: Notifier | None,
        sla: SlaPolicy = DEFAULT_POLICY,
        metrics: Metrics | None = None,
    ) -> None:
        self.workflow = workflow
        self.calendar = calendar
        self.notifier = notifier
        self.sla = sla
        self.metrics = metrics

    def action_by(self, status: str) -> str:
        return ACTION_BY[self.workflow.group(status)]

    async def arm(self, repo: Repo, ticket: int, status: str, now: datetime) -> None:
        """Arm the timers of ``status`` for a ticket that just entered it."""
        await repo.timers_cancel(ticket, sla=False)
        await repo.timers_arm(
            ticket,
            status,
            [
                (t.fire.value, self.calendar.add(now, t.days, business=t.business))
                for t in self.workflow.timers_for(status)
            ],
            now,
        )

    async def enter(
        self,
        repo: Repo,
        ticket: int,
        move: Move,
        *,
        actor: str,
        now: datetime,
        message_row: int | None = None,
        reason: str | None = None,
    ) -> None:
        """Record ``move`` when it changes the status: field, who acts, event, timers."""
        if not move.changed:
            return
        await repo.ticket_update(
            ticket,
            {"status": move.new, "action_by": self.action_by(move.new), "status_since": now},
            actor=actor,
            now=now,
        )
        await repo.event_add(
            ticket,
            kind="status_changed",
            actor=actor,
            now=now,
            field="status",
            old=move.old,
            new=move.new,
            message_row_id=message_row,
            detail=reason,
        )
        await self.arm(repo, ticket, move.new, now)
        clock = on_status(
            await repo.sla_clock(ticket),
            self.calendar,
            status=move.new,
            group=self.workflow.group(move.new),
            now=now,
        )
        await self.sla_store(repo, ticket, clock, now)
        log.info("ticket.status_changed", ticket=f"#{ticket}", old=move.old, new=move.new)

    async def change_fields(
        self,
        repo: Repo,
        ticket: int,
        changes: tuple[FieldChange, ...],
        *,
        actor: str,
        now: datetime,
        message_row: int | None = None,
    ) -> None:
        if not changes:
            return
        values: dict[str, object] = {}
        for change in changes:
            values[change.field] = change.new or (None if change.field == "assignee" else "")
            await repo.event_add(
                ticket,
                kind=f"{change.field}_changed",
                actor=actor,
                now=now,
                field=change.field,
                old=change.old or None,
                new=change.new or None,
                message_row_id=message_row,
            )
        await repo.ticket_update(ticket, values, actor=actor, now=now)
        if any(c.field in ("type", "priority") for c in changes):
            answer, solve = await self.sla_store(repo, ticket, await repo.sla_clock(ticket), now)
            await repo.event_add(
                ticket,
                kind="sla_recomputed",
                actor=actor,
                now=now,
                message_row_id=message_row,
                detail=self.describe(answer, solve, now),
            )

    # --- SLA ----------------------------------------------------------------------------

    async def sla_start(self, repo: Repo, ticket: int, status: str, now: datetime) -> None:
        """Start the SLA clock of a new ticket (running if support acts first)."""
        clock = on_status(
            SlaClock(), self.calendar, status=status, group=self.workflow.group(status), now=now
        )
        await self.sla_store(repo, ticket, clock, now)

    async def sla_store(
        self, repo: Repo, ticket: int, clock: SlaClock, now: datetime
    ) -> tuple[Due, Due]:
        """Save the clock and its due times; re-arm the warnings and breaches still ahead
        (never one already sent)."""
        status, type_, priority = await repo.ticket_rating(ticket)
        targets = self.sla.for_ticket(type_, priority)
        answer = status_of(clock, targets, self.calendar, now, which="answer")
        solve = status_of(clock, targets, self.calendar, now, which="solve")
        await repo.sla_save(ticket, clock, answer_due=answer.due, solve_due=solve.due)
        await repo.timers_cancel(ticket, sla=True)
        alarms = alarm_times(clock, targets, self.calendar, self.sla.warn_at)
        if alarms:
            sent = await repo.ticket_event_values(ticket, SLA_ALERT)
            alarms = [(trigger, at) for trigger, at in alarms if trigger not in sent]
            await repo.timers_arm(ticket, status, alarms, now)
        return answer, solve

    async def sla_answered(self, repo: Repo, ticket: int, now: datetime) -> None:
        """The first agent answer relayed to the customer meets the answer target."""
        clock = await repo.sla_clock(ticket)
        if clock.answered_at is None:
            await self.sla_store(repo, ticket, replace(clock, answered_at=now), now)

    async def sla_due(
        self, repo: Repo, ticket: int, due: int | datetime, *, actor: str, now: datetime
    ) -> None:
        """An agreed solve target (#due): a business duration from now, or a date."""
        clock = await repo.sla_clock(ticket)
        if isinstance(due, datetime):
            clock = replace(clock, fixed_solve_due=due, agreed_solve=None)
        else:
            clock = replace(
                clock, agreed_solve=clock.used(self.calendar, now) + due, fixed_solve_due=None
            )
        answer, solve = await self.sla_store(repo, ticket, clock, now)
        await repo.event_add(
            ticket,
            kind="sla_recomputed",
            actor=actor,
            now=now,
            field="due",
            new=solve.due.isoformat() if solve.due else None,
            detail=self.describe(answer, solve, now),
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

    async def sla_alert(self, repo: Repo, ticket: int, trigger: str, now: datetime) -> int:
        """Tell the team (and the assignee) of a warning or breach, once per ticket and
        threshold; returns 1 when told."""
        if await repo.ticket_event_exists(ticket, SLA_ALERT, trigger):
            return 0
        state = await repo.ticket_state(ticket)
        assert state is not None
        clock = await repo.sla_clock(ticket)
        targets = self.sla.for_ticket(state.type, state.priority)
        answer = status_of(clock, targets, self.calendar, now, which="answer")
        solve = status_of(clock, targets, self.calendar, now, which="solve")
        reason = self.describe(answer, solve, now)
        await repo.event_add(
            ticket, kind=SLA_ALERT, actor="mailgate", now=now, new=trigger, detail=reason
        )
        log.warning("sla.alerted", ticket=f"#{ticket}", alert=trigger)
        if self.metrics is not None:
            self.metrics.sla_alerts.labels(alert=trigger.removeprefix("sla_")).inc()
        if self.notifier is None:
            return 1
        kind = Kind.TEAM_SLA_BREACH if trigger.endswith("breach") else Kind.TEAM_SLA_WARNING
        change = Change.system(ticket, reason=reason)
        await self.notifier.workflow_notice(repo, ticket, kind, Audience.TEAM, change, now)
        if state.assignee:
            await self.notifier.agent_notice(repo, ticket, kind, change, state.assignee, now)
        return 1

    async def announce(
        self,
        repo: Repo,
        ticket: int,
        move: Move,
        *,
        now: datetime,
        text: str = "",
        mail: ParsedMail | None = None,
    ) -> None:
        """Send the template ``move`` names, if any, to its audience."""
        if not move.template or self.notifier is None:
            return
        quote = await repo.ticket_quote(ticket)
        change = Change(
            ticket,
            mail,
            False,
            MessageKind.SYSTEM,
            None,
            text,
            DECISIONS[Category.PERSON],
            old_status=move.old,
            new_status=move.new,
            action=self.customer_action(move.new),
            quote=quote,
        )
        await self.notifier.workflow_notice(
            repo, ticket, Kind(move.template), move.notify, change, now
        )

    def customer_action(self, status: str) -> str:
        """``status`` when the customer must act in it, else empty (for the templates)."""
        return status if self.workflow.group(status) is Group.CUSTOMER else ""

    async def add_people(
        self,
        repo: Repo,
        ticket: int,
        people: Iterable[Participant],
        *,
        actor: str,
        now: datetime,
        message_row: int | None = None,
    ) -> None:
        """Add those not yet on the ticket, each with an event."""
        for person in await repo.participants_add(ticket, people):
            await repo.event_add(
                ticket,
                kind="participant_added",
                actor=actor,
                now=now,
                field="participants",
                new=person.address,
                message_row_id=message_row,
            )

    async def carry_out(
        self,
        repo: Repo,
        ticket: int,
        plan: Plan,
        *,
        actor: str,
        now: datetime,
        message_row: int | None = None,
    ) -> None:
        """Fields, people, status and merge of an agent's plan; the relay is the caller's."""
        fields = tuple(c for c in plan.changes if c.field != "due")
        await self.change_fields(
            repo, ticket, fields, actor=actor, now=now, message_row=message_row
        )
        for change in plan.changes:
            due = parse_due(change.new, self.calendar, now) if change.field == "due" else None
            if due is not None:
                await self.sla_due(repo, ticket, due, actor=actor, now=now)
        if plan.cc_add:
            people = [Participant(a, "", Role.CC, a.rpartition("@")[2]) for a in plan.cc_add]
            await self.add_people(repo, ticket, people, actor=actor, now=now)
        if plan.cc_remove:
            await repo.participants_remove(ticket, plan.cc_remove)
            for address in plan.cc_remove:
                await repo.event_add(
                    ticket,
                    kind="participant_removed",
                    actor=actor,
                    now=now,
                    field="participants",
                    old=address,
                )
        if plan.move is not None:
            await self.enter(
                repo,
                ticket,
                plan.move,
                actor=actor,
                now=now,
                message_row=message_row,
                reason=plan.reason or None,
            )
        if plan.merge_into is not None:
            await repo.ticket_merge(ticket, plan.merge_into)
            for here, there, kind in (
                (ticket, plan.merge_into, "merged_into"),
                (plan.merge_into, ticket, "merged_from"),
            ):
                await repo.event_add(
                    here, kind=kind, actor=actor, now=now, field="links", new=f"#{there}"
                )
            log.info("ticket.merged", ticket=f"#{ticket}", into=f"#{plan.merge_into}")
