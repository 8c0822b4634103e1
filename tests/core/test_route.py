"""Routing, pure: the evidence a mail carries, and the order in which it decides."""

from __future__ import annotations

from mailgate.core.address import AddressPolicy, QueueAddresses
from mailgate.core.classify import classify
from mailgate.core.model import BounceOfOurs, Drop, NewTicket, Reply, SystemMail
from mailgate.core.parse import parse_mail
from mailgate.core.route import Evidence, Lookup, gather_evidence, recipients, route
from mailgate.core.tokens import TokenCodec
from tests.mails import make_mail

CODEC = TokenCodec(b"route-test-secret-0123456789", "install-1")
POLICY = AddressPolicy(
    queues=(
        QueueAddresses("support", ("support@example.com",)),
        QueueAddresses("billing", ("billing@example.com",)),
    ),
    bounce_domains=("example.com",),
)
NOBODY = Lookup({}, frozenset())


def evidence_of(raw: bytes, envelope: tuple[str, ...] = ()) -> tuple[Evidence, object]:
    mail = parse_mail(raw)
    return gather_evidence(mail, envelope, CODEC, POLICY), mail


def decide(raw: bytes, lookup: Lookup = NOBODY, envelope: tuple[str, ...] = ()) -> object:
    mail = parse_mail(raw)
    evidence = gather_evidence(mail, envelope, CODEC, POLICY)
    return route(mail, evidence, lookup, POLICY, classify(mail, None, "install-1"))


def test_in_reply_to_comes_first_then_references_newest_first() -> None:
    raw = make_mail(in_reply_to="<c@x>", references="<a@x> <b@x> <c@x>")
    evidence, _ = evidence_of(raw)
    assert [mid for _, mid in evidence.references] == ["c@x", "b@x", "a@x"]
    assert evidence.references[0][0] == "In-Reply-To"
    lookup = Lookup({"a@x": 1, "b@x": 2}, frozenset({1, 2}))
    assert decide(raw, lookup) == Reply(2, "references", "<b@x>")


def test_a_known_message_id_beats_a_subject_token_of_another_ticket() -> None:
    raw = make_mail(subject=f"RE: {CODEC.subject_tag(7)} iets", in_reply_to="<m@x>")
    lookup = Lookup({"m@x": 3}, frozenset({3, 7}))
    assert decide(raw, lookup) == Reply(3, "in-reply-to", "<m@x>")


def test_a_subject_token_threads_only_onto_a_ticket_that_exists() -> None:
    raw = make_mail(subject=f"RE: {CODEC.subject_tag(7)} iets")
    found = decide(raw, Lookup({}, frozenset({7})))
    assert isinstance(found, Reply) and (found.ticket, found.matched_by) == (7, "subject-token")
    missing = decide(raw)
    assert isinstance(missing, NewTicket) and missing.reason == "no ticket reference"


def test_a_token_with_a_wrong_check_opens_a_new_ticket_and_says_why() -> None:
    forged = CODEC.subject_tag(7).replace(CODEC.check(7), "0000000X")
    found = decide(make_mail(subject=f"RE: {forged} iets"), Lookup({}, frozenset({7})))
    assert isinstance(found, NewTicket) and found.reason.startswith("token check failed")


def test_a_plus_address_threads_and_picks_its_queue() -> None:
    address = f"billing+{CODEC.token(5).lower()}@example.com"
    raw = make_mail(to=address, subject="hoi")
    evidence, _ = evidence_of(raw)
    assert evidence.queue == "billing"
    assert decide(raw, Lookup({}, frozenset({5}))) == Reply(5, "plus-address", address)


def test_the_subject_alone_never_threads() -> None:
    found = decide(make_mail(subject="Printer"), Lookup({}, frozenset({1})))
    assert isinstance(found, NewTicket) and found.title == "Printer"


def test_mail_for_a_merged_ticket_lands_on_the_survivor() -> None:
    lookup = Lookup({"m@x": 4}, frozenset({4, 9, 12}), merged_into={4: 9, 9: 12})
    assert decide(make_mail(in_reply_to="<m@x>"), lookup) == Reply(12, "in-reply-to", "<m@x>")
    looped = Lookup({"m@x": 4}, frozenset({4, 9}), merged_into={4: 9, 9: 4})
    assert isinstance(decide(make_mail(in_reply_to="<m@x>"), looped), Reply)  # no endless loop


def test_a_verp_address_is_a_bounce_only_with_its_check() -> None:
    good = f"bounces+17-{CODEC.sign('outbox', 17).lower()}@example.com"
    assert decide(make_mail(subject="Undelivered"), envelope=(good,)) == BounceOfOurs(
        17, f"VERP address {good}"
    )
    forged = "bounces+17-aaaaaaaa@example.com"
    assert not isinstance(
        decide(make_mail(subject="Undelivered"), envelope=(forged,)), BounceOfOurs
    )


def test_mail_from_our_own_address_is_dropped() -> None:
    found = decide(make_mail(sender="support@example.com", in_reply_to="<m@x>"))
    assert isinstance(found, Drop)


def test_a_machine_mail_that_names_no_ticket_opens_none() -> None:
    raw = make_mail(subject="Out of office", headers={"Auto-Submitted": "auto-replied"})
    assert isinstance(decide(raw), SystemMail)


def test_recipients_come_envelope_first_then_delivery_headers_then_to_and_cc() -> None:
    raw = make_mail(
        to="support@example.com",
        cc="Billing <billing@example.com>",
        headers={"Delivered-To": "support+x@example.com"},
    )
    mail = parse_mail(raw)
    assert recipients(mail, ("<env@example.com>",)) == (
        "env@example.com",
        "support+x@example.com",
        "support@example.com",
        "billing@example.com",
    )
