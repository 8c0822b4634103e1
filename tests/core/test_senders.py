from __future__ import annotations

import pytest

from mailgate.core.address import AddressPolicy, QueueAddresses
from mailgate.core.model import ParsedMail, Participant, Role
from mailgate.core.parse import parse_mail
from mailgate.core.senders import (
    Authority,
    agent_authority,
    auth_results,
    authenticated,
    authentication_failure,
    judge_sender,
)
from tests.mails import make_mail

PEOPLE = (
    Participant("alice@customer.nl", "Alice", Role.REQUESTER, "customer.nl"),
    Participant("bob@gmail.com", "Bob", Role.CC, "gmail.com"),
    Participant("piet@example.com", "Piet", Role.AGENT, "example.com"),
)


CUSTOMER_SIDE = Authority(agent=False, claimed=False, reason="not from an agent address")


def test_participants_and_colleagues_are_known() -> None:
    assert judge_sender("Alice@Customer.nl", PEOPLE, CUSTOMER_SIDE).known
    colleague = judge_sender("carla@customer.nl", PEOPLE, CUSTOMER_SIDE)
    assert colleague.known and colleague.reason == "colleague at customer.nl"


def test_strangers_and_free_mail_neighbours_are_not() -> None:
    stranger = judge_sender("eve@elsewhere.org", PEOPLE, CUSTOMER_SIDE)
    assert not stranger.known and stranger.reason == "eve@elsewhere.org is not on the ticket"
    # Bob is at gmail.com; that makes nobody else at gmail.com his colleague.
    assert not judge_sender("mallory@gmail.com", PEOPLE, CUSTOMER_SIDE).known
    assert not judge_sender(None, PEOPLE, CUSTOMER_SIDE).known


def test_an_agent_is_judged_by_proof_alone_not_by_being_on_the_ticket() -> None:
    unproven = Authority(agent=False, claimed=True, reason="did not answer a team notice")
    verdict = judge_sender("piet@example.com", PEOPLE, unproven)
    assert not verdict.known and verdict.reason == "did not answer a team notice"
    proven = Authority(agent=True, claimed=True, reason="agent: answers team notice <n@x>")
    assert judge_sender("kees@example.com", PEOPLE, proven).known


POLICY = AddressPolicy(
    queues=(QueueAddresses("support", ("support@example.com",)),),
    agent_domains=("example.com",),
)


def _authority(
    raw: bytes, *, notice: str | None = "n1@example.com", trusted: tuple[str, ...] = ()
) -> Authority:
    return agent_authority(parse_mail(raw), POLICY, answers_team=notice, trusted=trusted)


@pytest.mark.parametrize(
    ("sender", "notice", "agent", "claimed", "why"),
    [
        ("Piet <piet@example.com>", "n1@example.com", True, True, "answers team notice"),
        ("Piet <PIET@EXAMPLE.COM>", None, False, True, "did not answer a team notice"),
        ("piet@example.com, eve@evil.example", "n1@example.com", False, True, "2 addresses"),
        ("eve@evil.example", "n1@example.com", False, False, "not from an agent address"),
        ("piet@example.com.evil.example", "n1@example.com", False, False, "not from an agent"),
        ("support@example.com", "n1@example.com", False, False, "not from an agent address"),
    ],
    ids=["proven", "no-notice", "two-from", "outsider", "lookalike", "our-own-address"],
)
def test_agent_authority_needs_one_agent_from_answering_a_team_notice(
    sender: str, notice: str | None, agent: bool, claimed: bool, why: str
) -> None:
    found = _authority(make_mail(sender=sender), notice=notice)
    assert (found.agent, found.claimed) == (agent, claimed) and why in found.reason


def test_sender_or_reply_to_never_make_an_agent() -> None:
    for header in ("Sender", "Reply-To"):
        raw = make_mail(sender="eve@evil.example", headers={header: "piet@example.com"})
        assert not _authority(raw).claimed
    # No From at all: the Sender fallback names the author, but never speaks for the team.
    raw = make_mail(sender=None, headers={"Sender": "piet@example.com"})
    found = _authority(raw)
    assert found.claimed and not found.agent


