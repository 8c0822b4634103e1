"""The caps on automatic mail: who may get one more acknowledgment or notice this hour.

The loop breaker of last resort. Whatever slipped past the automatic-mail rules, a robot
answering every mail gets a handful of answers an hour, not one per mail: per ticket,
per mailbox, per organisation domain, and never an acknowledgment of our own echo.
Every count is read by index from ``auto_answers`` under an advisory lock per key.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import structlog

from mailgate.config import OutboundConfig
from mailgate.core.notify import Kind, Notice
from mailgate.core.parties import (
    PUBLIC_DOMAINS,
    AnswerLimits,
    AutoAnswer,
    cap_keys,
    domain_of,
    mailbox,
    subject_core,
    withheld,
)
from mailgate.core.subject import clean_subject
from mailgate.core.tokens import TokenCodec
from mailgate.store.repos import Tx
from mailgate.store.repos.outbox import Counted

log = structlog.get_logger("mailgate.notify")


@dataclass(frozen=True, slots=True)
class Caps:
    """Holds back the recipients a notice may not reach this hour; counts those it may."""

    outbound: OutboundConfig
    codec: TokenCodec

    def within(
        self,
        tx: Tx,
        ticket: int,
        notice: Notice,
        answering: str | None,
        now: datetime,
        counted: list[Counted],
    ) -> Notice:
        """Drop recipients (or the whole notice) that the caps on automatic mail and the loop
        rules of ``core.parties`` hold back: the ticket's cap per hour, each mailbox's cap,
        and for an acknowledgment an echo of our own mail or its domain's cap. ``counted``:
        the automatic mails of this call not yet written; ``answering``: the subject an
        acknowledgment answers (None for other notices). One statement holds the counts'
        records (``hold_counts``), one reads them (``cap_counts``).
        """
        out = self.outbound
        since = now - timedelta(hours=1)

        def held(reason: str) -> None:
            log.warning("outbox.held", kind=notice.kind.value, ticket=f"#{ticket}", reason=reason)

        # Each recipient's organisation domain, counted as a whole (None: a public one).
        wide = {a: None if d in PUBLIC_DOMAINS else d for a in notice.to for d in [domain_of(a)]}
        tx.outbox.hold_counts([f"ticket {ticket}", *(k for a in notice.to for k in cap_keys(a))])
        for_ticket, answers = tx.outbox.cap_counts(
            ticket,
            mailboxes={mailbox(a) for a, d in wide.items() if d is None},
            domains={d for d in wide.values() if d is not None},
            since=since,
        )
        this_call = len({c.outbox for c in counted})
        if for_ticket + this_call >= out.max_automatic_per_ticket_per_hour:
            held("ticket cap per hour reached")
            return replace(notice, to=())
        limits = AnswerLimits(
            per_mailbox=out.max_automatic_per_recipient_per_hour,
            per_domain=out.max_automatic_per_domain_per_hour,
        )
        allowed = []
        for address in notice.to:
            domain = wide[address]
            box = mailbox(address)
            recent = [
                a
                for a in (*answers, *(c.answer for c in counted))
                if (a.domain == domain if domain else a.mailbox == box)
            ]
            reason = withheld(address, recent, limits, answering=answering)
            if reason is None:
                allowed.append(address)
            else:
                held(reason)
        return replace(notice, to=tuple(allowed))

    def counted(self, ticket: int, notice: Notice, index: int, now: datetime) -> list[Counted]:
        """An automatic mail per recipient, for the caps and the loop rules; ``index``:
        its place among the call's notices (the outbox id is drawn later), the subject
        filled in once rendered (``subject``)."""
        return [
            Counted(
                index,
                notice.kind.value,
                ticket,
                AutoAnswer(mailbox(address), domain_of(address), "", now, notice.kind is Kind.ACK),
            )
            for address in notice.to
        ]

    def subject(self, counted: Counted, ids: list[int], subjects: dict[int, str]) -> Counted:
        """``counted`` with its outbox id and its subject without our tag."""
        outbox_id = ids[counted.outbox]
        subject = subjects[outbox_id]
        core = subject_core(clean_subject(subject, remove=self.codec.tag_spans(subject)))
        return replace(counted, outbox=outbox_id, answer=replace(counted.answer, subject=core))
