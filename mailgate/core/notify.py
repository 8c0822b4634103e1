"""Decide which notifications a ticket change sends, to whom, and in which language.

The rules are a table read top to bottom; the shell renders each ``Notice``
from its template and writes it to the outbox in the same transaction as the
change. Nothing automatic is ever sent in answer to automatic mail.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from mailgate.core.classify import Decisions
from mailgate.core.model import MessageKind, ParsedMail, Participant, Role


class Kind(StrEnum):
    """Every notification mailgate sends; each has a template per language."""

    ACK = "ack"
    AGENT_REPLY = "agent_reply"
    STATUS_CHANGED = "status_changed"
    ACTION_REQUIRED = "action_required"
    RESOLVED = "resolved"
    CLOSED = "closed"  # an agent closed the ticket (``#close``) without a word to relay
    REMINDER = "reminder"
    TEAM_NEW_TICKET = "team_new_ticket"
    TEAM_CUSTOMER_REPLY = "team_customer_reply"
    TEAM_DELIVERY_FAILED = "team_delivery_failed"
    TEAM_COMPLAINT = "team_complaint"  # a recipient reported our mail as abuse or spam
    TEAM_HELD = "team_held"
    COMMAND_FAILED = "command_failed"
    COMMAND_HELP = "command_help"
    TEAM_NOTE = "team_note"
    TEAM_SLA_WARNING = "team_sla_warning"
    TEAM_SLA_BREACH = "team_sla_breach"
    PRIVACY_NOTICE = "privacy_notice"
    AGENT_UNPROVEN = "agent_unproven"  # to an agent: your mail was held, here is how to act


# RFC 3834: an acknowledgment answers a mail (auto-replied); other notices are generated.
# An agent's relayed answer is written by a person: it carries no Auto-Submitted.
AUTO_SUBMITTED: Mapping[Kind, str] = {
    kind: ("auto-replied" if kind is Kind.ACK else "auto-generated")
    for kind in Kind
    if kind is not Kind.AGENT_REPLY
}
LANGUAGES = ("nl", "en")
# Notices for the support team itself; the caps on automatic mail protect the outside world.
TEAM_KINDS = frozenset(
    {
        Kind.TEAM_NEW_TICKET,
        Kind.TEAM_CUSTOMER_REPLY,
        Kind.TEAM_DELIVERY_FAILED,
        Kind.TEAM_COMPLAINT,
        Kind.TEAM_HELD,
        Kind.COMMAND_FAILED,
        Kind.COMMAND_HELP,
        Kind.TEAM_NOTE,
        Kind.TEAM_SLA_WARNING,
        Kind.TEAM_SLA_BREACH,
        Kind.AGENT_UNPROVEN,
    }
)


@dataclass(frozen=True, slots=True)
class Notice:
    """One mail to send: which template, to whom, in which language."""

    kind: Kind
    to: tuple[str, ...]
    language: str
    auto_submitted: str


def capped(notice: Notice) -> bool:
    """Whether ``notice`` counts against the per-recipient and per-ticket caps."""
    return bool(notice.auto_submitted) and notice.kind not in TEAM_KINDS


@dataclass(frozen=True, slots=True)
class Audience:
    """Who is on a ticket, and the language settings that apply to it."""

    participants: tuple[Participant, ...]
    team_address: str
    queue_language: str
    organisation_languages: Mapping[str, str]
    ticket_language: str | None = None  # the ticket's customer's, once known


def language_for(mail: ParsedMail | None, audience: Audience, address: str | None) -> str:
    """The customer's language: their mail's Content-Language or Accept-Language, then the
    language of their text, then the ticket's (told by their first mail), then their
    organisation's setting, then the queue's default."""
    if mail is not None:
        told = said_language(mail)
        if told is not None:
            return told
    if audience.ticket_language in LANGUAGES:
        return str(audience.ticket_language)
    if address:
        domain = address.rpartition("@")[2].lower()
        if domain in audience.organisation_languages:
            return audience.organisation_languages[domain]
    return audience.queue_language


def said_language(mail: ParsedMail) -> str | None:
    """The language a mail declares (Content-Language, Accept-Language) or is written in."""
    for header in ("Content-Language", "Accept-Language"):
        for tag in re.split(r"[,;\s]+", (mail.header(header) or "").lower()):
            primary = tag.split("-")[0]
            if primary in LANGUAGES:
                return primary
    return mail.language if mail.language in LANGUAGES else None


def _customers(audience: Audience) -> tuple[str, ...]:
    return tuple(p.address for p in audience.participants if p.role is not Role.AGENT)


def on_new_ticket(
    mail: ParsedMail,
    audience: Audience,
    *,
    requester: str | None,
    decisions: Decisions,
    cc: bool = False,
) -> tuple[Notice, ...]:
    """A mail opened a ticket: acknowledge it if it may be answered (with ``cc``, to the
    customers in its Cc as well, who follow the ticket); tell the team if told to."""
    notices = []
    if requester is not None and decisions.answer:
        others = tuple(a for a in _customers(audience) if a != requester) if cc else ()
        notices.append(
            Notice(
                Kind.ACK,
                (requester, *others),
                language_for(mail, audience, requester),
                AUTO_SUBMITTED[Kind.ACK],
            )
        )
    if decisions.tell_team:
        notices.append(
            Notice(
                Kind.TEAM_NEW_TICKET,
                (audience.team_address,),
                audience.queue_language,
                AUTO_SUBMITTED[Kind.TEAM_NEW_TICKET],
            )
        )
    return tuple(notices)


def on_reply(
    mail: ParsedMail,
    audience: Audience,
    *,
    kind: MessageKind,
    author: str | None,
    decisions: Decisions,
) -> tuple[Notice, ...]:
    """A mail threaded onto a ticket: relay an agent's answer, or tell the team of a customer's.

    A machine's mail is relayed to nobody; the team hears of it only when its
    category says so.
    """
    if kind is MessageKind.AGENT and decisions.answer:
        customers = tuple(a for a in _customers(audience) if a != author)
        if not customers:
            return ()
        return (
            Notice(Kind.AGENT_REPLY, customers, language_for(None, audience, customers[0]), ""),
        )
    if not decisions.tell_team or (kind is MessageKind.AGENT):
        return ()
    return (
        Notice(
            Kind.TEAM_CUSTOMER_REPLY,
            (audience.team_address,),
            audience.queue_language,
            AUTO_SUBMITTED[Kind.TEAM_CUSTOMER_REPLY],
        ),
    )
