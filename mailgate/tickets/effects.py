"""Carry out workflow moves and agents' plans on a ticket, inside the caller's transaction.

Blocking, on the caller's ``Tx``.

The intake worker, the timer scheduler and ``mailgate set`` all change tickets
through here, so a status change always records its event, sets who must act,
re-arms the timers of the new state and sends the transition's template.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import structlog

from mailgate.core.calendar import BusinessCalendar
from mailgate.core.desk import FieldChange, Plan
from mailgate.core.model import ParsedMail, Participant, Role, TicketView
from mailgate.core.notify import Kind
from mailgate.core.sla import (
    SlaClock,
    SlaPolicy,
    alarm_times,
    on_status,
    parse_due,
    status_of,
)
from mailgate.core.workflow import ACTION_BY, Group, Move, Party, Trigger, Workflow, move
from mailgate.ops.metrics import Metrics
from mailgate.outbound.notifier import Change, Notifier
from mailgate.store.repos import Tx
from mailgate.store.repos.history import Event
from mailgate.tickets.sla import SlaKeeper

log = structlog.get_logger("mailgate.desk")


class Desk:
    """Applies moves and plans; the one place where a ticket's status changes."""

    def __init__(
        self,
        *,
        workflow: Workflow,
        calendar: BusinessCalendar,
        notifier: Notifier,
        sla: SlaPolicy,
        metrics: Metrics,
        field_names: frozenset[str] = frozenset(),
    ) -> None:
        self.workflow = workflow
        self.field_names = field_names  # the reference fields of every queue (#field)
        self.calendar = calendar
        self.notifier = notifier
        self.sla = sla
        self.metrics = metrics
        self.sla_keeper = SlaKeeper(
            calendar=calendar, policy=sla, notifier=notifier, metrics=metrics
        )

    def action_by(self, status: str) -> str:
        return ACTION_BY[self.workflow.group(status)]

    def arm(self, tx: Tx, ticket: int, status: str, now: datetime) -> None:
        """Arm the timers of ``status`` for a ticket that just entered it."""
        tx.timers.cancel(ticket, sla=False)
        tx.timers.arm(ticket, status, self._timers(status, now), now)

    def _timers(self, status: str, now: datetime) -> list[tuple[str, datetime]]:
        return [
            (t.fire.value, self.calendar.add(now, t.days, business=t.business))
            for t in self.workflow.timers_for(status)
        ]

    def enter(
        self,
        tx: Tx,
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
        tx.tickets.update(
            ticket,
            {"status": move.new, "action_by": self.action_by(move.new), "status_since": now},
            actor=actor,
            now=now,
        )
        tx.history.add_events(
            [
                Event(
                    ticket,
                    kind="status_changed",
                    actor=actor,
                    at=now,
                    field="status",
                    old=move.old,
                    new=move.new,
                    message_row=message_row,
                    detail=reason,
                )
            ]
        )
        self.arm(tx, ticket, move.new, now)
        clock = on_status(
            tx.timers.sla_clock(ticket),
            self.calendar,
            status=move.new,
            group=self.workflow.group(move.new),
            now=now,
        )
        self.sla_keeper.store(tx, ticket, clock, now)
        log.info("ticket.status_changed", ticket=f"#{ticket}", old=move.old, new=move.new)

    def change_fields(
        self,
        tx: Tx,
        ticket: int,
        changes: tuple[FieldChange, ...],
        *,
        actor: str,
        now: datetime,
        message_row: int | None = None,
    ) -> None:
        if not changes:
            return
        values = {c.field: c.new or (None if c.field == "assignee" else "") for c in changes}
        tx.history.add_events(
            [
                Event(
                    ticket,
                    kind=f"{change.field}_changed",
                    actor=actor,
                    at=now,
                    field=change.field,
                    old=change.old or None,
                    new=change.new or None,
                    message_row=message_row,
                )
                for change in changes
            ]
        )
        tx.tickets.update(ticket, values, actor=actor, now=now)
        if any(c.field in ("type", "priority") for c in changes):
            answer, solve = self.sla_keeper.store(tx, ticket, tx.timers.sla_clock(ticket), now)
            tx.history.add_events(
                [
                    Event(
                        ticket,
                        kind="sla_recomputed",
                        actor=actor,
                        at=now,
                        message_row=message_row,
                        detail=self.sla_keeper.describe(answer, solve, now),
                    )
                ]
            )

    def open(
        self,
        tx: Tx,
        *,
        queue: str,
        title: str,
        type_: str,
        priority: str,
        requester: str | None,
        actor: str,
        now: datetime,
        language: str | None = None,
    ) -> TicketView:
        """A new ticket in the workflow's first status: who acts, its SLA clock started
        (running if support acts first), its timers and alarms armed; as a view.
        ``language``: the customer's, when their first mail told it."""
        status = self.workflow.initial
        clock = on_status(
            SlaClock(), self.calendar, status=status, group=self.workflow.group(status), now=now
        )
        targets = self.sla.for_ticket(type_, priority)
        view = tx.tickets.create(
            queue=queue,
            title=title,
            type_=type_,
            priority=priority,
            status=status,
            requester=requester,
            actor=actor,
            now=now,
            action_by=self.action_by(status),
            sla=clock,
            answer_due=status_of(clock, targets, self.calendar, now, which="answer").due,
            solve_due=status_of(clock, targets, self.calendar, now, which="solve").due,
            language=language,
        )
        alarms = alarm_times(clock, targets, self.calendar, self.sla.warn_at)
        tx.timers.arm(view.number, status, [*self._timers(status, now), *alarms], now)
        return view

    def announce(
        self,
        tx: Tx,
        ticket: int,
        move: Move,
        *,
        now: datetime,
        text: str = "",
        mail: ParsedMail | None = None,
    ) -> None:
        """Send the template ``move`` names, if any, to its audience."""
        if not move.template:
            return
        quote = tx.tickets.quote(ticket)
        change = Change(
            ticket=ticket,
            mail=mail,
            message_text=text,
            old_status=move.old,
            new_status=move.new,
            action=self.customer_action(move.new),
            quote=quote,
        )
        self.notifier.workflow_notice(tx, ticket, Kind(move.template), move.notify, change, now)

    def customer_action(self, status: str) -> str:
        """``status`` when the customer must act in it, else empty (for the templates)."""
        return status if self.workflow.group(status) is Group.CUSTOMER else ""

    def add_people(
        self,
        tx: Tx,
        ticket: int,
        people: Iterable[Participant],
        *,
        actor: str,
        now: datetime,
        message_row: int | None = None,
        known: Iterable[Participant] | None = None,
    ) -> None:
        """Add those not yet on the ticket, each with an event; ``known``: the ticket's
        people as the caller read them in this transaction."""
        added = tx.tickets.add_participants(ticket, people, known)
        tx.history.add_events(
            [
                Event(
                    ticket,
                    kind="participant_added",
                    actor=actor,
                    at=now,
                    field="participants",
                    new=person.address,
                    message_row=message_row,
                )
                for person in added
            ]
        )

    def carry_out(
        self,
        tx: Tx,
        ticket: int,
        plan: Plan,
        *,
        actor: str,
        now: datetime,
        message_row: int | None = None,
    ) -> None:
        """Fields, people, status and merge of a person's plan, and the template its move
        names (unless the plan relays an answer, which carries that news itself); the
        relay and the team's notices are the caller's."""
        fields = tuple(c for c in plan.changes if c.field != "due")
        self.change_fields(tx, ticket, fields, actor=actor, now=now, message_row=message_row)
        for change in plan.changes:
            due = parse_due(change.new, self.calendar, now) if change.field == "due" else None
            if due is not None:
                self.sla_keeper.agree(tx, ticket, due, actor=actor, now=now)
        if plan.cc_add:
            people = [Participant(a, "", Role.CC, a.rpartition("@")[2]) for a in plan.cc_add]
            self.add_people(tx, ticket, people, actor=actor, now=now)
        if plan.cc_remove:
            tx.tickets.remove_participants(ticket, plan.cc_remove)
            tx.history.add_events(
                [
                    Event(
                        ticket,
                        kind="participant_removed",
                        actor=actor,
                        at=now,
                        field="participants",
                        old=address,
                    )
                    for address in plan.cc_remove
                ]
            )
        if plan.move is not None:
            self.enter(
                tx,
                ticket,
                plan.move,
                actor=actor,
                now=now,
                message_row=message_row,
                reason=plan.reason or None,
            )
        if plan.merge_into is not None:
            self._merge(tx, ticket, plan.merge_into, actor=actor, now=now)
        if plan.fields:
            self._set_fields(tx, ticket, dict(plan.fields), actor=actor, now=now)
        if plan.held:
            self.decide_held(tx, ticket, release=plan.held == "release", actor=actor, now=now)
        if plan.move is not None and not plan.relay:
            self.announce(tx, plan.merge_into or ticket, plan.move, now=now)

    def _set_fields(
        self, tx: Tx, ticket: int, values: dict[str, str], *, actor: str, now: datetime
    ) -> None:
        """An agent's ``#field``: the values set, each change an event."""
        known = tx.tickets.fields(ticket)
        changed = {k: v for k, v in values.items() if known.get(k) != v}
        tx.tickets.set_fields(ticket, changed)
        tx.history.add_events(
            [
                Event(ticket, "field_set", actor, now, field=k, old=known.get(k), new=v)
                for k, v in changed.items()
            ]
        )

    def decide_held(self, tx: Tx, ticket: int, *, release: bool, actor: str, now: datetime) -> None:
        """The team's word on the ticket's held mails. Released, each counts as a reply of
        the customer's: its author joins as CC (their next mail is not held) and the status
        moves as a customer's reply moves it. Rejected, each stays aside for good. Either
        way the mail's row stays as it came; an event records the decision."""
        held = tx.history.held(ticket)
        kind = "message_released" if release else "message_rejected"
        tx.history.add_events(
            [Event(ticket, kind, actor, now, message_row=row, old=author) for row, author in held]
        )
        if not release or not held:
            return
        authors = sorted({a for _, a in held if a})
        people = [Participant(a, "", Role.CC, a.rpartition("@")[2]) for a in authors]
        self.add_people(tx, ticket, people, actor=actor, now=now)
        state = tx.tickets.state(ticket)
        found = move(self.workflow, state.status, Trigger.CUSTOMER_REPLY) if state else None
        if found is not None:
            self.enter(tx, ticket, found, actor=actor, now=now, reason="held mail released")

    def _merge(self, tx: Tx, ticket: int, into: int, *, actor: str, now: datetime) -> None:
        """``ticket`` merged into ``into``: its timers stopped, both linked in their logs,
        and it closed as merged (nobody's turn, its SLA stopped) unless closed already."""
        tx.tickets.merge(ticket, into)
        tx.timers.cancel(ticket)
        state, closed = tx.tickets.state(ticket), self.workflow.closed
        open_still = state is not None and self.workflow.group(state.status) not in (
            Group.CLOSED,
            Group.ARCHIVED,
        )
        if state is not None and closed is not None and open_still:
            done = Move(state.status, closed, "", Party.TEAM)
            self.enter(tx, ticket, done, actor=actor, now=now, reason=f"merged into #{into}")
        tx.history.add_events(
            [
                Event(here, kind=kind, actor=actor, at=now, field="links", new=f"#{there}")
                for here, there, kind in (
                    (ticket, into, "merged_into"),
                    (into, ticket, "merged_from"),
                )
            ]
        )
        log.info("ticket.merged", ticket=f"#{ticket}", into=f"#{into}")
