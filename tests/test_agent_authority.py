"""Agent authority through the real intake and outbox: no forged agent is ever obeyed.

Each forged mail carries the same attack: commands that would take the ticket
over and add an outsider, and a phishing link that would be relayed to the
customer from the support address. None of it may happen: the ticket does not
change, no participant is added, the customer receives nothing, the mail is
held, the team hears why. A real agent answering the team's notice still acts.
"""

from __future__ import annotations

import email
import email.utils
from collections.abc import Callable
from typing import Any

import pytest

from mailgate.app import App
from mailgate.core.model import Action
from tests.mails import make_mail
from tests.tickets.test_effects import view
from tests.world import World

CUSTOMER = "alice@customer.nl"
AGENT = "bob@example.com"
TEAM = "team@example.com"
MALLORY = "mallory@evil-corp.example"
ATTACK = (
    f"#assign me\n#cc add {MALLORY}\n#priority high\n#status resolved\n"
    "Please confirm your password at http://phish.example/login"
)
AUTHSERV = "mx.example.com"


async def opened(world: World) -> tuple[int, Any, Any, bytes]:
    """A customer's ticket: its number, the acknowledgment, the team notice, the first mail."""
    first = make_mail(sender=f"Alice <{CUSTOMER}>", message_id="<first@customer.nl>")
    outcome = await world.send(first)
    assert outcome.action is Action.CREATED and outcome.ticket is not None
    return outcome.ticket, await world.only(CUSTOMER), await world.only(TEAM), first


def out_of_office(ours: Any) -> bytes:
    """The customer's out-of-office reply to our mail ``ours``."""
    return make_mail(
        sender=f"Alice <{CUSTOMER}>",
        subject=f"Automatisch antwoord: {ours['Subject']}",
        in_reply_to=str(ours["Message-ID"]),
        message_id="<away@customer.nl>",
        headers={"Auto-Submitted": "auto-replied"},
    )


