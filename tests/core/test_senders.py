from __future__ import annotations

from mailgate.core.model import ParsedMail, Participant, Role
from mailgate.core.parse import parse_mail
from mailgate.core.senders import auth_results, authentication_failure, judge_sender
from tests.mails import make_mail

PEOPLE = (
    Participant("alice@customer.nl", "Alice", Role.REQUESTER, "customer.nl"),
    Participant("bob@gmail.com", "Bob", Role.CC, "gmail.com"),
    Participant("piet@example.com", "Piet", Role.AGENT, "example.com"),
)


def test_participants_agents_and_colleagues_are_known() -> None:
    assert judge_sender("Alice@Customer.nl", PEOPLE, is_agent=False, forged=None).known
    assert judge_sender("kees@example.com", PEOPLE, is_agent=True, forged=None).known
    colleague = judge_sender("carla@customer.nl", PEOPLE, is_agent=False, forged=None)
    assert colleague.known and colleague.reason == "colleague at customer.nl"


def test_strangers_and_free_mail_neighbours_are_not() -> None:
    stranger = judge_sender("eve@elsewhere.org", PEOPLE, is_agent=False, forged=None)
    assert not stranger.known and stranger.reason == "eve@elsewhere.org is not on the ticket"
    # Bob is at gmail.com; that makes nobody else at gmail.com his colleague.
    assert not judge_sender("mallory@gmail.com", PEOPLE, is_agent=False, forged=None).known
    # The agents' own domain is not the customer's organisation.
    assert not judge_sender(None, PEOPLE, is_agent=False, forged=None).known


def test_a_forged_agent_is_not_known() -> None:
    verdict = judge_sender("piet@example.com", PEOPLE, is_agent=True, forged="dmarc=fail")
    assert not verdict.known and "claims to be agent" in verdict.reason


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
