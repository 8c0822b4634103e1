"""Understanding a spooled mail before any transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP

from mailgate.config import IntakeConfig
from mailgate.core.address import AddressPolicy, QueueAddresses
from mailgate.core.classify import Category
from mailgate.core.model import SpoolEntry
from mailgate.core.tokens import TokenCodec
from mailgate.tickets.prepare import (
    Preparer,
)
from tests.mails import make_mail

CODEC = TokenCodec(b"prepare-test-secret-0123456789", "install-1")
POLICY = AddressPolicy(queues=(QueueAddresses("support", ("support@example.com",)),))
INTAKE = IntakeConfig(
    fallback_charsets=("utf-8",),
    max_attachment_size=1000,
    max_attachments_size=5000,
    max_attachments=10,
    max_parts=100,
)
PREPARER = Preparer(CODEC, POLICY, INTAKE)


def entry(n: int = 1, envelope_to: tuple[str, ...] = ()) -> SpoolEntry:
    return SpoolEntry(
        id=n,
        dedupe_key=f"k{n}",
        raw_sha256="0" * 64,
        size=0,
        message_id=None,
        source="test",
        envelope_from=None,
        envelope_to=envelope_to,
        received_at=datetime(2026, 3, 2, tzinfo=UTC),
        state="pending",
        attempts=0,
        outcome=None,
        ticket=None,
        reason=None,
        error=None,
        traceback_id=None,
    )


def with_files(*sizes: int) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "alice@customer.nl"
    msg["To"] = "support@example.com"
    msg["Subject"] = f"RE: {CODEC.subject_tag(4)} bijlagen"
    msg.set_content("zie bijlagen")
    for n, size in enumerate(sizes):
        msg.add_attachment(b"x" * size, maintype="application", subtype="pdf", filename=f"{n}.pdf")
    return msg.as_bytes()


def test_a_mail_is_parsed_kept_within_the_limits_and_its_evidence_gathered() -> None:
    item = PREPARER.prepare(entry(), with_files(100, 5000, 200), drop_raw=True)
    assert [a.filename for a in item.mail.attachments] == ["0.pdf", "2.pdf"]
    assert [a.filename for a in item.skipped] == ["1.pdf"]
    assert [t.number for t in item.evidence.subject_tokens] == [4]
    assert item.classified.category is Category.PERSON
    assert item.report is None and item.drop_raw


def test_a_bounce_comes_with_its_delivery_report() -> None:
    raw = make_mail(
        sender="MAILER-DAEMON@mx.customer.nl",
        subject="Undelivered Mail Returned to Sender",
        body="Final-Recipient: rfc822; bob@customer.nl\nAction: failed\nStatus: 5.1.1\n",
        headers={"Auto-Submitted": "auto-replied"},
    )
    item = PREPARER.prepare(entry(), raw, drop_raw=False)
    assert item.report is not None


def test_what_a_mail_shares_with_others_names_its_thread_and_whom_the_caps_count() -> None:
    def shared(raw: bytes) -> frozenset[str]:
        return PREPARER.prepare(entry(), raw, drop_raw=False).shared()

    reply = shared(
        make_mail(
            sender="Klant <k.de.vries+werk@org.nl>",
            subject=f"RE: {CODEC.subject_tag(7)} printer",
            references="<first@org.nl>",
        )
    )
    assert {"ticket 7", "message first@org.nl", "mailbox k.de.vries@org.nl", "domain org.nl"} <= (
        reply
    )
    # A mailbox at a public provider counts for itself; its domain is everybody's.
    assert shared(make_mail(sender="jan@gmail.com")) == {"mailbox jan@gmail.com"}
    bounce = make_mail(
        sender="MAILER-DAEMON@mx.org.nl",
        subject="Undelivered Mail",
        body="Final-Recipient: rfc822; k@org.nl\nAction: failed\nStatus: 5.1.1\n",
    )
    assert "bounces" in shared(bounce)