def answered(mail: Any, **changes: Any) -> bytes:
    """``World.answer`` with header lines replaced or added."""
    raw = World.answer(mail, sender=changes.pop("sender", AGENT), body=ATTACK)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = [
        line
        for line in head.split(b"\r\n")
        if line.split(b":", 1)[0].decode().lower() not in {k.lower() for k in changes}
    ]
    for name, value in changes.items():
        if value is not None:
            lines.insert(0, f"{name.replace('_', '-')}: {value}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def dkim(result: str, domain: str = "example.com", authserv: str = AUTHSERV) -> str:
    return f"{authserv}; dkim={result} header.d={domain}; spf=pass smtp.mailfrom={domain}"


FORGERIES: dict[str, Callable[[Any, Any], bytes]] = {
    # The customer's subject token, answering the customer's own acknowledgment.
    "agent From with the customer's token": lambda ack, notice: World.answer(
        ack, sender=f"Bob <{AGENT}>", body=ATTACK
    ),
    "only In-Reply-To of the customer's Message-ID": lambda ack, notice: make_mail(
        sender=f"Bob <{AGENT}>",
        subject="Re: your printer",
        body=ATTACK,
        in_reply_to="<first@customer.nl>",
    ),
    "upper-case agent address without proof": lambda ack, notice: World.answer(
        ack, sender=AGENT.upper(), body=ATTACK
    ),
    "two From addresses": lambda ack, notice: answered(notice, From=f"{AGENT}, {MALLORY}"),
    "outside From with Sender of an agent": lambda ack, notice: answered(
        notice, sender=MALLORY, Sender=AGENT
    ),
    "outside From with Reply-To of an agent": lambda ack, notice: answered(
        notice, sender=MALLORY, Reply_To=AGENT
    ),
    "lookalike domain": lambda ack, notice: answered(notice, sender="bob@example.com.evil.org"),
    "lookalike digit": lambda ack, notice: answered(notice, sender="bob@examp1e.com"),
}
AUTH_FORGERIES: dict[str, Callable[[Any, Any], bytes]] = {
    "dkim=fail from the trusted server": lambda ack, notice: answered(
        notice, Authentication_Results=dkim("fail")
    ),
    "no Authentication-Results while a server is trusted": lambda ack, notice: answered(notice),
    "a pass from an untrusted server": lambda ack, notice: answered(
        notice, Authentication_Results=dkim("pass", authserv="mx.evil.example")
    ),
    "a pass written below the trusted server's own header": lambda ack, notice: answered(
        notice, Authentication_Results=dkim("none")
    ).replace(b"\r\n\r\n", f"\r\nAuthentication-Results: {dkim('pass')}\r\n\r\n".encode(), 1),
    "a pass for another domain": lambda ack, notice: answered(
        notice, Authentication_Results=dkim("pass", domain="evil.example")
    ),
}


async def assert_not_obeyed(app: App, world: World, number: int, raw: bytes) -> None:
    before = await view(app, number)
    outcome = await world.send(raw)
    after = await view(app, number)
    assert outcome.action is Action.HELD, outcome
    assert (after.status, after.priority, after.assignee) == (
        before.status,
        before.priority,
        before.assignee,
    )
    assert {p.address for p in after.participants} == {p.address for p in before.participants}
    assert await world.inbox(CUSTOMER) == []  # nothing relayed, nothing announced
    assert await world.inbox(MALLORY) == []
    held = World.text(await world.only(TEAM))
    # A mail from an agent's own address that does not prove it is the team's may be a
    # forgery under the team's name: never quoted back to the team. One from another
    # address is a stranger's reply: quoted (as any new mail is), under that address.
    author = email.utils.parseaddr(email.message_from_bytes(raw)["From"] or "")[1].lower()
    if app.policy.is_agent(author):
        assert "phish" not in held
    else:
        assert author in held and ("niet bij het ticket hoort" in held or "#vrijgeven" in held)


@pytest.mark.parametrize("forge", list(FORGERIES.values()), ids=list(FORGERIES))
async def test_a_forged_agent_changes_nothing_and_relays_nothing(desk: Any, forge: Any) -> None:
    app = await desk()
    world = World(app)
    number, ack, notice, _ = await opened(world)
    await assert_not_obeyed(app, world, number, forge(ack, notice))


@pytest.mark.parametrize("forge", list(AUTH_FORGERIES.values()), ids=list(AUTH_FORGERIES))
async def test_where_a_server_is_trusted_its_pass_is_required(desk: Any, forge: Any) -> None:
    app = await desk(intake={"trusted_authserv_ids": [AUTHSERV]})
    world = World(app)
    number, ack, notice, _ = await opened(world)
    await assert_not_obeyed(app, world, number, forge(ack, notice))


async def test_the_real_agent_is_told_once_how_to_act(desk: Any) -> None:
    app = await desk()
    world = World(app)
    number, ack, _, _ = await opened(world)
    await world.send(World.answer(ack, sender=AGENT, body="#status resolved\nDone."))
    told = await world.only(AGENT)
    assert "team notice" in World.text(told) or "teambericht" in World.text(told)
    await world.only(TEAM)  # the team hears why it was held
    await world.send(World.answer(ack, sender=AGENT, body="#status resolved\nDone again."))
    assert await world.inbox(AGENT) == []  # once per ticket, not once per mail
    # Answering that explanation is a proven answer: it acts.
    await world.inbox(TEAM)
    await assert_obeyed(app, world, number, World.answer(told, sender=AGENT, body=COMMANDS))


COMMANDS = "#status waiting_customer\nWelke foutcode?"


async def assert_obeyed(app: App, world: World, number: int, raw: bytes) -> Any:
    """The agent's commands applied and its text relayed; the relayed mail."""
    outcome = await world.send(raw)
    assert outcome.action is Action.APPENDED
    assert (await view(app, number)).status == "waiting_customer"
    relayed = await world.only(CUSTOMER)
    assert "Welke foutcode?" in World.text(relayed)
    return relayed


async def test_a_real_agent_answering_the_team_notice_is_obeyed(desk: Any) -> None:
    app = await desk()
    world = World(app)
    number, _, notice, _ = await opened(world)
    raw = World.answer(notice, sender=f"Bob <{AGENT}>", body=COMMANDS)
    relayed = await assert_obeyed(app, world, number, raw)
    # The relay never carries the team notice's Message-ID: it is the agents' proof.
    assert str(notice["Message-ID"]).strip("<>") not in str(relayed["References"] or "")
    assert str(notice["Message-ID"]).strip("<>") not in str(relayed["In-Reply-To"] or "")


async def test_with_a_trusted_server_a_dkim_pass_lets_the_agent_act(desk: Any) -> None:
    app = await desk(intake={"trusted_authserv_ids": [AUTHSERV]})
    world = World(app)
    number, _, notice, _ = await opened(world)
    raw = World.answer(notice, sender=AGENT, body=COMMANDS)
    vouched = f"Authentication-Results: {dkim('pass')}\r\n".encode() + raw
    await assert_obeyed(app, world, number, vouched)


async def test_notices_thread_on_the_customers_last_mail_not_an_out_of_office(desk: Any) -> None:
    app = await desk()
    world = World(app)
    _, ack, notice, _ = await opened(world)
    await world.send(out_of_office(ack))
    await world.send(World.answer(notice, sender=AGENT, body=COMMANDS))
    relayed = await world.only(CUSTOMER)
    assert str(relayed["In-Reply-To"]) == "<first@customer.nl>"
    assert "away@customer.nl" not in str(relayed["References"] or "")


async def test_every_outgoing_mail_threads_on_the_customers_latest_own_mail(
    desk: Any, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The customer writes twice, then an out-of-office answers our mail: the answer of
    ``mailgate reply`` and the reminder after it both name the customer's second mail."""
    import argparse
    import io
    from datetime import timedelta

    from mailgate.cli.desk import reply

    app = await desk()
    world = World(app)
    number, ack, _, _ = await opened(world)
    again = make_mail(
        sender=f"Alice <{CUSTOMER}>",
        subject=f"Re: {ack['Subject']}",
        in_reply_to=str(ack["Message-ID"]),
        message_id="<second@customer.nl>",
        body="Hij doet het nog steeds niet.",
    )
    assert (await world.send(again)).action is Action.APPENDED
    await world.inbox(TEAM)

    class Stdin:
        buffer = io.BytesIO(b"Probeert u het nog eens?")

    monkeypatch.setattr("sys.stdin", Stdin)
    args = argparse.Namespace(ref=f"#{number}", author=AGENT, file="-", command="reply")
    assert await reply(app, args, io.StringIO()) == 0
    answer = await world.only(CUSTOMER)
    assert str(answer["In-Reply-To"]) == "<second@customer.nl>"
    assert (await view(app, number)).status == "waiting_customer"

    await world.send(out_of_office(answer))
    clock.advance(timedelta(days=7))  # past the reminder of waiting_customer (3 work days)
    await app.scheduler.run_due()
    reminder = await world.only(CUSTOMER)
    assert str(reminder["In-Reply-To"]) == "<second@customer.nl>"
    assert "away@customer.nl" not in str(reminder["References"] or "")
