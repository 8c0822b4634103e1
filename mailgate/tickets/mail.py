"""Apply one understood mail to the desk and queue the notifications it calls for.

Inside the batch's transaction: create a ticket, thread a reply (carrying out an agent's
plan or a customer's), hold a stranger's or an unproven agent's mail, record a bounce of
ours.

Blocking, on the batch's ``Tx``; the caller holds a savepoint around each mail, so a
failure here leaves nothing of this mail behind and the others of the batch untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import structlog

from mailgate.config import IntakeConfig, QueueConfig
from mailgate.core.address import AddressPolicy
from mailgate.core.bounces import DeliveryReport
from mailgate.core.commands import Verb, read_commands
from mailgate.core.desk import (
    Plan,
    Refusal,
    command_reference,
    plan_agent,
    plan_customer,
    ticket_ref,
)
from mailgate.core.model import (
    Action,
    Attachment,
    BounceReport,
    Drop,
    MessageKind,
    NewTicket,
    ParsedMail,
    Reply,
    SystemMail,
)
from mailgate.core.notify import Kind
from mailgate.core.participants import message_kind, participants, sender
from mailgate.core.privacy import mask_bsn
from mailgate.core.route import route
from mailgate.core.senders import SenderVerdict, UnknownSender, agent_authority, judge_sender
from mailgate.core.submission import KeywordRule, submit
from mailgate.core.text import sanitize_html, visible_reply
from mailgate.core.workflow import Party
from mailgate.intake.spool import SERVER_SOURCE
from mailgate.outbound.notifier import Change, Notifier
from mailgate.store.repos import Tx
from mailgate.store.repos.tickets import Event
from mailgate.tickets.effects import Desk
from mailgate.tickets.prepare import Prepared

log = structlog.get_logger("mailgate.tickets")
NOTED_SKIPS = 10  # skipped attachments named one by one on the ticket
NOBODY = "unknown sender"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one spool item."""

    spool_id: int
    action: Action
    ticket: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Arrival:
    """One mail on its way through ``Applier``: what it is and what it says, for display."""

    item: Prepared
    mail: ParsedMail  # BSN numbers masked, HTML sanitised
    text: str  # the visible reply text
    masked: int  # BSN numbers masked
    kind: MessageKind
    now: datetime

    @property
    def spool_id(self) -> int:
        return self.item.entry.id

    @property
    def author(self) -> str:
        return sender(self.mail) or NOBODY


def for_display(mail: ParsedMail) -> tuple[ParsedMail, int]:
    """The mail as it is stored for display: BSN numbers masked in its text and HTML, the
    HTML sanitised; and how many BSN numbers there were."""
    text, in_text = mask_bsn(mail.text)
    html, in_html = mask_bsn(mail.html) if mail.html is not None else (None, 0)
    if in_text or in_html:
        log.info("privacy.masked", count=max(in_text, in_html))
    return (
        replace(mail, text=text, html=sanitize_html(html) if html is not None else None),
        max(in_text, in_html),
    )


def limit_notes(mail: ParsedMail, skipped: tuple[Attachment, ...]) -> list[str]:
    """What the ticket should say about the parts of a mail it does not show: a line per
    skipped attachment (a handful at most, then a count), and the parts never read."""
    notes = [
        f"{item.filename} ({item.size} bytes) is over a limit; it is kept in the raw mail only"
        for item in skipped[:NOTED_SKIPS]
    ]
    if len(skipped) > NOTED_SKIPS:
        notes.append(
            f"and {len(skipped) - NOTED_SKIPS} more attachments over the limits; "
            "they are kept in the raw mail only"
        )
    if mail.parts_skipped:
        notes.append(
            f"{mail.parts_skipped} more MIME parts than [intake] max_parts were not read; "
            "the raw mail keeps them all"
        )
    return notes


