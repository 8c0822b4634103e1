"""Write the notifications of a ticket change into the outbox, inside the change's transaction.

Blocking, on the change's ``Tx``: the facts it reads (the ticket, its people, the
suppressions, the caps, the thread's anchor) are a handful of indexed queries, and
what it writes (outbox rows, cap records, the thread's copies) is one statement per
table for all the notices of a call.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import structlog

from mailgate.config import Config, QueueConfig
from mailgate.core.address import AddressPolicy, mailable
from mailgate.core.agent_words import Fault
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
from mailgate.core.tokens import TokenCodec
from mailgate.core.workflow import Party
from mailgate.outbound.builder import NoticeBuilder
from mailgate.outbound.caps import Caps
from mailgate.outbound.render import (
    Templates,
)
from mailgate.store.repos import Tx
from mailgate.store.repos.history import Anchor, Event, SentMessage
from mailgate.store.repos.outbox import Counted, Queued

log = structlog.get_logger("mailgate.notify")

# What an agent is told when their answer skipped a recipient who bounced for good lately.
HELD_BACK = {
    "nl": "Uw antwoord is niet verstuurd naar {addresses}: mail aan dat adres kwam onlangs "
    "blijvend terug, en mailgate stuurt er voorlopig niets meer heen. Neem op een andere "
    "manier contact op, of laat het adres corrigeren.",
    "en": "Your answer was not sent to {addresses}: mail to that address bounced for good "
    "lately, and mailgate sends it nothing for a while. Reach them another way, or have "
    "the address corrected.",
}


# A notice mailgate writes of its own accord (a failed delivery): for the team only.
_SYSTEM = Decisions(create_ticket=False, reopen=False, answer=False, tell_team=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """What happened to a ticket, as far as notifications care."""

    ticket: int
    mail: ParsedMail | None = None
    new_ticket: bool = False
    kind: MessageKind = MessageKind.SYSTEM
    author: str | None = None
    message_text: str = ""
    decisions: Decisions = DECISIONS[Category.PERSON]
    reason: str = ""
    old_status: str = ""  # a status change this mail announces
    new_status: str = ""
    action: str = ""  # the state in which the customer must act, if they must
    quote: str = ""
    asked_priority: str = ""  # the priority asked at submission, when it was lowered
    help: bool = False  # the command reference (#help, and under refused commands)
    faults: tuple[Fault, ...] = ()  # a refused command mail's faults, told in words
    forwarded: bool = False  # an agent forwarded the requester's mail: acknowledge them
    missing_fields: tuple[str, ...] = ()  # labels of required reference fields not given

    @classmethod
    def system(
        cls, ticket: int, *, reason: str = "", help: bool = False, faults: tuple[Fault, ...] = ()
    ) -> Change:
        """A change mailgate announces of its own accord, about no mail in particular."""
        return cls(ticket=ticket, reason=reason, help=help, faults=faults)


class Notifier:
    """Renders and queues the mails that a change calls for."""

    def __init__(
        self, *, config: Config, templates: Templates, codec: TokenCodec, policy: AddressPolicy
    ) -> None:
        self.config = config
        self.codec = codec
        self.policy = policy
        self.queues = {q.name: q for q in config.queues}
        self.sla = config.sla.policy()
        self.caps = Caps(config.outbound, codec)
        self.builder = NoticeBuilder(config, templates, codec, policy, self.sla)

    @property
    def templates(self) -> Templates:
        return self.builder.templates

    @templates.setter
    def templates(self, fresh: Templates) -> None:
        """New templates (SIGHUP) for every notice built from now on."""
        self.builder = replace(self.builder, templates=fresh)

    def _audience(self, view: TicketView, queue: QueueConfig) -> Audience:
        return Audience(
            view.participants,
            queue.team_address,
            queue.language,
            self.config.outbound.organisation_languages,
            view.language,
        )

    def after(
        self,
        tx: Tx,
        change: Change,
        now: datetime,
        view: TicketView | None = None,
        anchor: Anchor | None = None,
    ) -> list[int]:
        """Queue the notices for ``change``; returns the outbox ids written. ``view`` and
        ``anchor``: the ticket and its thread's anchor as the caller has them in this
        transaction (else they are read)."""
        view = view or tx.tickets.view(change.ticket)
        assert view is not None
        queue = self.queues.get(view.queue) or self.config.queues[0]
        audience = self._audience(view, queue)
        if change.new_ticket:
            asks = change.kind is MessageKind.CUSTOMER or change.forwarded
            requester = view.requester if asks else None
            notices = on_new_ticket(
                change.mail or _EMPTY,
                audience,
                requester=requester,
                decisions=change.decisions,
                cc=self.config.outbound.acknowledge_cc,
            )
        else:
            notices = on_reply(
                change.mail or _EMPTY,
                audience,
                kind=change.kind,
                author=change.author,
                decisions=change.decisions,
            )
        return self._send(tx, view, queue, notices, change, now, anchor)

    def team_notice(
        self, tx: Tx, ticket: int, kind: Kind, reason: str, now: datetime, text: str = ""
    ) -> list[int]:
        """Tell the ticket's team something (a failed delivery, a held mail and its ``text``,
        a failed command)."""
        return self._notice(tx, ticket, kind, None, None, reason, now, text)

    def agent_notice(
        self, tx: Tx, ticket: int, kind: Kind, change: Change, address: str, now: datetime
    ) -> list[int]:
        """Answer one agent (a refused command, the command reference), in the queue's
        language."""
        view, queue = self._ticket(tx, ticket)
        notice = Notice(kind, (address,), queue.language, AUTO_SUBMITTED[kind])
        return self._send(tx, view, queue, (notice,), change, now)

    def workflow_notice(
        self, tx: Tx, ticket: int, kind: Kind, party: Party, change: Change, now: datetime
    ) -> list[int]:
        """Send a workflow transition's template to the ticket's customers or its team."""
        view, queue = self._ticket(tx, ticket)
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
        return self._send(tx, view, queue, notices, change, now)

    def customer_notice(
        self, tx: Tx, ticket: int, kind: Kind, address: str, mail: ParsedMail, now: datetime
    ) -> list[int]:
        """Tell one customer something about their mail, in their language."""
        return self._notice(tx, ticket, kind, address, mail, "", now)

    def _notice(
        self,
        tx: Tx,
        ticket: int,
        kind: Kind,
        address: str | None,
        mail: ParsedMail | None,
        reason: str,
        now: datetime,
        text: str = "",
    ) -> list[int]:
        view, queue = self._ticket(tx, ticket)
        if address is None:
            notice = Notice(kind, (queue.team_address,), queue.language, AUTO_SUBMITTED[kind])
        else:
            language = language_for(mail, self._audience(view, queue), address)
            notice = Notice(kind, (address,), language, AUTO_SUBMITTED[kind])
        change = Change(
            ticket=ticket, mail=mail, decisions=_SYSTEM, reason=reason, message_text=text
        )
        return self._send(tx, view, queue, (notice,), change, now)

    def _ticket(self, tx: Tx, ticket: int) -> tuple[TicketView, QueueConfig]:
        """The ticket as this transaction has it, and its queue's settings."""
        view = tx.tickets.view(ticket)
        assert view is not None
        return view, self.queues.get(view.queue) or self.config.queues[0]

    def _addressed(
        self, tx: Tx, ticket: int, notices: tuple[Notice, ...], change: Change, now: datetime
    ) -> tuple[list[Notice], list[Counted]]:
        """The notices with the recipients they may reach (those with none left dropped),
        and the automatic mails among them, counted for the caps."""
        ready: list[Notice] = []
        counted: list[Counted] = []  # this call's automatic mails, counted by the next notice
        for notice in notices:
            # Never mail one of our own addresses: that is a loop by construction. Nor
            # anything that is not one clean mailbox.
            recipients = tuple(a for a in notice.to if mailable(a) and not self.policy.is_ours(a))
            if notice.kind not in TEAM_KINDS:
                # Nor an address that bounced for good lately.
                blocked = tx.outbox.suppressed(recipients, now)
                if blocked:
                    log.warning(
                        "outbox.suppressed",
                        kind=notice.kind.value,
                        ticket=f"#{ticket}",
                        recipients=len(blocked),
                    )
                recipients = tuple(a for a in recipients if a.lower() not in blocked)
                if blocked and notice.kind is Kind.AGENT_REPLY:
                    self._held_back(tx, ticket, sorted(blocked), change.author, now)
            if not recipients:
                log.warning("outbox.skipped", kind=notice.kind.value, reason="no recipient left")
                continue
            notice = replace(notice, to=recipients)
            if capped(notice):
                answering = None
                if notice.kind is Kind.ACK:
                    answering = change.mail.subject if change.mail is not None else ""
                notice = self.caps.within(tx, ticket, notice, answering, now, counted)
                if not notice.to:
                    continue
                counted.extend(self.caps.counted(ticket, notice, len(ready), now))
            ready.append(notice)
        return ready, counted

    def _held_back(
        self, tx: Tx, ticket: int, addresses: list[str], author: str | None, now: datetime
    ) -> None:
        """An agent's answer not sent to addresses that bounced for good lately: the
        ticket's log says so, and the agent who wrote it is told (in the team's language)."""
        listed = ", ".join(addresses)
        tx.history.add_events(
            [
                Event(
                    ticket,
                    "delivery_suppressed",
                    "mailgate",
                    now,
                    field="recipients",
                    old=listed,
                    detail=f"the answer was not sent to {listed}: it bounced for good lately",
                )
            ]
        )
        if author is None or not self.policy.is_agent(author):
            return
        view, queue = self._ticket(tx, ticket)
        reason = HELD_BACK.get(queue.language, HELD_BACK["en"]).format(addresses=listed)
        kind = Kind.TEAM_DELIVERY_FAILED
        notice = Notice(kind, (author,), queue.language, AUTO_SUBMITTED[kind])
        self._send(tx, view, queue, (notice,), Change.system(ticket, reason=reason), now)

    def _send(
        self,
        tx: Tx,
        view: TicketView,
        queue: QueueConfig,
        notices: tuple[Notice, ...],
        change: Change,
        now: datetime,
        anchor: Anchor | None = None,
    ) -> list[int]:
        ready, counted = self._addressed(tx, view.number, notices, change, now)
        if not ready:
            return []
        ids = tx.outbox.ids(len(ready))
        anchor = anchor or tx.history.thread_anchor(view.number)
        queued: list[Queued] = []
        sent: list[SentMessage] = []
        for outbox_id, notice in zip(ids, ready, strict=True):
            built = self.builder.build(view, queue, notice, change, now, anchor)
            rendered, message_id = built.rendered, built.message_id
            queued.append(
                Queued(
                    id=outbox_id,
                    ticket=view.number,
                    kind=notice.kind.value,
                    recipients=notice.to,
                    envelope_from=self.codec.bounce_address(outbox_id, built.domain),
                    message_id=message_id,
                    raw=built.raw,
                    at=now,
                )
            )
            sent.append(
                SentMessage(
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
                    at=now,
                )
            )
            log.info(
                "outbox.queued",
                outbox_id=outbox_id,
                kind=notice.kind.value,
                ticket=f"#{view.number}",
                recipients=len(notice.to),
                language=notice.language,
            )
        subjects = {q.id: s.subject for q, s in zip(queued, sent, strict=True)}
        tx.outbox.add(queued, [self.caps.subject(c, ids, subjects) for c in counted])
        tx.history.add_sent(sent)
        return ids

    def preview(
        self,
        anchor: Anchor,
        view: TicketView,
        queue: QueueConfig,
        kind: Kind,
        language: str,
        now: datetime,
    ) -> bytes:
        """The mail ``kind`` would be for this ticket now, without queueing it; ``anchor``:
        the thread's (``TicketRepo.thread_anchor``)."""
        latest = next((m for m in reversed(view.messages) if m.direction == "in"), None)
        to = (view.requester,) if view.requester else (queue.team_address,)
        if kind in (Kind.TEAM_NEW_TICKET, Kind.TEAM_CUSTOMER_REPLY, Kind.COMMAND_FAILED):
            to = (queue.team_address,)
        notice = Notice(kind, to, language, AUTO_SUBMITTED.get(kind, ""))
        change = Change(
            ticket=view.number,
            kind=MessageKind.CUSTOMER,
            author=latest.from_addr if latest else None,
            message_text=latest.text if latest else "",
        )
        return self.builder.build(view, queue, notice, change, now, anchor).raw


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