def test_a_trusted_server_must_vouch_for_the_agent() -> None:
    trusted = ("mx.example.com",)
    passing = b"Authentication-Results: mx.example.com; dkim=pass header.d=example.com\r\n"
    assert _authority(passing + make_mail(sender="piet@example.com"), trusted=trusted).agent
    missing = _authority(make_mail(sender="piet@example.com"), trusted=trusted)
    assert not missing.agent and "no DKIM or DMARC pass" in missing.reason
    failing = b"Authentication-Results: mx.example.com; dkim=fail header.d=example.com\r\n"
    found = _authority(failing + make_mail(sender="piet@example.com"), trusted=trusted)
    assert not found.agent and "dkim=fail" in found.reason


AUTH = (
    "mx.example.com; dkim=fail (signature did not verify) header.d=example.com "
    "header.i=@example.com; spf=softfail smtp.mailfrom=example.com; "
    "dmarc=fail (p=reject dis=none) header.from=example.com"
)


def _mail(*values: str, sender: str = "Piet <piet@example.com>") -> ParsedMail:
    raw = make_mail(sender=sender)
    extra = b"".join(f"Authentication-Results: {v}\r\n".encode() for v in values)
    return parse_mail(extra + raw)


def test_authentication_results_are_read_without_comments() -> None:
    results = auth_results(_mail(AUTH))
    assert [(r.authserv_id, r.method, r.result, r.domain) for r in results] == [
        ("mx.example.com", "dkim", "fail", "example.com"),
        ("mx.example.com", "spf", "softfail", "example.com"),
        ("mx.example.com", "dmarc", "fail", "example.com"),
    ]


def test_only_a_trusted_receiver_is_believed() -> None:
    mail = _mail(AUTH)
    assert authentication_failure(mail, ["mx.example.com"]) == (
        "dkim=fail for example.com (mx.example.com)"
    )
    assert authentication_failure(mail, ["other.example.net"]) is None
    assert authentication_failure(mail, []) is None


def test_a_pass_is_no_failure_and_a_third_party_signature_does_not_count() -> None:
    passing = _mail("mx.example.com; dkim=pass header.d=example.com; dmarc=pass")
    assert authentication_failure(passing, ["mx.example.com"]) is None
    # A failing signature of a mailing list's domain says nothing about the author's domain.
    other = _mail("mx.example.com; dkim=fail header.d=lists.example.org; dmarc=pass")
    assert authentication_failure(other, ["mx.example.com"]) is None


def test_only_the_topmost_header_of_a_trusted_server_counts() -> None:
    # The receiving MTA prepends its verdict; a "pass" the sender wrote below it is ignored.
    mail = _mail(
        "mx.example.com; dkim=none",
        "mx.example.com; dkim=pass header.d=example.com; dmarc=pass header.from=example.com",
    )
    assert authenticated(mail, ["mx.example.com"]) is None
    ok = _mail("mx.example.com; dmarc=pass header.from=example.com", "mx.example.com; dkim=fail")
    assert authenticated(ok, ["mx.example.com"]) == "dmarc=pass for example.com (mx.example.com)"


def test_dkim_of_a_parent_domain_vouches_for_a_subdomain_but_not_the_reverse() -> None:
    sub = _mail("mx.example.com; dkim=pass header.d=example.com", sender="p@eu.example.com")
    assert authenticated(sub, ["mx.example.com"]) is not None
    parent = _mail("mx.example.com; dkim=pass header.d=eu.example.com")
    assert authenticated(parent, ["mx.example.com"]) is None


def test_a_verdictless_header_of_the_trusted_server_still_hides_a_forged_pass_below() -> None:
    mail = _mail("mx.example.com; none", "mx.example.com; dkim=pass header.d=example.com")
    assert authenticated(mail, ["mx.example.com"]) is None
