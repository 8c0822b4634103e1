"""The intake worker: turn each stored mail into a ticket change in one transaction.

For one spool item: read the raw bytes, parse them, store attachment bytes,
gather the routing evidence; then, in one database transaction, claim the item,
look up what the evidence names, route, write ticket, message, participants,
attachments and events, and mark the item done. A crash before the commit
leaves the item pending, so it is processed again; after the commit nothing is
lost. A temporary failure (database locked or down) retries later with backoff;
any other failure quarantines the mail with its error and a traceback id and
moves on, so one bad mail never blocks the mails behind it.
"""

from __future__ import annotations

import asyncio
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from mailgate.blobs import Attachments, BlobStore
from mailgate.clock import Clock
from mailgate.config import IntakeConfig, QueueConfig, WorkerConfig
from mailgate.core.address import AddressPolicy
from mailgate.core.bounces import DeliveryReport, delivery_report
from mailgate.core.calendar import BusinessCalendar
from mailgate.core.classify import (
    Category,
    Classification,
    classify,
    confirm_bounce,
    may_be_bounce,
)
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
    Direction,
    Drop,
    MessageKind,
    NewTicket,
    ParsedMail,
    Reply,
    Route,
    SpoolEntry,
    SystemMail,
    within_limits,
)
from mailgate.core.notify import Kind
from mailgate.core.parse import parse_mail
from mailgate.core.participants import message_kind, participants, sender
from mailgate.core.privacy import mask_bsn
from mailgate.core.route import Evidence, gather_evidence, route
from mailgate.core.senders import (
    Authority,
    SenderVerdict,
    UnknownSender,
    agent_authority,
    judge_sender,
)
from mailgate.core.submission import KeywordRule, submit
from mailgate.core.text import sanitize_html, visible_reply
from mailgate.core.tokens import TokenCodec
from mailgate.core.workflow import DEFAULT_WORKFLOW, Audience
from mailgate.desk import Desk
from mailgate.errors import MailgateError, StorageUnavailable
from mailgate.intake.spool import SERVER_SOURCE
from mailgate.metrics import Metrics
from mailgate.outbound.notifier import Change, Notifier
from mailgate.store.db import session, storage_errors
from mailgate.store.repos import PENDING, Repo
from mailgate.tasks import wait_for_work

