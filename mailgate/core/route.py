"""Decide where a mail belongs: a reply to an existing ticket, a new ticket, or neither.

Routing runs in two pure steps around one lookup. ``gather_evidence`` reads the
mail for every sign of a thread (Message-IDs it answers, ticket tokens in its
subject, plus-addresses among its recipients); the shell then asks the database
which tickets those name; ``route`` weighs the answers in a fixed order:

1. In-Reply-To, then References from newest to oldest: a Message-ID that
   mailgate sent or received for a ticket;
2. a ticket token in the subject whose check verifies;
3. a recipient that is a ticket's plus-address, with a verifying token.

Only when none names a ticket does the mail open a new one. The subject alone
never threads: two customers with the subject "Printer" get two tickets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mailgate.core.address import AddressPolicy
from mailgate.core.classify import PERSON, Category, Classification
from mailgate.core.model import (
    BounceOfOurs,
    Drop,
    NewTicket,
    ParsedMail,
    Reply,
    Route,
    SystemMail,
)
from mailgate.core.subject import clean_subject
from mailgate.core.tokens import FoundToken, TokenCodec

# Headers in which an MTA records the envelope recipient, read when no envelope was given.
DELIVERY_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To")


@dataclass(frozen=True, slots=True)
class Evidence:
    """What one mail says about its thread and its queue, before any lookup."""

    references: tuple[tuple[str, str], ...]  # (header name, message-id), strongest first
    subject_tokens: tuple[FoundToken, ...]
    plus_tokens: tuple[tuple[str, FoundToken], ...]  # (recipient, token)
    queue: str
    title: str
    bounces: tuple[tuple[str, int], ...] = ()  # (our VERP address, outbox id), checks verified

    @property
    def ticket_numbers(self) -> frozenset[int]:
        """The ticket numbers named by verifying tokens, for the lookup."""
        tokens = [*self.subject_tokens, *(t for _, t in self.plus_tokens)]
        return frozenset(t.number for t in tokens if t.valid)

    @property
    def message_ids(self) -> tuple[str, ...]:
        return tuple(mid for _, mid in self.references)

    @property
    def rejected_tokens(self) -> tuple[str, ...]:
        tokens = [*self.subject_tokens, *(t for _, t in self.plus_tokens)]
        return tuple(t.text for t in tokens if not t.valid)


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the database knows about the evidence."""

    tickets_by_message_id: Mapping[str, int]
    existing_tickets: frozenset[int]
    outbox_by_message_id: Mapping[str, int] = field(default_factory=dict)
    merged_into: Mapping[int, int] = field(default_factory=dict)  # merged ticket -> survivor
    # Message-IDs among the evidence that are notices only the team received.
    team_notices: frozenset[str] = frozenset()

    def team_notice(self, evidence: Evidence) -> str | None:
        """The first Message-ID the mail answers that only the team received, if any."""
        return next((mid for mid in evidence.message_ids if mid in self.team_notices), None)

    def canonical(self, ticket: int) -> int:
        """The ticket that ``ticket``'s mail now lands on (itself unless merged away)."""
        seen = {ticket}
        while ticket in self.merged_into:
            ticket = self.merged_into[ticket]
            if ticket in seen:
                break
            seen.add(ticket)
        return ticket


def recipients(mail: ParsedMail, envelope: Iterable[str]) -> tuple[str, ...]:
    """Every address the mail was delivered or addressed to, envelope first, unique."""
    found: dict[str, None] = {}
    for address in envelope:
        found.setdefault(address.strip().strip("<>"), None)
    for header in DELIVERY_HEADERS:
        value = mail.header(header)
        if value:
            found.setdefault(value.strip().strip("<>"), None)
    for person in (*mail.to, *mail.cc):
        found.setdefault(person.email, None)
    return tuple(a for a in found if a)


def gather_evidence(
    mail: ParsedMail,
    envelope: Iterable[str],
    codec: TokenCodec,
    policy: AddressPolicy,
    own_prefixes: tuple[str, ...] = (),
) -> Evidence:
    """Read every routing sign out of ``mail``; pure. ``own_prefixes``: what our notices'
    subjects put before a title (``Templates.subject_prefixes``)."""
    references = [("In-Reply-To", mid) for mid in mail.in_reply_to]
    references += [("References", mid) for mid in reversed(mail.references)]
    unique: dict[str, tuple[str, str]] = {}
    for header, mid in references:
        unique.setdefault(mid, (header, mid))

    queue_order = [q.queue for q in policy.queues]
    matched_queues: set[str] = set()
    plus_tokens: list[tuple[str, FoundToken]] = []
    bounces: list[tuple[str, int]] = []
    for address in recipients(mail, envelope):
        detail = policy.bounce_detail(address)
        if detail is not None:
            outbox_id, _, check = detail.partition("-")
            if outbox_id.isdigit() and check == codec.sign("outbox", int(outbox_id)).lower():
                bounces.append((address, int(outbox_id)))
            continue
        own = policy.match(address)
        if own is None:
            continue
        matched_queues.add(own.queue)
        if own.detail:
            token = codec.parse_token(own.detail)
            if token is not None:
                plus_tokens.append((address, token))
    queue = next((q for q in queue_order if q in matched_queues), policy.default_queue())
    return Evidence(
        references=tuple(unique.values()),
        subject_tokens=codec.find_in_subject(mail.subject),
        plus_tokens=tuple(plus_tokens),
        queue=queue,
        title=clean_subject(mail.subject, remove=codec.tag_spans(mail.subject), own=own_prefixes),
        bounces=tuple(bounces),
    )


def route(
    mail: ParsedMail,
    evidence: Evidence,
    lookup: Lookup,
    policy: AddressPolicy,
    kind: Classification = PERSON,
    returned_message_ids: tuple[str, ...] = (),
) -> Route:
    """The routing decision for ``mail``, with the evidence that decided it.

    ``kind``: what wrote the mail (``classify``); ``returned_message_ids``: for a
    bounce, the Message-IDs of the original it returns.
    """
    for address, outbox_id in evidence.bounces:
        return BounceOfOurs(outbox_id, f"VERP address {address}")
    if kind.category is Category.BOUNCE:
        for mid in returned_message_ids:
            returned = lookup.outbox_by_message_id.get(mid)
            if returned is not None:
                return BounceOfOurs(returned, f"returned Message-ID <{mid}>")
    if mail.from_addr is not None and policy.is_ours(mail.from_addr.email):
        return Drop(f"sent from our own address {mail.from_addr.email}")
    for header, mid in evidence.references:
        ticket = lookup.tickets_by_message_id.get(mid)
        if ticket is not None:
            return Reply(lookup.canonical(ticket), header.lower(), f"<{mid}>")
    for token in evidence.subject_tokens:
        if token.valid and token.number in lookup.existing_tickets:
            return Reply(lookup.canonical(token.number), "subject-token", token.text)
    for address, token in evidence.plus_tokens:
        if token.valid and token.number in lookup.existing_tickets:
            return Reply(lookup.canonical(token.number), "plus-address", address)
    reason = "no ticket reference"
    if evidence.rejected_tokens:
        reason = f"token check failed: {', '.join(evidence.rejected_tokens)}"
    if not kind.decisions.create_ticket:
        return SystemMail(f"{kind.category.value} ({kind.reason}); {reason}, so no ticket")
    return NewTicket(evidence.queue, evidence.title, reason)
