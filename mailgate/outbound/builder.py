"""One notice built: its template context from the ticket's facts, rendered, composed as MIME.

The notifier decides who gets which notice; this fills the template's context
(ticket, people, status labels, SLA target, the answer text), renders it in the
notice's language and composes the mail with its threading and loop headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import make_msgid
from typing import TYPE_CHECKING

from mailgate.config import Config, QueueConfig
from mailgate.core.address import AddressPolicy
from mailgate.core.agent_words import command_reference, faults_text, signs_off
from mailgate.core.model import Role, TicketView
from mailgate.core.notify import TEAM_KINDS, Kind, Notice
from mailgate.core.sessions import Signer
from mailgate.core.sla import SlaPolicy
from mailgate.core.terms import label
from mailgate.core.tokens import TokenCodec
from mailgate.outbound.render import (
    MailHeaders,
    NoticeContext,
    Rendered,
    Templates,
    TicketFacts,
    compose,
)

if TYPE_CHECKING:
    from mailgate.outbound.notifier import Change


@dataclass(frozen=True, slots=True)
class Built:
    """A notice ready for the outbox: rendered, as MIME bytes, its Message-ID and domain."""

    rendered: Rendered
    raw: bytes
    message_id: str
    domain: str


@dataclass(frozen=True, slots=True)
class NoticeBuilder:
    """Renders and composes notices for one installation's config and templates."""

    config: Config
    templates: Templates
    codec: TokenCodec
    policy: AddressPolicy
    sla: SlaPolicy

    def build(
        self,
        view: TicketView,
        queue: QueueConfig,
        notice: Notice,
        change: Change,
        now: datetime,
        anchor: tuple[str | None, tuple[str, ...]],
    ) -> Built:
        """The notice rendered and composed, threaded under ``anchor``."""
        from_address = queue.addresses[0]
        domain = self.config.outbound.domain or from_address.rpartition("@")[2]
        token = self.codec.token(view.number)
        reply_to = (
            self.policy.plus_address(from_address, token)
            if self.config.addresses.plus_addressing
            else from_address
        )
        rendered = self.templates.render(
            notice.kind, notice.language, self.context(view, notice, change)
        )
        in_reply_to, references = anchor
        message_id = make_msgid(domain=domain).strip("<>")
        raw = compose(
            rendered,
            MailHeaders(
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
        return Built(rendered, raw, message_id, domain)

    def context(self, view: TicketView, notice: Notice, change: Change) -> NoticeContext:
        """What the notice's template is given: the ticket, its people, the change."""
        requester = next((p for p in view.participants if p.role is Role.REQUESTER), None)
        author = next((p for p in view.participants if p.address == change.author), None)
        language, workflow = notice.language, self.config.workflow

        def status_label(name: str) -> str:
            known = self.config.workflow.find(name) if name else None
            return known.label(language) if known else name

        # An agent without a display name signs as the team: never their bare address.
        author_name = (author.name if author else "") or self.config.outbound.from_name
        return NoticeContext(
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
            author_name=author_name,
            message_text=change.message_text,
            signed=signs_off(change.message_text, author_name),
            reason=faults_text(change.faults, language, workflow) or change.reason,
            old_status=status_label(change.old_status),
            new_status=status_label(change.new_status or view.status),
            action=change.action,
            type_label=label(view.type, language),
            priority_label=label(view.priority, language),
            asked_priority=label(change.asked_priority, language) if change.asked_priority else "",
            quote=change.quote,
            commands=command_reference(workflow, language) if change.help or change.faults else "",
            answer_target=self.answer_target(view, language),
            missing_fields=change.missing_fields,
            link=self.link(view.number, notice),
        )

    def link(self, number: int, notice: Notice) -> str:
        """The web desk's page for the notice's reader, when ``[web] public_url`` is set:
        the team's ticket page, or a customer's own link; a notice to several customers
        carries none (one person's link would let the others act as that person)."""
        web = self.config.web
        if not (web.enabled and web.public_url):
            return ""
        if notice.kind in TEAM_KINDS:
            return f"{web.base_url}/tickets/{number}"
        if len(notice.to) != 1:
            return ""
        return web.base_url + Signer(self.codec.secret).link_path(number, notice.to[0])

    def answer_target(self, view: TicketView, language: str) -> str:
        """The answer target in words ("binnen 2 werkdagen"), or "" without one."""
        answer = self.sla.for_ticket(view.type, view.priority).answer
        return answer.words(language) if answer else ""
