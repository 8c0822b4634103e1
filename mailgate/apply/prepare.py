"""The CPU work on a spooled mail, before any transaction: parse, keep within the limits,
gather the routing evidence, classify, read a delivery report. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, replace

from mailgate.config import IntakeConfig
from mailgate.core.address import AddressPolicy
from mailgate.core.bounces import DeliveryReport, delivery_report
from mailgate.core.classify import Category, Classification, classify, confirm_bounce, may_be_bounce
from mailgate.core.model import Attachment, ParsedMail, SpoolEntry, within_limits
from mailgate.core.parse import parse_mail
from mailgate.core.route import Evidence, gather_evidence
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


@dataclass(frozen=True, slots=True)
class Preparer:
    codec: TokenCodec
    policy: AddressPolicy
    intake: IntakeConfig

    def prepare(self, entry: SpoolEntry, raw: bytes, *, drop_raw: bool) -> Prepared:
        limits = self.intake
        mail = parse_mail(raw, limits.fallback_charsets, limits.max_parts)
        kept, skipped = within_limits(
            mail.attachments,
            limits.max_attachment_size,
            limits.max_attachments_size,
            limits.max_attachments,
        )
        mail = replace(mail, attachments=kept)
        evidence = gather_evidence(mail, entry.envelope_to, self.codec, self.policy)
        classified = classify(mail, entry.envelope_from, self.codec.installation_id)
        report = None
        if (
            classified.category is Category.BOUNCE
            or evidence.bounces
            or may_be_bounce(classified, mail)
        ):
            report = delivery_report(mail, raw)
            classified = confirm_bounce(classified, mail, report.recipients)
        return Prepared(entry, mail, tuple(skipped), evidence, classified, report, drop_raw)
