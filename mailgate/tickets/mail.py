"""Apply one understood mail to the desk and queue the notifications it calls for.

Inside the batch's transaction: create a ticket, thread a reply (carrying out an agent's
plan or a customer's), hold a stranger's or an unproven agent's mail, record a bounce of
ours.

Blocking, on the batch's ``Tx``; the caller holds a savepoint around each mail, so a
failure here leaves nothing of this mail behind and the others of the batch untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import structlog

from mailgate.config import IntakeConfig, QueueConfig
from mailgate.core.address import AddressPolicy
from mailgate.core.commands import read_commands
from mailgate.core.desk import (
    Plan,
    Refusal,
    TicketState,
    plan_customer,
)
from mailgate.core.fields import ReferenceField
from mailgate.core.model import (
    Action,
    Address,
    BounceOfOurs,
    Drop,
    MessageKind,
    NewTicket,
    Participant,
    Reply,
    Role,
    SystemMail,
)
from mailgate.core.notify import Kind, said_language
from mailgate.core.participants import forwarded_author, message_kind, participants, sender
from mailgate.core.privacy import mask_bsn
from mailgate.core.route import route
from mailgate.core.senders import (
    Authority,
    UnknownSender,
    agent_authority,
    authenticated,
    judge_sender,
)
from mailgate.core.submission import KeywordRule, submit
from mailgate.core.workflow import Party
from mailgate.intake.spool import TEAM_SOURCES
from mailgate.outbound.notifier import Change, Notifier
from mailgate.store.repos import Tx
from mailgate.store.repos.history import Event, first_anchor
from mailgate.tickets.agents import plan_commands
from mailgate.tickets.arrival import (
    Arrival,
    Outcome,
    add_message,
    change_of,
    fill_fields,
    limit_notes,
)
from mailgate.tickets.effects import Desk
from mailgate.tickets.holds import bounce, hold, hold_unproven, refuse
from mailgate.tickets.prepare import Prepared

log = structlog.get_logger("mailgate.tickets")


@dataclass(frozen=True, slots=True, kw_only=True)
class Applier:
    """Applies understood mails to tickets; every collaborator given, none optional."""

    desk: Desk
    notifier: Notifier
    policy: AddressPolicy
    queues: dict[str, QueueConfig]
    intake: IntakeConfig
    submission: tuple[KeywordRule, ...]
    suppression_days: float

    def apply(self, tx: Tx, item: Prepared, now: datetime) -> Outcome:
        """Route a claimed mail and apply it; the caller marks its spool row done."""
        evidence = item.evidence
        returned = item.report.original_message_ids if item.report else ()
        lookup = tx.tickets.lookup(evidence.message_ids, evidence.ticket_numbers, returned)
        decision = route(item.mail, evidence, lookup, self.policy, item.classified, returned)
        outcome = self._apply(tx, item, decision, lookup.team_notice(evidence), now)
        if outcome.ticket is not None:
            tx.history.add_events(
                [
                    Event(outcome.ticket, "attachment_skipped", "mailgate", now, detail=note)
                    for note in limit_notes(item.mail, item.skipped)
                ]
            )
        return outcome

    def _apply(
        self,
        tx: Tx,
        item: Prepared,
        decision: NewTicket | Reply | Drop | SystemMail | BounceOfOurs,
        answers_team: str | None,
        now: datetime,
    ) -> Outcome:
        classified = item.classified
        if classified.automatic:
            log.info("mail.automatic", category=classified.category.value, reason=classified.reason)
        if isinstance(decision, Drop):
            return Outcome(item.entry.id, Action.DROPPED, None, decision.reason)
        if isinstance(decision, SystemMail):
            return Outcome(item.entry.id, Action.SYSTEM, None, decision.reason)
        authority = agent_authority(
            item.mail,
            self.policy,
            answers_team=answers_team,
            trusted=self.intake.trusted_authserv_ids,
            on_server=item.entry.source in TEAM_SOURCES,
        )
        kind = MessageKind.AUTO if classified.automatic else message_kind(authority)
        if item.masked:
            log.info("privacy.masked", count=item.masked)
        arrival = Arrival(item, item.shown, item.visible, item.masked, kind, now)
        if isinstance(decision, BounceOfOurs):
            assert item.report is not None
            days = self.suppression_days
            return bounce(tx, self.notifier, arrival, decision, item.report, days)
        if isinstance(decision, NewTicket):
            return self._create(tx, arrival, decision)
        return self._reply(tx, arrival, decision, authority)

    def _reply(self, tx: Tx, arrival: Arrival, decision: Reply, authority: Authority) -> Outcome:
        """A mail on an existing ticket: judged by its sender, planned, then threaded."""
        ticket = decision.ticket
        reason = f"matched by {decision.matched_by} {decision.evidence}"
        # Locked for the rest of the transaction: two changes to one ticket queue up.
        state = tx.tickets.state(ticket, lock=True)
        assert state is not None
        classified = arrival.item.classified
        if classified.automatic:
            reason += f"; {classified.category.value}: {classified.reason}"
        else:
            judged = self._judge(tx, arrival, state, authority, reason)
            if isinstance(judged, Outcome):
                return judged
            reason = judged
        planned = self._plan(tx, arrival, state, reason)
        if isinstance(planned, Outcome):
            return planned
        arrival, plan = planned
        self._thread(tx, arrival, state, plan, reason)
        fields = self.fields_of(tx, ticket) if arrival.kind is MessageKind.CUSTOMER else ()
        fill_fields(tx, ticket, fields, arrival, new=False)
        if plan is not None and plan.reason:
            reason += f"; {plan.reason}"
        log.info("mail.threaded", ticket=f"#{ticket}", matched_by=decision.matched_by)
        return Outcome(arrival.spool_id, Action.APPENDED, ticket, reason)

    def _judge(
        self, tx: Tx, arrival: Arrival, state: TicketState, authority: Authority, reason: str
    ) -> Outcome | str:
        """A person's mail from an address the ticket does not know: held, or a ticket of its
        own, as ``[intake] unknown_sender`` says; else the reason, with the verdict."""
        ticket = state.number
        verdict = judge_sender(sender(arrival.mail), state.participants, authority)
        if verdict.known:
            return reason
        if authority.claimed:
            log.warning("agent.unproven", ticket=f"#{ticket}", reason=verdict.reason)
            return hold_unproven(tx, self.notifier, arrival, ticket, reason, verdict)
        log.warning("sender.unknown", ticket=f"#{ticket}", reason=verdict.reason)
        policy = self.intake.unknown_sender
        reason += f"; {verdict.reason}, policy {policy}"
        if policy == UnknownSender.NEW_TICKET:
            title = arrival.item.evidence.title
            own = NewTicket(arrival.item.evidence.queue, title, f"{reason} (reply to #{ticket})")
            return self._create(tx, arrival, own, linked=ticket)
        if policy == UnknownSender.HOLD:
            return hold(tx, self.notifier, arrival, ticket, reason)
        return reason

    def _plan(
        self, tx: Tx, arrival: Arrival, state: TicketState, reason: str
    ) -> Outcome | tuple[Arrival, Plan | None]:
        """What a person's mail asks for: an agent's commands (refused when bad) or a
        customer's words (a new ticket when the old one is closed for good); none for a
        machine's mail."""
        if arrival.item.classified.automatic:
            return arrival, None
        ticket = state.number
        if arrival.kind is not MessageKind.AGENT:
            plan = plan_customer(
                self.desk.workflow, state, arrival.text, author=sender(arrival.mail)
            )
            if not plan.new_ticket:
                return arrival, plan
            evidence = arrival.item.evidence
            own = NewTicket(evidence.queue, evidence.title, f"{reason}; {plan.reason}")
            return self._create(tx, arrival, own, linked=ticket)
        block = read_commands(arrival.text)
        agent_plan = plan_commands(
            tx, self.desk, self.policy, state, block, author=arrival.author, now=arrival.now
        )
        if isinstance(agent_plan, Refusal):
            workflow = self.desk.workflow
            return refuse(tx, self.notifier, workflow, arrival, ticket, agent_plan, reason)
        kind = arrival.kind if agent_plan.relay else MessageKind.NOTE
        return replace(arrival, text=agent_plan.text, kind=kind), agent_plan

    def _thread(
        self, tx: Tx, arrival: Arrival, state: TicketState, plan: Plan | None, reason: str
    ) -> None:
        """Put the mail on the thread with its new participants, then carry out its plan
        (or, for a machine's mail, only tell whom the notifier says)."""
        ticket, now = state.number, arrival.now
        row = add_message(tx, ticket, arrival)
        self.desk.add_people(
            tx,
            ticket,
            participants(arrival.mail, self.policy, new_ticket=False),
            actor=arrival.author,
            now=now,
            message_row=row,
            known=state.participants,
        )
        tx.history.add_events(
            [Event(ticket, "message_added", arrival.author, now, message_row=row, detail=reason)]
        )
        if plan is not None:  # a machine's mail is kept on the ticket, never moves it
            tx.tickets.touch(ticket, actor=arrival.author, now=now)
        self._privacy(tx, ticket, arrival, row)
        if plan is None:
            self.notifier.after(tx, change_of(arrival, ticket), now)
        else:
            self._carry_out(tx, ticket, arrival, plan, row)

    def _carry_out(self, tx: Tx, ticket: int, arrival: Arrival, plan: Plan, row: int) -> None:
        """Apply a person's plan and send what it calls for: the relay of an agent's answer
        (which carries the news of a status change), or else the transition's template;
        the team hears of a customer's reply; other agents of a note."""
        now = arrival.now
        actor = arrival.author
        self.desk.carry_out(tx, ticket, plan, actor=actor, now=now, message_row=row)
        target = plan.merge_into or ticket
        if arrival.kind is MessageKind.CUSTOMER:
            self.notifier.after(tx, replace(change_of(arrival, target), author=actor), now)
        elif plan.relay:
            self.desk.sla_keeper.answered(tx, target, now)
            action = self.desk.customer_action(plan.move.new) if plan.move else ""
            change = replace(
                change_of(arrival, target),
                author=actor,
                action=action,
                quote=tx.tickets.quote(target),
            )
            self.notifier.after(tx, change, now)
        if plan.internal and plan.text.strip():
            note = replace(change_of(arrival, target), author=actor)
            self.notifier.workflow_notice(tx, target, Kind.TEAM_NOTE, Party.TEAM, note, now)
        if plan.help:
            help_ = Change.system(target, help=True)
            self.notifier.agent_notice(tx, target, Kind.COMMAND_HELP, help_, actor, now)

    def _create(
        self, tx: Tx, arrival: Arrival, decision: NewTicket, linked: int | None = None
    ) -> Outcome:
        now = arrival.now
        queue = self.queues[decision.queue]
        requester = sender(arrival.mail)
        forwarded = self._forwarded(arrival)
        if requester is not None and self.policy.is_agent(requester):
            requester = forwarded.email if forwarded else None
        submitted = submit(
            mask_bsn(decision.title)[0],
            arrival.text,
            self.submission,
            default_type=queue.default_type,
            default_priority=queue.default_priority,
        )
        opened = self.desk.open(
            tx,
            queue=decision.queue,
            title=submitted.title,
            type_=submitted.type,
            priority=submitted.priority,
            requester=requester,
            actor=arrival.author,
            now=now,
            language=said_language(arrival.mail),
        )
        ticket = opened.number
        row = add_message(tx, ticket, arrival)
        people = tx.tickets.add_participants(ticket, self._people(arrival, forwarded), known=())
        events = [
            Event(
                ticket,
                "created",
                arrival.author,
                now,
                message_row=row,
                new=self.desk.workflow.initial,
                detail=f"{decision.reason}; {submitted.type}/{submitted.priority} from "
                f"{submitted.reason}"
                + (f"; forwarded by {arrival.author}, for {forwarded.email}" if forwarded else ""),
            )
        ]
        tx.history.add_events(events + (_links(ticket, linked, now) if linked else []))
        self._privacy(tx, ticket, arrival, row)
        missing = fill_fields(tx, ticket, queue.fields, arrival, new=True)
        change = replace(
            change_of(arrival, ticket),
            new_ticket=True,
            asked_priority=submitted.asked_priority,
            forwarded=forwarded is not None,
            missing_fields=missing,
        )
        view = replace(opened, participants=tuple(people))
        anchor = first_anchor(arrival.mail, arrival.kind.value)
        self.notifier.after(tx, change, now, view=view, anchor=anchor)
        log.info("ticket.created", ticket=f"#{ticket}", queue=decision.queue)
        return Outcome(arrival.spool_id, Action.CREATED, ticket, decision.reason)

    def fields_of(self, tx: Tx, ticket: int) -> tuple[ReferenceField, ...]:
        """The reference fields of the ticket's queue (none read when no queue has any)."""
        if not any(q.fields for q in self.queues.values()):
            return ()
        view = tx.tickets.view(ticket)
        queue = self.queues.get(view.queue) if view is not None else None
        return queue.fields if queue is not None else ()

    def _people(self, arrival: Arrival, forwarded: Address | None) -> tuple[Participant, ...]:
        """A new ticket's people; first, for an agent's forward, the customer who asks."""
        found = participants(arrival.mail, self.policy, new_ticket=True)
        if forwarded is None:
            return found
        domain = forwarded.email.rpartition("@")[2]
        return (Participant(forwarded.email, forwarded.name, Role.REQUESTER, domain), *found)

    def _forwarded(self, arrival: Arrival) -> Address | None:
        """The customer whose mail an agent forwarded to open a ticket for them (``[intake]
        forwarded_requester``), where the desk trusts the agent's From: its receiving
        servers vouch for it when ``trusted_authserv_ids`` is set."""
        mail = arrival.mail
        author = sender(mail)
        if not self.intake.forwarded_requester or author is None or mail.from_count != 1:
            return None
        if not self.policy.is_agent(author) or arrival.item.classified.automatic:
            return None
        trusted = self.intake.trusted_authserv_ids
        if trusted and authenticated(mail, trusted) is None:
            return None
        return forwarded_author(mail, self.policy)

    def _privacy(self, tx: Tx, ticket: int, arrival: Arrival, row: int) -> None:
        """Record masked BSN numbers; tell a customer once, ever, not to send them."""
        if not arrival.masked:
            return
        author = sender(arrival.mail)
        now = arrival.now
        detail = f"{arrival.masked} BSN number(s) masked in the stored text"
        events = [
            Event(ticket, "privacy_masked", arrival.author, now, message_row=row, detail=detail)
        ]
        if (
            arrival.kind is MessageKind.CUSTOMER
            and author is not None
            and not tx.history.event_exists("privacy_told", new=author.lower())
        ):
            self.notifier.customer_notice(
                tx, ticket, Kind.PRIVACY_NOTICE, author, arrival.mail, now
            )
            events.append(Event(ticket, "privacy_told", "mailgate", now, new=author.lower()))
        tx.history.add_events(events)


def _links(ticket: int, linked: int, now: datetime) -> list[Event]:
    """A new ticket and the one it was opened from, each pointing at the other."""
    return [
        Event(here, "linked", "mailgate", now, field="links", new=f"#{there}")
        for here, there in ((ticket, linked), (linked, ticket))
    ]
