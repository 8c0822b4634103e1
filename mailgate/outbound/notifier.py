"""Write the notifications of a ticket change into the outbox, inside the change's transaction."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.utils import make_msgid

import structlog

from mailgate.config import Config, QueueConfig
from mailgate.core.address import AddressPolicy, mailable
from mailgate.core.classify import DECISIONS, Category, Decisions
from mailgate.core.model import MessageKind, ParsedMail, Role, TicketView
from mailgate.core.notify import (
    AUTO_SUBMITTED,
    TEAM_KINDS,
    Audience,
    Kind,
    Notice,
    capped,
    language_for,
    on_new_ticket,
    on_reply,
)
from mailgate.core.parties import (
    PUBLIC_DOMAINS,
    AnswerLimits,
    AutoAnswer,
    domain_of,
    mailbox,
    subject_core,
    withheld,
)
from mailgate.core.subject import clean_subject
from mailgate.core.terms import label
from mailgate.core.tokens import TokenCodec
from mailgate.core.workflow import Audience as Party
from mailgate.outbound.render import (
    Envelope,
    NoticeContext,
    Rendered,
    Templates,
    TicketFacts,
    compose,
)
from mailgate.store.repos import Repo

log = structlog.get_logger("mailgate.notify")


# A notice mailgate writes of its own accord (a failed delivery): for the team only.
_SYSTEM = Decisions(create_ticket=False, reopen=False, answer=False, tell_team=True)


@dataclass(frozen=True, slots=True)
class Change:
    """What happened to a ticket, as far as notifications care."""

    ticket: int
    mail: ParsedMail | None
    new_ticket: bool
    kind: MessageKind
    author: str | None
    message_text: str
    decisions: Decisions
    reason: str = ""
    old_status: str = ""  # a status change this mail announces
    new_status: str = ""
    action: str = ""  # the state in which the customer must act, if they must
    quote: str = ""
    asked_priority: str = ""  # the priority asked at submission, when it was lowered
    commands: str = ""  # the command reference, for #help

    @classmethod
    def system(cls, ticket: int, *, reason: str = "", commands: str = "") -> Change:
        """A change mailgate announces of its own accord, about no mail in particular."""
        return cls(
            ticket,
            None,
            False,
            MessageKind.SYSTEM,
            None,
            "",
            DECISIONS[Category.PERSON],
            reason=reason,
            commands=commands,
        )


class Notifier:
    """Renders and queues the mails that a change calls for."""

    def __init__(
        self, *, config: Config, templates: Templates, codec: TokenCodec, policy: AddressPolicy
    ) -> None:
        self.config = config
        self.templates = templates
        self.codec = codec
        self.policy = policy
        self.queues = {q.name: q for q in config.queues}
        self.sla = config.sla.policy()

    def _audience(self, view: TicketView, queue: QueueConfig) -> Audience:
        return Audience(
            view.participants,
            queue.team_address,
            queue.language,
            self.config.outbound.organisation_languages,
        )

    async def after(self, repo: Repo, change: Change, now: datetime) -> list[int]:
        """Queue the notices for ``change``; returns the outbox ids written."""
        view = await repo.ticket_view(change.ticket, with_messages=False, with_events=False)
        assert view is not None
        queue = self.queues.get(view.queue) or self.config.queues[0]
        audience = self._audience(view, queue)
        if change.new_ticket:
            requester = view.requester if change.kind is MessageKind.CUSTOMER else None
            notices = on_new_ticket(
                change.mail or _EMPTY, audience, requester=requester, decisions=change.decisions
            )
        else:
            notices = on_reply(
                change.mail or _EMPTY,
                audience,
                kind=change.kind,
                author=change.author,
                decisions=change.decisions,
            )
        return await self._send(repo, view, queue, notices, change, now)

    async def team_notice(
        self, repo: Repo, ticket: int, kind: Kind, reason: str, now: datetime
    ) -> list[int]:
        """Tell the ticket's team something (a failed delivery, a held mail, a failed command)."""
        return await self._notice(repo, ticket, kind, None, None, reason, now)

    async def agent_notice(
        self, repo: Repo, ticket: int, kind: Kind, change: Change, address: str, now: datetime
    ) -> list[int]:
        """Answer one agent (a refused command, the command reference), in the queue's
        language."""
        view = await repo.ticket_view(ticket, with_messages=False, with_events=False)
        assert view is not None
        queue = self.queues.get(view.queue) or self.config.queues[0]
        notice = Notice(kind, (address,), queue.language, AUTO_SUBMITTED[kind])
        return await self._send(repo, view, queue, (notice,), change, now)

    async def workflow_notice(
        self, repo: Repo, ticket: int, kind: Kind, party: Party, change: Change, now: datetime
    ) -> list[int]:
        """Send a workflow transition's template to the ticket's customers or its team."""
        view = await repo.ticket_view(ticket, with_messages=False, with_events=False)
        assert view is not None
        queue = self.queues.get(view.queue) or self.config.queues[0]
        audience = self._audience(view, queue)
        if party is Party.TEAM:
            notices: tuple[Notice, ...] = (
                Notice(kind, (queue.team_address,), queue.language, AUTO_SUBMITTED[kind]),
            )
        else:
            customers = tuple(p.address for p in view.participants if p.role is not Role.AGENT)
            if not customers:
                return []
            language = language_for(change.mail, audience, customers[0])
            notices = (Notice(kind, customers, language, AUTO_SUBMITTED[kind]),)
        return await self._send(repo, view, queue, notices, change, now)

    async def customer_notice(
        self, repo: Repo, ticket: int, kind: Kind, address: str, mail: ParsedMail, now: datetime
    ) -> list[int]:
        """Tell one customer something about their mail, in their language."""
        return await self._notice(repo, ticket, kind, address, mail, "", now)

    async def _notice(
        self,
        repo: Repo,
        ticket: int,
        kind: Kind,
        address: str | None,
        mail: ParsedMail | None,
        reason: str,
        now: datetime,
    ) -> list[int]:
        view = await repo.ticket_view(ticket, with_messages=False, with_events=False)
        assert view is not None
        queue = self.queues.get(view.queue) or self.config.queues[0]
        if address is None:
            notice = Notice(kind, (queue.team_address,), queue.language, AUTO_SUBMITTED[kind])
        else:
            language = language_for(mail, self._audience(view, queue), address)
            notice = Notice(kind, (address,), language, AUTO_SUBMITTED[kind])
        change = Change(ticket, mail, False, MessageKind.SYSTEM, None, "", _SYSTEM, reason)
        return await self._send(repo, view, queue, (notice,), change, now)

    async def _send(
        self,
        repo: Repo,
        view: TicketView,
        queue: QueueConfig,
        notices: tuple[Notice, ...],
        change: Change,
        now: datetime,
    ) -> list[int]:
        written = []
        for notice in notices:
            # Never mail one of our own addresses: that is a loop by construction. Nor
            # anything that is not one clean mailbox.
            recipients = tuple(a for a in notice.to if mailable(a) and not self.policy.is_ours(a))
            if notice.kind not in TEAM_KINDS:
                # Nor an address that bounced for good lately.
                blocked = await repo.suppressed(recipients, now)
                if blocked:
                    log.warning(
                        "outbox.suppressed",
                        kind=notice.kind.value,
                        ticket=f"#{view.number}",
                        recipients=len(blocked),
                    )
                recipients = tuple(a for a in recipients if a.lower() not in blocked)
            if not recipients:
                log.warning("outbox.skipped", kind=notice.kind.value, reason="no recipient left")
                continue
            notice = replace(notice, to=recipients)
            if capped(notice):
                notice = await self._within_caps(repo, view.number, notice, change, now)
                if not notice.to:
                    continue
            outbox_id, subject = await self._queue(repo, view, queue, notice, change, now)
            written.append(outbox_id)
            if capped(notice):
                await self._remember(repo, view.number, notice, outbox_id, subject, now)
        return written

    async def _within_caps(
        self, repo: Repo, ticket: int, notice: Notice, change: Change, now: datetime
    ) -> Notice:
        """Drop recipients (or the whole notice) that the caps on automatic mail and the loop
        rules of ``core.parties`` hold back: the ticket's cap per hour, each mailbox's cap,
        and for an acknowledgment an echo of our own mail or its domain's cap.

        The loop breaker of last resort: whatever slipped past the automatic-mail rules, a
        robot answering every mail gets a handful of answers an hour, not one per mail.
        Every count is read by index from ``auto_answers``, never from the outbox.
        """
        out = self.config.outbound
        since = now - timedelta(hours=1)

        def held(reason: str) -> None:
            log.warning("outbox.held", kind=notice.kind.value, ticket=f"#{ticket}", reason=reason)

        if (
            await repo.auto_answers_for_ticket(ticket, since)
            >= out.max_automatic_per_ticket_per_hour
        ):
            held("ticket cap per hour reached")
            return replace(notice, to=())
        limits = AnswerLimits(
            per_mailbox=out.max_automatic_per_recipient_per_hour,
            per_domain=out.max_automatic_per_domain_per_hour,
        )
        answering = None
        if notice.kind is Kind.ACK:
            answering = change.mail.subject if change.mail is not None else ""
        allowed = []
        for address in notice.to:
            domain = domain_of(address)
            recent = await repo.auto_answers_since(
                mailbox=mailbox(address),
                domain=None if domain in PUBLIC_DOMAINS else domain,
                since=since,
            )
            reason = withheld(address, recent, limits, answering=answering)
            if reason is None:
                allowed.append(address)
            else:
                held(reason)
        return replace(notice, to=tuple(allowed))

    async def _remember(
        self, repo: Repo, ticket: int, notice: Notice, outbox_id: int, subject: str, now: datetime
    ) -> None:
        """Record an automatic mail per recipient for the caps and the loop rules, its
        subject without our tag."""
        core = subject_core(clean_subject(subject, remove=self.codec.tag_spans(subject)))
        for address in notice.to:
            answer = AutoAnswer(mailbox(address), domain_of(address), core, now)
            await repo.auto_answer_add(
                answer, kind=notice.kind.value, outbox_id=outbox_id, ticket=ticket
            )

    async def _build(
        self,
        repo: Repo,
        view: TicketView,
        queue: QueueConfig,
        notice: Notice,
        change: Change,
        now: datetime,
    ) -> tuple[Rendered, bytes, str, str]:
        """The rendered notice, its MIME bytes, its Message-ID, and our domain."""
        from_address = queue.addresses[0]
        domain = self.config.outbound.domain or from_address.rpartition("@")[2]
        token = self.codec.token(view.number)
        reply_to = (
            self.policy.plus_address(from_address, token)
            if self.config.addresses.plus_addressing
            else from_address
        )
        requester = next((p for p in view.participants if p.role is Role.REQUESTER), None)
        author = next((p for p in view.participants if p.address == change.author), None)
        language = notice.language

        def status_label(name: str) -> str:
            known = self.config.workflow.find(name) if name else None
            return known.label(language) if known else name

        context = NoticeContext(
            ticket=TicketFacts(
                view.number,
                f"#{view.number}",
                self.codec.subject_tag(view.number),
                view.title,
                view.queue,
                view.type,
                view.priority,
                view.status,
            ),
            language=notice.language,
            team_name=self.config.outbound.from_name,
            customer_name=requester.name if requester else "",
            customer_address=requester.address if requester else "",
            author_name=(author.name or author.address)
            if author
            else self.config.outbound.from_name,
            message_text=change.message_text,
            reason=change.reason,
            old_status=status_label(change.old_status),
            new_status=status_label(change.new_status or view.status),
            action=change.action,
            type_label=label(view.type, language),
            priority_label=label(view.priority, language),
            asked_priority=label(change.asked_priority, language) if change.asked_priority else "",
            quote=change.quote,
            commands=change.commands,
            answer_target=self._answer_target(view, language),
        )
        rendered = self.templates.render(notice.kind, notice.language, context)
        in_reply_to, references = await repo.thread_anchor(view.number)
        message_id = make_msgid(domain=domain).strip("<>")
        raw = compose(
            rendered,
            Envelope(
                from_name=self.config.outbound.from_name,
                from_address=from_address,
                to=notice.to,
                reply_to=reply_to,
                message_id=message_id,
                in_reply_to=in_reply_to,
                references=references,
                auto_submitted=notice.auto_submitted,
                language=notice.language,
                date=now,
                loop_id=self.codec.installation_id,
                attachments=change.mail.attachments
                if notice.kind is Kind.AGENT_REPLY and change.mail is not None
                else (),
            ),
        )
        return rendered, raw, message_id, domain

    def _answer_target(self, view: TicketView, language: str) -> str:
        """The answer target in words ("binnen 2 werkdagen"), or "" without one."""
        answer = self.sla.for_ticket(view.type, view.priority).answer
        return answer.words(language) if answer else ""

    async def _queue(
        self,
        repo: Repo,
        view: TicketView,
        queue: QueueConfig,
        notice: Notice,
        change: Change,
        now: datetime,
    ) -> tuple[int, str]:
        """Write ``notice`` into the outbox; its outbox id and its subject."""
        rendered, raw, message_id, domain = await self._build(
            repo, view, queue, notice, change, now
        )
        subject = rendered.subject
        outbox_id = await repo.outbox_add(
            ticket=view.number,
            kind=notice.kind.value,
            recipients=notice.to,
            message_id=message_id,
            raw=raw,
            now=now,
        )
        check = self.codec.sign("outbox", outbox_id).lower()
        await repo.outbox_set_envelope(outbox_id, f"bounces+{outbox_id}-{check}@{domain}")
        await repo.message_add_out(
            ticket=view.number,
            kind=MessageKind.AGENT.value
            if notice.kind is Kind.AGENT_REPLY
            else MessageKind.SYSTEM.value,
            from_addr=queue.addresses[0],
            to=notice.to,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            message_id=message_id,
            now=now,
        )
        log.info(
            "outbox.queued",
            outbox_id=outbox_id,
            kind=notice.kind.value,
            ticket=f"#{view.number}",
            recipients=len(notice.to),
            language=notice.language,
        )
        return outbox_id, subject

    async def preview(
        self,
        repo: Repo,
        view: TicketView,
        queue: QueueConfig,
        kind: Kind,
        language: str,
        now: datetime,
    ) -> bytes:
        """The mail ``kind`` would be for this ticket now, without queueing it."""
        latest = next((m for m in reversed(view.messages) if m.direction == "in"), None)
        to = (view.requester,) if view.requester else (queue.team_address,)
        if kind in (Kind.TEAM_NEW_TICKET, Kind.TEAM_CUSTOMER_REPLY, Kind.COMMAND_FAILED):
            to = (queue.team_address,)
        notice = Notice(kind, to, language, AUTO_SUBMITTED.get(kind, ""))
        change = Change(
            view.number,
            None,
            False,
            MessageKind.CUSTOMER,
            latest.from_addr if latest else None,
            latest.text if latest else "",
            DECISIONS[Category.PERSON],
        )
        _, raw, _, _ = await self._build(repo, view, queue, notice, change, now)
        return raw


_EMPTY = ParsedMail(
    message_id=None,
    in_reply_to=(),
    references=(),
    subject="",
    from_addr=None,
    reply_to=(),
    to=(),
    cc=(),
    date=None,
    text="",
    html=None,
    attachments=(),
    headers=(),
    defects=(),
    parser="none",
)
