"""Notifications written with the change, and replies to them threading back."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from mailgate.app import App
from mailgate.core.model import Action
from mailgate.store.db import session
from mailgate.store.repos import Repo, Tx
from tests.conftest import deliver
from tests.mails import make_mail
from tests.outbound.outboxes import outbox


async def test_new_ticket_queues_ack_and_team_notice_in_the_same_transaction(app: App) -> None:
    outcome = await deliver(app, make_mail(message_id="<orig@customer.nl>"))
    queued = await outbox(app)
    assert [(k, to) for k, to, _ in queued] == [
        ("ack", ("alice@customer.nl",)),
        ("team_new_ticket", ("team@example.com",)),
    ]
    ack = queued[0][2]
    tag = app.codec.subject_tag(outcome.ticket or 0)
    assert tag in ack["Subject"]
    assert ack["In-Reply-To"] == "<orig@customer.nl>"
    assert ack["Reply-To"] == app.policy.plus_address(
        "support@example.com", app.codec.token(outcome.ticket or 0)
    )
    assert ack["Message-ID"].endswith("@example.com>")
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["Content-Language"] == "nl"


async def test_language_from_the_customers_mail(app: App) -> None:
    await deliver(app, make_mail(headers={"Content-Language": "en-GB"}))
    ack = (await outbox(app))[0][2]
    assert ack["Content-Language"] == "en"
    assert "Thank you for your message" in ack.get_body(("plain",)).get_content()  # type: ignore[union-attr]


async def test_an_english_mail_without_headers_is_answered_in_english_from_then_on(
    app: App,
) -> None:
    """No Content-Language: the customer's own words tell the language, the ticket keeps
    it, and a notice about no mail of theirs (an agent's status change) speaks it too."""
    from tests.world import World

    world = World(app)
    english = make_mail(
        subject="Printer on fire",
        body="Hi, our printer caught fire again this morning. Could you please send someone?",
    )
    opened = await world.send(english)
    assert opened.ticket is not None
    ack = await world.only("alice@customer.nl")
    assert ack["Content-Language"] == "en"
    assert "Thank you for your message" in World.text(ack)
    async with session(app.engine) as s:
        view = await Repo(s).ticket_view(opened.ticket)
    assert view is not None and view.language == "en"
    (notice,) = await world.inbox("team@example.com")
    await world.send(World.answer(notice, sender="bob@example.com", body="#status resolved"))
    moved = await world.only("alice@customer.nl")  # the workflow's "resolved" notice
    assert moved["Content-Language"] == "en" and "resolved" in str(moved["Subject"]).lower()
    scanner = "Hallo, de scanner doet het sinds vanochtend niet meer."
    dutch = await world.send(make_mail(sender="carol@customer.nl", subject="Scanner", body=scanner))
    assert (await world.only("carol@customer.nl"))["Content-Language"] == "nl"
    assert dutch.action is Action.CREATED


async def test_replies_to_the_acknowledgment_thread_back_however_the_client_builds_them(
    app: App,
) -> None:
    outcome = await deliver(app, make_mail(message_id="<orig@customer.nl>"))
    ack = (await outbox(app))[0][2]
    ack_id = ack["Message-ID"]
    outlook = make_mail(
        subject=f"AW: {ack['Subject']}",
        in_reply_to=ack_id,
        references=f"{ack['References']} {ack_id}",
    )
    gmail = make_mail(subject=f"Re: {ack['Subject']}", in_reply_to=ack_id)
    stripped = make_mail(subject="Re: Printer brandt", in_reply_to=ack_id)
    for raw in (outlook, gmail, stripped):
        reply = await deliver(app, raw)
        assert (reply.action, reply.ticket) == (Action.APPENDED, outcome.ticket)
    assert reply.reason == f"matched by in-reply-to {ack_id}"


async def test_customer_reply_tells_the_team_and_agent_reply_is_relayed(app: App) -> None:
    outcome = await deliver(
        app, make_mail(message_id="<orig@customer.nl>", cc="Bob <bob@customer.nl>")
    )
    tag = app.codec.subject_tag(outcome.ticket or 0)
    await deliver(app, make_mail(subject=f"Re: {tag}", body="Nog een detail."))
    team_notice = (await outbox(app))[2][2]
    await deliver(
        app,
        make_mail(
            sender="Piet Support <piet@example.com>",
            subject=f"Re: {tag}",
            body="Probeer het nu eens opnieuw.\n\nOp ma schreef Alice:\n> oud",
            in_reply_to=str(team_notice["Message-ID"]),
        ),
    )
    queued = await outbox(app)
    kinds = [(k, to) for k, to, _ in queued]
    assert kinds[2] == ("team_customer_reply", ("team@example.com",))
    assert kinds[3] == ("agent_reply", ("alice@customer.nl", "bob@customer.nl"))
    relayed = queued[3][2]
    body = relayed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Probeer het nu eens opnieuw." in body and "> oud" not in body
    assert relayed["Auto-Submitted"] is None
    async with session(app.engine) as s:
        view = await Repo(s).ticket_view(outcome.ticket or 0)
    assert view is not None
    outgoing = [m for m in view.messages if m.direction == "out"]
    assert [m.kind for m in outgoing] == ["system", "system", "system", "agent"]


async def test_automatic_mail_gets_no_answer_and_an_auto_reply_opens_no_ticket(app: App) -> None:
    auto_reply = await deliver(app, make_mail(headers={"Auto-Submitted": "auto-replied"}))
    bounce = await deliver(
        app, make_mail(sender="MAILER-DAEMON@mx.customer.nl", subject="Undelivered")
    )
    assert (auto_reply.action, auto_reply.ticket) == (Action.SYSTEM, None)
    assert (bounce.action, bounce.ticket) == (Action.SYSTEM, None)
    assert "auto_reply (Auto-Submitted: auto-replied)" in auto_reply.reason
    assert await outbox(app) == []
    # A program's mail (a monitoring alert) opens a ticket for the team, and is not answered.
    alert = await deliver(
        app,
        make_mail(
            sender="alerts@monitor.customer.nl", headers={"Auto-Submitted": "auto-generated"}
        ),
    )
    assert alert.action is Action.CREATED
    assert [k for k, _, _ in await outbox(app)] == ["team_new_ticket"]


async def test_automatic_reply_on_a_ticket_is_not_forwarded(app: App) -> None:
    outcome = await deliver(app, make_mail())
    tag = app.codec.subject_tag(outcome.ticket or 0)
    await deliver(
        app, make_mail(subject=f"Out of Office: {tag}", headers={"Auto-Submitted": "auto-replied"})
    )
    assert [k for k, _, _ in await outbox(app)] == ["ack", "team_new_ticket"]


async def test_outgoing_mail_carries_our_loop_header_and_coming_back_it_gets_no_answer(
    app: App,
) -> None:
    await deliver(app, make_mail())
    ack = (await outbox(app))[0][2]
    assert ack["X-Mailgate-Loop"] == app.codec.installation_id
    # A robot sends our acknowledgment back to us, headers and all, from elsewhere.
    bounced = ack.as_bytes().replace(
        b"From: Support <support@example.com>", b"From: robot@elsewhere.org"
    )
    outcome = await deliver(app, bounced)
    assert outcome.action is Action.APPENDED  # it threads, and is answered by nothing
    assert [k for k, _, _ in await outbox(app)] == ["ack", "team_new_ticket"]


async def test_two_gateways_pointed_at_each_other_stop_at_once(app: App) -> None:
    # The other side is a copy of us: it answers whatever we send with its own acknowledgment.
    await deliver(
        app,
        make_mail(
            sender="helpdesk@other-gateway.example",
            headers={"Auto-Submitted": "auto-replied", "X-Mailgate-Loop": "another-installation"},
        ),
    )
    assert await outbox(app) == []


async def test_a_bounce_to_our_verp_address_lands_on_the_ticket_and_is_answered_by_nothing(
    app: App,
) -> None:
    from tests.core.test_bounces import dsn

    outcome = await deliver(app, make_mail())
    async with session(app.engine) as s:
        ack = (await Repo(s).outbox_list())[0]
    assert ack.kind == "ack" and ack.envelope_from.startswith(f"bounces+{ack.id}-")
    bounce = await deliver(app, dsn("5.1.1"), to=(ack.envelope_from,))
    assert (bounce.action, bounce.ticket) == (Action.BOUNCE, outcome.ticket)
    assert "alice@customer.nl failed (permanently): 5.1.1" in bounce.reason
    async with session(app.engine) as s:
        view = await Repo(s).ticket_view(outcome.ticket or 0)
    assert view is not None
    assert [e.kind for e in view.events][-1] == "delivery_failed"
    kinds = [(k, to) for k, to, _ in await outbox(app)]
    assert kinds == [
        ("ack", ("alice@customer.nl",)),
        ("team_new_ticket", ("team@example.com",)),
        ("team_delivery_failed", ("team@example.com",)),
    ]
    team_notice = (await outbox(app))[2][2].get_body(("plain",))
    assert team_notice is not None and "5.1.1" in team_notice.get_content()
    # The address bounced for good: mailgate stops mailing it for a while; the team still hears.
    await deliver(app, make_mail(subject="Nieuwe vraag"))
    later = [(k, to) for k, to, _ in await outbox(app)][3:]
    assert later == [("team_new_ticket", ("team@example.com",))]
    forged = ack.envelope_from.replace(ack.envelope_from.split("-")[1].split("@")[0], "zzzzzzzz")
    other = await deliver(
        app, dsn("5.1.1").replace(b"Subject: Undelivered", b"Subject: Bounce"), to=(forged,)
    )
    # Not ours by its address, nor by the original it returns: kept as system mail.
    assert (other.action, other.ticket) == (Action.SYSTEM, None)
    assert len(await outbox(app)) == 4


async def test_a_bounce_that_lost_its_verp_address_is_found_by_the_returned_message_id(
    app: App,
) -> None:
    from tests.core.test_bounces import dsn

    outcome = await deliver(app, make_mail())
    async with session(app.engine) as s:
        ack = (await Repo(s).outbox_list())[0]
    returned = dsn("5.1.1").replace(
        b"--b--",
        b"--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: support@example.com\r\n"
        + f"Message-ID: <{ack.message_id}>\r\n".encode()
        + b"Subject: Ontvangen\r\n\r\nWe hebben uw mail ontvangen.\r\n--b--",
    )
    bounce = await deliver(app, returned)  # to support@, as a broken MTA would send it
    assert (bounce.action, bounce.ticket) == (Action.BOUNCE, outcome.ticket)
    suppressed = await app.blocking.read(
        lambda conn: Tx.on(conn).outbox.suppressed(("alice@customer.nl",), ack.created_at)
    )
    assert suppressed == {"alice@customer.nl"}


async def test_an_agents_attachments_are_relayed_with_the_answer(app: App) -> None:
    from email.policy import SMTP

    outcome = await deliver(app, make_mail())
    tag = app.codec.subject_tag(outcome.ticket or 0)
    answer = EmailMessage(policy=SMTP)
    answer["From"] = "Piet Support <piet@example.com>"
    answer["To"] = "support@example.com"
    answer["Subject"] = f"Re: {tag} Printer brandt"
    answer["Message-ID"] = "<answer@example.com>"
    team_notice = next(m for k, _, m in await outbox(app) if k == "team_new_ticket")
    answer["In-Reply-To"] = str(team_notice["Message-ID"])
    answer.set_content("Zie de handleiding in de bijlage.")
    answer.add_attachment(
        b"%PDF-1.4 handleiding", maintype="application", subtype="pdf", filename="handleiding.pdf"
    )
    await deliver(app, answer.as_bytes())
    relayed = [m for k, _, m in await outbox(app) if k == "agent_reply"][-1]
    files = [(a.get_filename(), a.get_content()) for a in relayed.iter_attachments()]
    assert files == [("handleiding.pdf", b"%PDF-1.4 handleiding")]
    acks = [m for k, _, m in await outbox(app) if k == "ack"]
    assert not list(acks[0].iter_attachments())


async def test_the_people_in_cc_of_a_new_ticket_are_acknowledged_too(desk: Any) -> None:
    app = await desk()
    await deliver(app, make_mail(cc="Bob <bob@customer.nl>, support@example.com"))
    acks = [to for kind, to, _ in await outbox(app) if kind == "ack"]
    assert acks == [("alice@customer.nl", "bob@customer.nl")]  # never our own address


async def test_acknowledge_cc_off_acknowledges_the_requester_only(desk: Any) -> None:
    quiet = await desk(outbound={"acknowledge_cc": False})
    await deliver(quiet, make_mail(cc="Bob <bob@customer.nl>"))
    assert [to for kind, to, _ in await outbox(quiet) if kind == "ack"] == [("alice@customer.nl",)]


async def test_an_answer_held_back_from_a_bounced_address_is_logged_and_its_agent_told(
    app: App,
) -> None:
    """The customer's address bounced for good lately: the agent's answer is not sent to
    it, the ticket's log says so, and the agent who wrote it gets a mail saying why."""
    from datetime import timedelta

    from tests.world import World

    world = World(app)
    opened = await world.send(make_mail(sender="alice@customer.nl"))
    assert opened.ticket is not None
    await world.inbox("alice@customer.nl")
    (notice,) = await world.inbox("team@example.com")
    now = app.clock.now()
    await app.blocking.write(
        lambda conn: Tx.on(conn).outbox.suppress(
            "alice@customer.nl", until=now + timedelta(days=7), reason="5.1.1", now=now
        )
    )
    await world.send(
        World.answer(notice, sender="bob@example.com", body="Probeert u het nog eens?")
    )
    assert await world.inbox("alice@customer.nl") == []
    told = await world.inbox("bob@example.com")
    assert len(told) == 1 and "Bezorging mislukt" in str(told[0]["Subject"])
    assert "niet verstuurd naar alice@customer.nl" in World.text(told[0])
    async with session(app.engine) as s:
        view = await Repo(s).ticket_view(opened.ticket)
    assert view is not None
    held = [e for e in view.events if e.kind == "delivery_suppressed"]
    assert len(held) == 1 and held[0].old == "alice@customer.nl"
