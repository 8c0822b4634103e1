"""The CPU work on a spooled mail, before any transaction: parse, understand, classify.

Within the limits, with the routing evidence and a delivery report where it may be a
bounce. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, replace

from mailgate.config import IntakeConfig
from mailgate.core.address import AddressPolicy
from mailgate.core.bounces import DeliveryReport, delivery_report
from mailgate.core.classify import Category, Classification, classify, confirm_bounce, may_be_bounce
from mailgate.core.header_addresses import with_envelope_sender
from mailgate.core.language import detect_language
from mailgate.core.model import Attachment, ParsedMail, SpoolEntry, within_limits
from mailgate.core.notify import LANGUAGES
from mailgate.core.parse import parse_mail
from mailgate.core.parties import cap_keys
from mailgate.core.privacy import for_display
from mailgate.core.route import Evidence, gather_evidence
from mailgate.core.text import visible_reply
from mailgate.core.tokens import TokenCodec


@dataclass(frozen=True, slots=True)
class Prepared:
    """A spooled mail, understood: what the transaction that applies it needs."""

    entry: SpoolEntry
    mail: ParsedMail  # its attachments within the limits
    skipped: tuple[Attachment, ...]  # attachments over the limits, kept in the raw mail only
    evidence: Evidence
    classified: Classification
    report: DeliveryReport | None  # when it may be a bounce of ours
    drop_raw: bool  # the bytes moved from the spool row into the blob store: the row's go
    shown: ParsedMail  # as it is stored and shown: BSN numbers masked, HTML sanitised
    masked: int  # how many BSN numbers were masked
    visible: str  # the author's own text of ``shown`` (no quoted history, no signature)

    def shared(self) -> frozenset[str]:
        """What applying this mail may lock or count that another mail's application may
        too: the tickets and messages it names, the mailboxes and organisation domains
        its automatic answer would go to (the caps), and one key for every bounce (they
        touch the outbox rows they return). Mails that share none can be applied side by
        side without waiting for each other."""
        keys = {f"ticket {n}" for n in self.evidence.ticket_numbers}
        keys.update(f"message {m}" for m in self.evidence.message_ids)
        mail = self.mail
        for address in (mail.from_addr, *mail.reply_to):
            if address is None:
                continue
            keys.update(cap_keys(address.email))
        if self.report is not None or self.evidence.bounces:
            keys.add("bounces")
        return frozenset(keys)


@dataclass(frozen=True, slots=True)
class Preparer:
    codec: TokenCodec
    policy: AddressPolicy
    intake: IntakeConfig
    own_prefixes: tuple[str, ...] = ()  # our notices' subject prefixes (no new titles of them)

    def prepare(self, entry: SpoolEntry, raw: bytes, *, drop_raw: bool) -> Prepared:
        limits = self.intake
        mail = parse_mail(raw, limits.fallback_charsets, limits.max_parts)
        mail = with_envelope_sender(mail, entry.envelope_from)
        kept, skipped = within_limits(
            mail.attachments,
            limits.max_attachment_size,
            limits.max_attachments_size,
            limits.max_attachments,
        )
        mail = replace(mail, attachments=kept)
        evidence = gather_evidence(
            mail, entry.envelope_to, self.codec, self.policy, self.own_prefixes
        )
        classified = classify(mail, entry.envelope_from, self.codec.installation_id)
        report = None
        if (
            classified.category is Category.BOUNCE
            or evidence.bounces
            or may_be_bounce(classified, mail)
        ):
            report = delivery_report(mail, raw)
            classified = confirm_bounce(classified, mail, report.recipients)
        shown, masked = for_display(mail)
        visible = visible_reply(shown)
        if classified.category is Category.PERSON:  # whom we may answer: in their language
            shown = replace(shown, language=detect_language(visible, LANGUAGES))
        return Prepared(
            entry, mail, tuple(skipped), evidence, classified, report, drop_raw,
            shown, masked, visible,
        )  # fmt: skip