log = structlog.get_logger("mailgate.process")
MAX_FAILING_WAIT = 60.0  # seconds between rounds while storage keeps failing
NOTED_SKIPS = 10  # skipped attachments named one by one on the ticket


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one spool item."""

    spool_id: int
    action: Action
    ticket: int | None
    reason: str


def _for_display(mail: ParsedMail) -> tuple[ParsedMail, int]:
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


def _limit_notes(mail: ParsedMail, skipped: tuple[Attachment, ...]) -> list[str]:
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


def _failed_recipients(report: DeliveryReport, sent_to: tuple[str, ...]) -> tuple[str, ...]:
    """The addresses of our mail that the report says failed; a report that names none of
    them concerns the only recipient, if the mail had one."""
    ours = {a.lower() for a in sent_to}
    named = tuple(a for a in report.recipients if a in ours)
    if named:
        return named
    return tuple(ours) if len(ours) == 1 else ()


class Processor:
    """Processes spool items: one at a time, each in its own transaction."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        raw: BlobStore | None,
        attachments: Attachments,
        codec: TokenCodec,
        policy: AddressPolicy,
        queues: Mapping[str, QueueConfig],
        worker: WorkerConfig,
        intake: IntakeConfig,
        clock: Clock,
        intake_busy: Callable[[], bool] | None = None,
        notifier: Notifier | None = None,
        on_outbox: Callable[[], None] | None = None,
        outbound_suppression_days: float = 7.0,
        desk: Desk | None = None,
        submission: tuple[KeywordRule, ...] = (),
        metrics: Metrics | None = None,
    ) -> None:
        self.engine = engine
        self.raw = raw
        self.attachments = attachments
        self.codec = codec
        self.policy = policy
        self.queues = queues
        self.worker = worker
        self.fallback_charsets = intake.fallback_charsets
        self.intake = intake
        self.intake_busy = intake_busy
        self.notifier = notifier
        self.on_outbox = on_outbox
        self.outbound_suppression_days = outbound_suppression_days
        self.clock = clock
        self.desk = desk or Desk(
            workflow=DEFAULT_WORKFLOW, calendar=BusinessCalendar(UTC), notifier=notifier
        )
        self.workflow = self.desk.workflow
        self.submission = submission
        self.metrics = metrics

    async def process(self, spool_id: int) -> Outcome | None:
        """Process one item; None when it is not pending (done, or another worker has it)."""
        with structlog.contextvars.bound_contextvars(spool_id=spool_id):
            try:
                return await self._process(spool_id)
            except MailgateError as exc:
                if exc.temporary:
                    return await self._defer(spool_id, exc)
                return await self._quarantine(spool_id, exc)
            except Exception as exc:  # a bug of ours: keep the mail, never lose it
                return await self._quarantine(spool_id, exc)

    async def _process(self, spool_id: int) -> Outcome | None:
        started = time.perf_counter()
        with storage_errors("read spool"):
            async with session(self.engine) as s:
                entry = await Repo(s).spool_get(spool_id)
                spooled = await Repo(s).spool_raw(spool_id) if entry else None
        if entry is None or entry.state != PENDING:
            return None
        if spooled is not None:  # first attempt: move the bytes into the blob store, if files
            if self.raw is not None:
                await asyncio.to_thread(self.raw.put, spooled, entry.raw_sha256)
            raw = spooled
        elif self.raw is not None:
            raw = await asyncio.to_thread(self.raw.get, entry.raw_sha256)
        else:
            raise StorageUnavailable(f"raw mail of spool item {spool_id} not in the database")
        mail = await asyncio.to_thread(
            parse_mail, raw, self.fallback_charsets, self.intake.max_parts
        )
        log.debug(
            "mail.parsed",
            parser=mail.parser,
            defects=len(mail.defects),
            attachments=len(mail.attachments),
        )
        kept, skipped = within_limits(
            mail.attachments,
            self.intake.max_attachment_size,
            self.intake.max_attachments_size,
            self.intake.max_attachments,
        )
        mail = replace(mail, attachments=kept)
        for item in kept:
            await self.attachments.put(item.data, item.sha256)
        evidence = gather_evidence(mail, entry.envelope_to, self.codec, self.policy)
        kind = classify(mail, entry.envelope_from, self.codec.installation_id)
        report = None
        if kind.category is Category.BOUNCE or evidence.bounces or may_be_bounce(kind, mail):
            report = await asyncio.to_thread(delivery_report, mail, raw)
            kind = confirm_bounce(kind, mail, report.recipients)
        returned = report.original_message_ids if report else ()
        with storage_errors("process mail"):
            async with session(self.engine, write=True) as s:
                repo = Repo(s)
                claimed = await repo.spool_claim(spool_id)
                if claimed is None:
                    return None
                lookup = await repo.lookup(evidence.message_ids, evidence.ticket_numbers, returned)
                decision = route(mail, evidence, lookup, self.policy, kind, returned)
                authority = agent_authority(
                    mail,
                    self.policy,
                    answers_team=lookup.team_notice(evidence),
                    trusted=self.intake.trusted_authserv_ids,
                    on_server=claimed.source == SERVER_SOURCE,
                )
                outcome = await self._apply(
                    repo, claimed, mail, decision, kind, report, evidence, authority
                )
                if outcome.ticket is not None:
                    for detail in _limit_notes(mail, skipped):
                        await repo.event_add(
                            outcome.ticket,
                            kind="attachment_skipped",
                            actor="mailgate",
                            now=self.clock.now(),
                            detail=detail,
                        )
                await repo.spool_finish(
                    spool_id,
                    outcome=outcome.action.value,
                    ticket=outcome.ticket,
                    reason=outcome.reason,
                    now=self.clock.now(),
                )
                if spooled is not None and self.raw is not None:
                    await repo.spool_raw_moved(spool_id)
        for token in evidence.rejected_tokens:
            log.warning("token.rejected", token=token)
        if self.on_outbox is not None and outcome.action in (
            Action.CREATED,
            Action.APPENDED,
            Action.BOUNCE,
            Action.HELD,
        ):
            self.on_outbox()
        log.info(
            "mail.routed",
            action=outcome.action.value,
            category=kind.category.value,
            ticket=f"#{outcome.ticket}" if outcome.ticket else None,
            reason=outcome.reason,
            message_id=mail.message_id,
            queue=evidence.queue,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        if self.metrics is not None:
            self.metrics.mail(entry.source, outcome.action.value, time.perf_counter() - started)
        return outcome

    async def _notify(self, repo: Repo, change: Change) -> None:
        if self.notifier is not None:
            await self.notifier.after(repo, change, self.clock.now())

    async def _apply(
        self,
        repo: Repo,
        entry: SpoolEntry,
        mail: ParsedMail,
        decision: Route,
        classified: Classification,
        report: DeliveryReport | None,
        evidence: Evidence,
        authority: Authority,
    ) -> Outcome:
        now = self.clock.now()
        actor = sender(mail) or "unknown sender"
        if classified.automatic:
            log.info("mail.automatic", category=classified.category.value, reason=classified.reason)
        kind = MessageKind.AUTO if classified.automatic else message_kind(authority)
        mail, masked = _for_display(mail)
        text = visible_reply(mail)
        if isinstance(decision, Drop):
            return Outcome(entry.id, Action.DROPPED, None, decision.reason)
        if isinstance(decision, SystemMail):
            return Outcome(entry.id, Action.SYSTEM, None, decision.reason)
        if isinstance(decision, BounceReport):
            assert report is not None
            return await self._bounce(repo, entry, mail, decision, report)
        if isinstance(decision, NewTicket):
            return await self._create(repo, entry, mail, decision, classified, kind, text, masked)
        assert isinstance(decision, Reply)
        ticket = decision.ticket
        reason = f"matched by {decision.matched_by} {decision.evidence}"
        # Locked for the rest of the transaction: two changes to one ticket queue up.
        state = await repo.ticket_state(ticket, lock=True)
        assert state is not None
        if classified.automatic:
            reason += f"; {classified.category.value}: {classified.reason}"
        else:
            verdict = judge_sender(sender(mail), state.participants, authority)
            if not verdict.known and authority.claimed:
                log.warning("agent.unproven", ticket=f"#{ticket}", reason=verdict.reason)
                return await self._hold_unproven(repo, entry, mail, ticket, text, reason, verdict)
            if not verdict.known:
                log.warning("sender.unknown", ticket=f"#{ticket}", reason=verdict.reason)
                policy = self.intake.unknown_sender
                reason += f"; {verdict.reason}, policy {policy}"
                if policy == UnknownSender.NEW_TICKET:
                    own = NewTicket(
                        evidence.queue, evidence.title, f"{reason} (reply to #{ticket})"
                    )
                    return await self._create(
                        repo, entry, mail, own, classified, kind, text, masked, linked=ticket
                    )
                if policy == UnknownSender.HOLD:
                    return await self._hold(repo, entry, mail, ticket, text, reason)
        plan: Plan | None = None
        if not classified.automatic and kind is MessageKind.AGENT:
            block = read_commands(text)
            refs = [
                r for c in block.commands if c.verb is Verb.MERGE and (r := ticket_ref(c.argument))
            ]
            agent_plan = plan_agent(
                self.workflow,
                state,
                block,
                author=actor,
                policy=self.policy,
                existing=await repo.tickets_existing(refs),
                calendar=self.desk.calendar,
                now=now,
            )
            if isinstance(agent_plan, Refusal):
                return await self._refuse(repo, entry, mail, ticket, text, agent_plan, reason)
            plan = agent_plan
            text = plan.text
            if not plan.relay:
                kind = MessageKind.NOTE
        elif not classified.automatic:
            plan = plan_customer(self.workflow, state, text, author=sender(mail))
            if plan.new_ticket:
                own = NewTicket(evidence.queue, evidence.title, f"{reason}; {plan.reason}")
                return await self._create(
                    repo, entry, mail, own, classified, kind, text, masked, linked=ticket
                )
        row = await self._add_message(repo, ticket, entry, mail, kind, text)
        await self.desk.add_people(
            repo,
            ticket,
            participants(mail, self.policy, new_ticket=False),
            actor=actor,
            now=now,
            message_row=row,
        )
        await repo.event_add(
            ticket, kind="message_added", actor=actor, now=now, message_row_id=row, detail=reason
        )
        if not classified.automatic:  # a machine's mail is kept on the ticket, never moves it
            await repo.ticket_touch(ticket, actor=actor, now=now)
        await self._privacy_event(repo, ticket, masked, mail, kind, row)
        if plan is None:
            await self._notify(
                repo, Change(ticket, mail, False, kind, sender(mail), text, classified.decisions)
            )
        else:
            await self._carry_out(repo, ticket, mail, kind, plan, classified, actor, row)
            if plan.reason:
                reason += f"; {plan.reason}"
        log.info("mail.threaded", ticket=f"#{ticket}", matched_by=decision.matched_by)
        return Outcome(entry.id, Action.APPENDED, ticket, reason)

    async def _carry_out(
        self,
        repo: Repo,
        ticket: int,
        mail: ParsedMail,
        kind: MessageKind,
        plan: Plan,
        classified: Classification,
        actor: str,
        row: int,
    ) -> None:
        """Apply a person's plan and send what it calls for: the relay of an agent's answer
        (which carries the news of a status change), or else the transition's template;
        the team hears of a customer's reply; other agents of a note."""
        now = self.clock.now()
        await self.desk.carry_out(repo, ticket, plan, actor=actor, now=now, message_row=row)
        if self.notifier is None:
            return
        target = plan.merge_into or ticket
        if kind is MessageKind.CUSTOMER:
            await self._notify(
                repo,
                Change(target, mail, False, kind, actor, plan.text, classified.decisions),
            )
        elif plan.relay:
            await self.desk.sla_answered(repo, target, now)
            await self._notify(
                repo,
                Change(
                    target,
                    mail,
                    False,
                    kind,
                    actor,
                    plan.text,
                    classified.decisions,
                    action=self.desk.customer_action(plan.move.new) if plan.move else "",
                    quote=await repo.ticket_quote(target),
                ),
            )
        if plan.internal and plan.text.strip():
            note = Change(target, mail, False, kind, actor, plan.text, classified.decisions)
            await self.notifier.workflow_notice(
                repo, target, Kind.TEAM_NOTE, Audience.TEAM, note, now
            )
        if plan.move is not None and not plan.relay:
            await self.desk.announce(repo, target, plan.move, now=now, text="", mail=None)
        if plan.help:
            await self.notifier.agent_notice(
                repo,
                target,
                Kind.COMMAND_HELP,
                Change.system(target, commands=command_reference(self.workflow)),
                actor,
                now,
            )

    async def _refuse(
        self,
        repo: Repo,
        entry: SpoolEntry,
        mail: ParsedMail,
        ticket: int,
        text: str,
        refusal: Refusal,
        reason: str,
    ) -> Outcome:
        """An agent's message with a bad command: kept as a note, nothing changed or relayed;
        the agent is told what was wrong and what is allowed."""
        now = self.clock.now()
        actor = sender(mail) or "unknown sender"
        errors = "\n".join(refusal.errors)
        row = await self._add_message(repo, ticket, entry, mail, MessageKind.NOTE, text)
        await repo.event_add(
            ticket,
            kind="command_failed",
            actor=actor,
            now=now,
            message_row_id=row,
            detail=errors[:1000],
        )
        if self.notifier is not None:
            await self.notifier.agent_notice(
                repo,
                ticket,
                Kind.COMMAND_FAILED,
                Change.system(ticket, reason=errors, commands=command_reference(self.workflow)),
                actor,
                now,
            )
        log.warning("command.refused", ticket=f"#{ticket}", errors=len(refusal.errors))
        return Outcome(entry.id, Action.APPENDED, ticket, f"{reason}; commands refused: {errors}")

    async def _create(
        self,
        repo: Repo,
        entry: SpoolEntry,
        mail: ParsedMail,
        decision: NewTicket,
        classified: Classification,
        kind: MessageKind,
        text: str,
        masked: int,
        linked: int | None = None,
    ) -> Outcome:
        now = self.clock.now()
        actor = sender(mail) or "unknown sender"
        queue = self.queues[decision.queue]
        requester = sender(mail)
        submitted = submit(
            decision.title,
            text,
            self.submission,
            default_type=queue.default_type,
            default_priority=queue.default_priority,
        )
        initial = self.workflow.initial
        ticket = await repo.ticket_create(
            queue=decision.queue,
            title=submitted.title,
            type_=submitted.type,
            priority=submitted.priority,
            status=initial,
            requester=requester if requester and not self.policy.is_agent(requester) else None,
            actor=actor,
            now=now,
            action_by=self.desk.action_by(initial),
        )
        await self.desk.arm(repo, ticket, initial, now)
        await self.desk.sla_start(repo, ticket, initial, now)
        row = await self._add_message(repo, ticket, entry, mail, kind, text)
        await repo.participants_add(ticket, participants(mail, self.policy, new_ticket=True))
        await repo.event_add(
            ticket,
            kind="created",
            actor=actor,
            now=now,
            message_row_id=row,
            new=initial,
            detail=f"{decision.reason}; {submitted.type}/{submitted.priority} from "
            f"{submitted.reason}",
        )
        if linked is not None:
            for here, there in ((ticket, linked), (linked, ticket)):
                await repo.event_add(
                    here, kind="linked", actor="mailgate", now=now, field="links", new=f"#{there}"
                )
        await self._privacy_event(repo, ticket, masked, mail, kind, row)
        await self._notify(
            repo,
            Change(
                ticket,
                mail,
                True,
                kind,
                sender(mail),
                text,
                classified.decisions,
                asked_priority=submitted.asked_priority,
            ),
        )
        log.info("ticket.created", ticket=f"#{ticket}", queue=decision.queue)
        return Outcome(entry.id, Action.CREATED, ticket, decision.reason)

    async def _hold(
        self, repo: Repo, entry: SpoolEntry, mail: ParsedMail, ticket: int, text: str, reason: str
    ) -> Outcome:
        """A stranger's reply: kept on the ticket, relayed to nobody; the team decides."""
        now = self.clock.now()
        row = await self._add_message(repo, ticket, entry, mail, MessageKind.HELD, text)
        await repo.event_add(
            ticket,
            kind="message_held",
            actor=sender(mail) or "unknown sender",
            now=now,
            message_row_id=row,
            detail=reason,
        )
        if self.notifier is not None:
            await self.notifier.team_notice(repo, ticket, Kind.TEAM_HELD, reason, now)
        return Outcome(entry.id, Action.HELD, ticket, reason)

    async def _hold_unproven(
        self,
        repo: Repo,
        entry: SpoolEntry,
        mail: ParsedMail,
        ticket: int,
        text: str,
        reason: str,
        verdict: SenderVerdict,
    ) -> Outcome:
        """A mail from an agent's address that does not prove it is the team's: held like a
        stranger's reply (nothing carried out, nothing relayed, nobody added), the team told
        why, and the agent told once per ticket how to act, in case it was really them."""
        reason = f"{reason}; {verdict.reason}; held: not proven to be the team's"
        outcome = await self._hold(repo, entry, mail, ticket, text, reason)
        agent = sender(mail)
        if agent is None or self.notifier is None or mail.from_count != 1:
            return outcome
        told = f"#{ticket} {agent.lower()}"
        if await repo.event_exists("agent_told", new=told):
            return outcome
        now = self.clock.now()
        await self.notifier.agent_notice(
            repo,
            ticket,
            Kind.AGENT_UNPROVEN,
            Change.system(ticket, reason=verdict.reason),
            agent.lower(),
            now,
        )
        await repo.event_add(ticket, kind="agent_told", actor="mailgate", now=now, new=told)
        return outcome

    async def _privacy_event(
        self, repo: Repo, ticket: int, masked: int, mail: ParsedMail, kind: MessageKind, row: int
    ) -> None:
        """Record masked BSN numbers; tell a customer once, ever, not to send them."""
        if not masked:
            return
        author = sender(mail)
        now = self.clock.now()
        await repo.event_add(
            ticket,
            kind="privacy_masked",
            actor=author or "unknown sender",
            now=now,
            message_row_id=row,
            detail=f"{masked} BSN number(s) masked in the stored text",
        )
        if kind is not MessageKind.CUSTOMER or author is None or self.notifier is None:
            return
        if await repo.event_exists("privacy_told", new=author.lower()):
            return
        await self.notifier.customer_notice(repo, ticket, Kind.PRIVACY_NOTICE, author, mail, now)
        await repo.event_add(
            ticket, kind="privacy_told", actor="mailgate", now=now, new=author.lower()
        )

    async def _bounce(
        self,
        repo: Repo,
        entry: SpoolEntry,
        mail: ParsedMail,
        decision: BounceReport,
        report: DeliveryReport,
    ) -> Outcome:
        """A bounce of one of our mails: kept on its ticket as system mail, with an event."""
        now = self.clock.now()
        item = await repo.outbox_get(decision.outbox)
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
            return Outcome(entry.id, Action.BOUNCE, None, reason)
        row = await self._add_message(
            repo, item.ticket, entry, mail, MessageKind.SYSTEM, visible_reply(mail)
        )
        await repo.event_add(
            item.ticket,
            kind="delivery_failed",
            actor="mailgate",
            now=now,
            message_row_id=row,
            detail=reason,
        )
        days = self.outbound_suppression_days
        if report.permanent and days > 0:
            for address in _failed_recipients(report, item.recipients):
                await repo.suppress(
                    address, until=now + timedelta(days=days), reason=reason, now=now
                )
        if self.notifier is not None:
            await self.notifier.team_notice(
                repo, item.ticket, Kind.TEAM_DELIVERY_FAILED, reason, now
            )
        return Outcome(entry.id, Action.BOUNCE, item.ticket, reason)

    async def _add_message(
        self,
        repo: Repo,
        ticket: int,
        entry: SpoolEntry,
        mail: ParsedMail,
        kind: MessageKind,
        text: str,
    ) -> int:
        row = await repo.message_add(
            ticket=ticket,
            spool_id=entry.id,
            mail=mail,
            direction=Direction.IN.value,
            kind=kind.value,
            visible_text=text,
            raw_sha256=entry.raw_sha256,
            now=self.clock.now(),
        )
        await repo.attachments_add(row, mail.attachments)
        return row

    async def _defer(self, spool_id: int, exc: BaseException) -> Outcome:
        error = f"{type(exc).__name__}: {exc}"[:1000]
        try:
            with storage_errors("defer"):
                async with session(self.engine, write=True) as s:
                    repo = Repo(s)
                    entry = await repo.spool_get(spool_id)
                    attempts = entry.attempts if entry else 0
                    delay = min(
                        self.worker.retry_delay * (2**attempts), self.worker.max_retry_delay
                    )
                    retry_at = self.clock.now() + timedelta(seconds=delay)
                    await repo.spool_defer(spool_id, error=error, retry_at=retry_at)
                    if self.metrics is not None and entry is not None:
                        self.metrics.mail(entry.source, Action.DEFERRED.value)
        except MailgateError:
            pass  # still pending and due: the next round tries again
        log.warning("mail.deferred", error=error)
        return Outcome(spool_id, Action.DEFERRED, None, error)

    async def _quarantine(self, spool_id: int, exc: BaseException) -> Outcome:
        traceback_id = uuid.uuid4().hex[:12]
        error = f"{type(exc).__name__}: {exc}"[:1000]
        text = "".join(traceback.format_exception(exc))
        log.error("mail.quarantined", error=error, traceback_id=traceback_id, exc_info=exc)
        try:
            with storage_errors("quarantine"):
                async with session(self.engine, write=True) as s:
                    entry = await Repo(s).spool_get(spool_id)
                    raw_file = self.raw.path(entry.raw_sha256) if self.raw and entry else None
                    if raw_file is not None and raw_file.exists():
                        await Repo(s).spool_raw_moved(spool_id)
                    if self.metrics is not None and entry is not None:
                        self.metrics.mail(entry.source, Action.QUARANTINED.value)
                    await Repo(s).spool_quarantine(
                        spool_id,
                        error=error,
                        traceback_id=traceback_id,
                        traceback=text,
                        now=self.clock.now(),
                    )
        except MailgateError as second:
            return await self._defer(spool_id, second)
        return Outcome(spool_id, Action.QUARANTINED, None, f"{error} (traceback {traceback_id})")

    async def run_due(self, limit: int = 100) -> list[Outcome]:
        """Process every item that is due now, up to ``limit``."""
        with storage_errors("list due"):
            async with session(self.engine) as s:
                due = await Repo(s).spool_due(self.clock.now(), limit)
        outcomes = []
        for spool_id in due:
            await self._give_way()
            outcome = await self.process(spool_id)
            if outcome is not None:
                outcomes.append(outcome)
            if outcome is not None and outcome.action is Action.DEFERRED:
                break  # storage is failing (locked, down, full): the next mail would too
        return outcomes

    async def _give_way(self, longest: float = 0.5) -> None:
        """While mail is being received, wait (at most ``longest``) so that 250s come first.

        A client waits for each acknowledgment; a stored mail can wait to be
        processed. The cap keeps the backlog moving under sustained load.
        """
        if self.intake_busy is None:
            return
        waited = 0.0
        while waited < longest and self.intake_busy():
            await asyncio.sleep(0.01)
            waited += 0.01

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """Work until ``stop`` is set: process what is due, then wait for a wake-up or the poll."""
        log.info("worker.started")
        failing = 0  # rounds in a row that storage failed: the wait doubles with each
        while not stop.is_set():
            wake.clear()
            try:
                outcomes = await self.run_due()
            except MailgateError as exc:
                log.warning("worker.storage_unavailable", error=str(exc))
                outcomes = [Outcome(0, Action.DEFERRED, None, str(exc))]
            if outcomes and outcomes[-1].action is Action.DEFERRED:
                failing += 1
                delay = min(self.worker.poll_interval * 2**failing, MAX_FAILING_WAIT)
                await wait_for_work(stop, wake, max(delay, 0.05))  # new mail: storage is back
                continue
            failing = 0
            if outcomes:
                continue  # more may be due right away
            await wait_for_work(stop, wake, self.worker.poll_interval)
        log.info("worker.stopped")