def failed_recipients(report: DeliveryReport, sent_to: tuple[str, ...]) -> tuple[str, ...]:
    """The addresses of our mail that the report says failed; a report that names none of
    them concerns the only recipient, if the mail had one."""
    ours = {a.lower() for a in sent_to}
    named = tuple(a for a in report.recipients if a in ours)
    if named:
        return named
    return tuple(ours) if len(ours) == 1 else ()


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
            tx.tickets.add_events(
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
        decision: NewTicket | Reply | Drop | SystemMail | BounceReport,
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
            on_server=item.entry.source == SERVER_SOURCE,
        )
        kind = MessageKind.AUTO if classified.automatic else message_kind(authority)
        mail, masked = for_display(item.mail)
        arrival = Arrival(item, mail, visible_reply(mail), masked, kind, now)
        if isinstance(decision, BounceReport):
            assert item.report is not None
            return self._bounce(tx, arrival, decision, item.report)
        if isinstance(decision, NewTicket):
            return self._create(tx, arrival, decision)
        ticket = decision.ticket
        reason = f"matched by {decision.matched_by} {decision.evidence}"
        # Locked for the rest of the transaction: two changes to one ticket queue up.
        state = tx.tickets.state(ticket, lock=True)
        assert state is not None
        if classified.automatic:
            reason += f"; {classified.category.value}: {classified.reason}"
        else:
            verdict = judge_sender(sender(mail), state.participants, authority)
            if not verdict.known and authority.claimed:
                log.warning("agent.unproven", ticket=f"#{ticket}", reason=verdict.reason)
                return self._hold_unproven(tx, arrival, ticket, reason, verdict)
            if not verdict.known:
                log.warning("sender.unknown", ticket=f"#{ticket}", reason=verdict.reason)
                policy = self.intake.unknown_sender
                reason += f"; {verdict.reason}, policy {policy}"
                if policy == UnknownSender.NEW_TICKET:
                    title = item.evidence.title
                    own = NewTicket(item.evidence.queue, title, f"{reason} (reply to #{ticket})")
                    return self._create(tx, arrival, own, linked=ticket)
                if policy == UnknownSender.HOLD:
                    return self._hold(tx, arrival, ticket, reason)
        plan: Plan | None = None
        if not classified.automatic and kind is MessageKind.AGENT:
            block = read_commands(arrival.text)
            refs = [
                r for c in block.commands if c.verb is Verb.MERGE and (r := ticket_ref(c.argument))
            ]
            agent_plan = plan_agent(
                self.desk.workflow,
                state,
                block,
                author=arrival.author,
                policy=self.policy,
                existing=tx.tickets.existing(refs),
                calendar=self.desk.calendar,
                now=now,
            )
            if isinstance(agent_plan, Refusal):
                return self._refuse(tx, arrival, ticket, agent_plan, reason)
            plan = agent_plan
            arrival = replace(
                arrival, text=plan.text, kind=kind if plan.relay else MessageKind.NOTE
            )
        elif not classified.automatic:
            plan = plan_customer(self.desk.workflow, state, arrival.text, author=sender(mail))
            if plan.new_ticket:
                own = NewTicket(
                    item.evidence.queue, item.evidence.title, f"{reason}; {plan.reason}"
                )
                return self._create(tx, arrival, own, linked=ticket)
        row = self._add_message(tx, ticket, arrival)
        self.desk.add_people(
            tx,
            ticket,
            participants(mail, self.policy, new_ticket=False),
            actor=arrival.author,
            now=now,
            message_row=row,
            known=state.participants,
        )
        events = [
            Event(ticket, "message_added", arrival.author, now, message_row=row, detail=reason)
        ]
        tx.tickets.add_events(events)
        if not classified.automatic:  # a machine's mail is kept on the ticket, never moves it
            tx.tickets.touch(ticket, actor=arrival.author, now=now)
        self._privacy(tx, ticket, arrival, row)
        if plan is None:
            self.notifier.after(tx, self._change(arrival, ticket), now)
        else:
            self._carry_out(tx, ticket, arrival, plan, row)
            if plan.reason:
                reason += f"; {plan.reason}"
        log.info("mail.threaded", ticket=f"#{ticket}", matched_by=decision.matched_by)
        return Outcome(arrival.spool_id, Action.APPENDED, ticket, reason)

    def _change(self, arrival: Arrival, ticket: int) -> Change:
        return Change(
            ticket=ticket,
            mail=arrival.mail,
            kind=arrival.kind,
            author=sender(arrival.mail),
            message_text=arrival.text,
            decisions=arrival.item.classified.decisions,
        )

    def _carry_out(self, tx: Tx, ticket: int, arrival: Arrival, plan: Plan, row: int) -> None:
        """Apply a person's plan and send what it calls for: the relay of an agent's answer
        (which carries the news of a status change), or else the transition's template;
        the team hears of a customer's reply; other agents of a note."""
        now = arrival.now
        actor = arrival.author
        self.desk.carry_out(tx, ticket, plan, actor=actor, now=now, message_row=row)
        target = plan.merge_into or ticket
        if arrival.kind is MessageKind.CUSTOMER:
            self.notifier.after(tx, replace(self._change(arrival, target), author=actor), now)
        elif plan.relay:
            self.desk.sla_answered(tx, target, now)
            action = self.desk.customer_action(plan.move.new) if plan.move else ""
            change = replace(
                self._change(arrival, target),
                author=actor,
                action=action,
                quote=tx.tickets.quote(target),
            )
            self.notifier.after(tx, change, now)
        if plan.internal and plan.text.strip():
            note = replace(self._change(arrival, target), author=actor)
            self.notifier.workflow_notice(tx, target, Kind.TEAM_NOTE, Party.TEAM, note, now)
        if plan.move is not None and not plan.relay:
            self.desk.announce(tx, target, plan.move, now=now, text="", mail=None)
        if plan.help:
            commands = command_reference(self.desk.workflow)
            help_ = Change.system(target, commands=commands)
            self.notifier.agent_notice(tx, target, Kind.COMMAND_HELP, help_, actor, now)

    def _refuse(
        self, tx: Tx, arrival: Arrival, ticket: int, refusal: Refusal, reason: str
    ) -> Outcome:
        """An agent's message with a bad command: kept as a note, nothing changed or relayed;
        the agent is told what was wrong and what is allowed."""
        errors = "\n".join(refusal.errors)
        arrival = replace(arrival, kind=MessageKind.NOTE)
        row = self._add_message(tx, ticket, arrival)
        tx.tickets.add_events(
            [
                Event(
                    ticket,
                    "command_failed",
                    arrival.author,
                    arrival.now,
                    message_row=row,
                    detail=errors[:1000],
                )
            ]
        )
        told = Change.system(ticket, reason=errors, commands=command_reference(self.desk.workflow))
        self.notifier.agent_notice(
            tx, ticket, Kind.COMMAND_FAILED, told, arrival.author, arrival.now
        )
        log.warning("command.refused", ticket=f"#{ticket}", errors=len(refusal.errors))
        return Outcome(
            arrival.spool_id, Action.APPENDED, ticket, f"{reason}; commands refused: {errors}"
        )

    def _create(
        self, tx: Tx, arrival: Arrival, decision: NewTicket, linked: int | None = None
    ) -> Outcome:
        now = arrival.now
        queue = self.queues[decision.queue]
        requester = sender(arrival.mail)
        submitted = submit(
            decision.title,
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
            requester=requester if requester and not self.policy.is_agent(requester) else None,
            actor=arrival.author,
            now=now,
        )
        ticket = opened.number
        row = self._add_message(tx, ticket, arrival)
        people = tx.tickets.add_participants(
            ticket, participants(arrival.mail, self.policy, new_ticket=True), known=()
        )
        events = [
            Event(
                ticket,
                "created",
                arrival.author,
                now,
                message_row=row,
                new=self.desk.workflow.initial,
                detail=f"{decision.reason}; {submitted.type}/{submitted.priority} from "
                f"{submitted.reason}",
            )
        ]
        if linked is not None:
            events += [
                Event(here, "linked", "mailgate", now, field="links", new=f"#{there}")
                for here, there in ((ticket, linked), (linked, ticket))
            ]
        tx.tickets.add_events(events)
        self._privacy(tx, ticket, arrival, row)
        change = replace(
            self._change(arrival, ticket), new_ticket=True, asked_priority=submitted.asked_priority
        )
        self.notifier.after(tx, change, now, view=replace(opened, participants=tuple(people)))
        log.info("ticket.created", ticket=f"#{ticket}", queue=decision.queue)
        return Outcome(arrival.spool_id, Action.CREATED, ticket, decision.reason)

    def _hold(self, tx: Tx, arrival: Arrival, ticket: int, reason: str) -> Outcome:
        """A stranger's reply: kept on the ticket, relayed to nobody; the team decides."""
        row = self._add_message(tx, ticket, replace(arrival, kind=MessageKind.HELD))
        tx.tickets.add_events(
            [
                Event(
                    ticket,
                    "message_held",
                    arrival.author,
                    arrival.now,
                    message_row=row,
                    detail=reason,
                )
            ]
        )
        self.notifier.team_notice(tx, ticket, Kind.TEAM_HELD, reason, arrival.now)
        return Outcome(arrival.spool_id, Action.HELD, ticket, reason)

    def _hold_unproven(
        self, tx: Tx, arrival: Arrival, ticket: int, reason: str, verdict: SenderVerdict
    ) -> Outcome:
        """A mail from an agent's address that does not prove it is the team's: held like a
        stranger's reply (nothing carried out, nothing relayed, nobody added), the team told
        why, and the agent told once per ticket how to act, in case it was really them."""
        reason = f"{reason}; {verdict.reason}; held: not proven to be the team's"
        outcome = self._hold(tx, arrival, ticket, reason)
        agent = sender(arrival.mail)
        if agent is None or arrival.mail.from_count != 1:
            return outcome
        told = f"#{ticket} {agent.lower()}"
        if tx.tickets.event_exists("agent_told", new=told):
            return outcome
        now = arrival.now
        change = Change.system(ticket, reason=verdict.reason)
        self.notifier.agent_notice(tx, ticket, Kind.AGENT_UNPROVEN, change, agent.lower(), now)
        tx.tickets.add_events([Event(ticket, "agent_told", "mailgate", now, new=told)])
        return outcome

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
            and not tx.tickets.event_exists("privacy_told", new=author.lower())
        ):
            self.notifier.customer_notice(
                tx, ticket, Kind.PRIVACY_NOTICE, author, arrival.mail, now
            )
            events.append(Event(ticket, "privacy_told", "mailgate", now, new=author.lower()))
        tx.tickets.add_events(events)

    def _bounce(
        self, tx: Tx, arrival: Arrival, decision: BounceReport, report: DeliveryReport
    ) -> Outcome:
        """A bounce of one of our mails: kept on its ticket as system mail, with an event."""
        now = arrival.now
        item = tx.outbox.get(decision.outbox)
        failed = ", ".join(report.recipients) or (", ".join(item.recipients) if item else "?")
        what = f"{report.status or 'no status'}" + (
            f" {report.diagnostic}" if report.diagnostic else ""
        )
        reason = (
            f"notification {decision.outbox} to {failed} failed "
            f"({'permanently' if report.permanent else 'for now'}): {what}"
        )[:1000]
        log.warning(
            "mail.bounce",
            outbox_id=decision.outbox,
            matched_by=decision.matched_by,
            status=report.status,
            permanent=report.permanent,
        )
        if item is None or item.ticket is None:
            return Outcome(arrival.spool_id, Action.BOUNCE, None, reason)
        system = replace(arrival, kind=MessageKind.SYSTEM, text=visible_reply(arrival.mail))
        row = self._add_message(tx, item.ticket, system)
        tx.tickets.add_events(
            [Event(item.ticket, "delivery_failed", "mailgate", now, message_row=row, detail=reason)]
        )
        days = self.suppression_days
        if report.permanent and days > 0:
            for address in failed_recipients(report, item.recipients):
                tx.outbox.suppress(
                    address, until=now + timedelta(days=days), reason=reason, now=now
                )
        self.notifier.team_notice(tx, item.ticket, Kind.TEAM_DELIVERY_FAILED, reason, now)
        return Outcome(arrival.spool_id, Action.BOUNCE, item.ticket, reason)

    def _add_message(self, tx: Tx, ticket: int, arrival: Arrival) -> int:
        return tx.tickets.add_message(
            ticket=ticket,
            spool_id=arrival.spool_id,
            mail=arrival.mail,
            kind=arrival.kind.value,
            visible_text=arrival.text,
            raw_sha256=arrival.item.entry.raw_sha256,
            now=arrival.now,
        )
