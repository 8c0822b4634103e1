from __future__ import annotations

import pytest

from mailgate.core.classify import DECISIONS, Category
from mailgate.core.model import Address, MessageKind, ParsedMail, Participant, Role
from mailgate.core.notify import Audience, Kind, language_for, on_new_ticket, on_reply

HUMAN = DECISIONS[Category.PERSON]
ROBOT = DECISIONS[Category.AUTO_REPLY]
PROGRAM = DECISIONS[Category.AUTO_GENERATED]
AUDIENCE = Audience(
    participants=(
        Participant("alice@customer.nl", "Alice", Role.REQUESTER, "customer.nl"),
        Participant("bob@klant.be", "Bob", Role.CC, "klant.be"),
        Participant("piet@example.com", "Piet", Role.AGENT, "example.com"),
    ),
    team_address="team@example.com",
    queue_language="nl",
    organisation_languages={"klant.be": "en"},
)


def mail(headers: tuple[tuple[str, str], ...] = ()) -> ParsedMail:
    return ParsedMail(
        message_id="m@x",
        in_reply_to=(),
        references=(),
        subject="s",
        from_addr=Address("alice@customer.nl", "Alice"),
        reply_to=(),
        to=(),
        cc=(),
        date=None,
        text="t",
        html=None,
        attachments=(),
        headers=headers,
        defects=(),
        parser="test",
    )


@pytest.mark.parametrize(
    ("headers", "address", "expected"),
    [
        ((("Content-Language", "en-US"),), "alice@customer.nl", "en"),
        ((("Accept-Language", "de-DE, en;q=0.8"),), "alice@customer.nl", "en"),
        ((("Content-Language", "fr"),), "alice@customer.nl", "nl"),
        ((), "bob@klant.be", "en"),
        ((), "alice@customer.nl", "nl"),
    ],
    ids=[
        "content-language",
        "accept-language",
        "unsupported-falls-back",
        "organisation",
        "queue-default",
    ],
)
def test_language_choice(headers: tuple[tuple[str, str], ...], address: str, expected: str) -> None:
    assert language_for(mail(headers), AUDIENCE, address) == expected


def test_new_ticket_acknowledges_people_only() -> None:
    human = on_new_ticket(mail(), AUDIENCE, requester="alice@customer.nl", decisions=HUMAN)
    assert [(n.kind, n.to, n.auto_submitted) for n in human] == [
        (Kind.ACK, ("alice@customer.nl",), "auto-replied"),
        (Kind.TEAM_NEW_TICKET, ("team@example.com",), "auto-generated"),
    ]
    alert = on_new_ticket(mail(), AUDIENCE, requester="alice@customer.nl", decisions=PROGRAM)
    assert [n.kind for n in alert] == [Kind.TEAM_NEW_TICKET]
    assert on_new_ticket(mail(), AUDIENCE, requester="a@b.nl", decisions=ROBOT) == ()


def test_agent_reply_goes_to_every_customer_and_is_not_automatic() -> None:
    (notice,) = on_reply(
        mail(), AUDIENCE, kind=MessageKind.AGENT, author="piet@example.com", decisions=HUMAN
    )
    assert notice.kind is Kind.AGENT_REPLY
    assert notice.to == ("alice@customer.nl", "bob@klant.be")
    assert notice.auto_submitted == ""


def test_customer_reply_tells_the_team_and_automatic_replies_tell_nobody() -> None:
    (notice,) = on_reply(
        mail(), AUDIENCE, kind=MessageKind.CUSTOMER, author="alice@customer.nl", decisions=HUMAN
    )
    assert (notice.kind, notice.to) == (Kind.TEAM_CUSTOMER_REPLY, ("team@example.com",))
    assert on_reply(mail(), AUDIENCE, kind=MessageKind.AUTO, author="a", decisions=ROBOT) == ()
    (bulk,) = on_reply(mail(), AUDIENCE, kind=MessageKind.AUTO, author="a", decisions=PROGRAM)
    assert bulk.kind is Kind.TEAM_CUSTOMER_REPLY


def test_an_agents_automatic_reply_is_relayed_to_nobody() -> None:
    assert (
        on_reply(
            mail(), AUDIENCE, kind=MessageKind.AGENT, author="piet@example.com", decisions=ROBOT
        )
        == ()
    )
