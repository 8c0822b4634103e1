"""Carry out workflow moves and agents' plans on a ticket, inside the caller's transaction.

The intake worker, the timer scheduler and ``mailgate set`` all change tickets
through here, so a status change always records its event, sets who must act,
re-arms the timers of the new state and sends the transition's template.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import structlog

from mailgate.core.calendar import BusinessCalendar
from mailgate.core.classify import DECISIONS, Category
from mailgate.core.desk import FieldChange, Plan
from mailgate.core.model import MessageKind, ParsedMail, Participant, Role
from mailgate.core.notify import Kind
from mailgate.core.workflow import ACTION_BY, Group, Move, Workflow
from mailgate.outbound.notifier import Change, Notifier
from mailgate.store.repos import Repo

log = structlog.get_logger("mailgate.desk")


class Desk:
    """Applies moves and plans; the one place where a ticket's status changes."""

    def __init__(
        self, *, workflow: Workflow, calendar: BusinessCalendar, notifier: Notifier | None
    ) -> None:
        self.workflow = workflow
        self.calendar = calendar
        self.notifier = notifier

    def action_by(self, status: str) -> str:
        return ACTION_BY[self.workflow.group(status)]

    async def arm(self, repo: Repo, ticket: int, status: str, now: datetime) -> None:
        """Arm the timers of ``status`` for a ticket that just entered it."""
        await repo.timers_cancel(ticket)
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
        await self.change_fields(
            repo, ticket, plan.changes, actor=actor, now=now, message_row=message_row
        )
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
