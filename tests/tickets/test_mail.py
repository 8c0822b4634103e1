"""Applying a mail: an agent's forward opens the ticket for the customer it forwards."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

import pytest

from mailgate.app import App
from mailgate.core.model import Action
from mailgate.store.db import session
from mailgate.store.repos import Repo
from tests.conftest import deliver
from tests.mails import make_mail
from tests.outbound.outboxes import outbox

AGENT = "Bob Agent <bob@example.com>"
CUSTOMER = "jan@klant.nl"

GMAIL = """Kun jij hier naar kijken?

---------- Forwarded message ---------
From: Jan Klant <jan@klant.nl>
Date: Mon, 2 Mar 2026 at 10:12
Subject: Printer kapot
To: <bob@example.com>

Mijn printer doet het niet meer.
"""
OUTLOOK_NL = """Graag oppakken.

________________________________
Van: Jan Klant [mailto:jan@klant.nl]
Verzonden: maandag 2 maart 2026 10:12
Aan: Bob Agent
Onderwerp: Printer kapot

Mijn printer doet het niet meer.
"""
APPLE = """Zie hieronder.

Begin forwarded message:

From: "Jan Klant" <jan@klant.nl>
Subject: Printer kapot
Date: 2 March 2026 at 10:12:00 CET
To: bob@example.com

Mijn printer doet het niet meer.
"""


def attached() -> bytes:
    original = EmailMessage(policy=SMTP)
    original["From"] = "Jan Klant <jan@klant.nl>"
    original["To"] = "bob@example.com"
    original["Subject"] = "Printer kapot"
    original.set_content("Mijn printer doet het niet meer.")
    forward = EmailMessage(policy=SMTP)
    forward["From"] = AGENT
    forward["To"] = "support@example.com"
    forward["Subject"] = "Fwd: Printer kapot"
    forward["Message-ID"] = "<fwd-att@example.com>"
    forward.set_content("Kun jij hier naar kijken?")
    forward.add_attachment(original)
    return forward.as_bytes()


async def opened(app: App, raw: bytes) -> tuple[Any, list[Any]]:
    outcome = await deliver(app, raw)
    assert outcome.action is Action.CREATED and outcome.ticket is not None
    async with session(app.engine) as s:
        view = await Repo(s).ticket_view(outcome.ticket)
    return view, await outbox(app)


@pytest.mark.parametrize("body", [GMAIL, OUTLOOK_NL, APPLE], ids=["gmail", "outlook-nl", "apple"])
async def test_an_agents_inline_forward_makes_the_customer_the_requester(
    app: App, body: str
) -> None:
    view, sent = await opened(app, make_mail(sender=AGENT, subject="Fwd: Printer kapot", body=body))
    assert view.requester == CUSTOMER
    assert [p.role.value for p in view.participants if p.address == CUSTOMER] == ["requester"]
    created = [e for e in view.events if e.kind == "created"]
    assert created[0].actor == "bob@example.com" and "forwarded by" in (created[0].detail or "")
    assert [(kind, to) for kind, to, _ in sent if kind == "ack"] == [("ack", (CUSTOMER,))]


async def test_a_forward_as_an_attached_message_does_the_same(app: App) -> None:
    view, sent = await opened(app, attached())
    assert view.requester == CUSTOMER
    assert ("ack", (CUSTOMER,)) in [(kind, to) for kind, to, _ in sent]


async def test_a_forwarded_colleague_or_a_plain_agent_mail_has_no_requester(app: App) -> None:
    colleague = GMAIL.replace("Jan Klant <jan@klant.nl>", "Carol <carol@example.com>")
    view, sent = await opened(app, make_mail(sender=AGENT, subject="Fwd: intern", body=colleague))
    assert view.requester is None and not [k for k, _, _ in sent if k == "ack"]


async def test_the_switch_turns_it_off(desk: Any) -> None:
    app = await desk(intake={"forwarded_requester": False})
    view, sent = await opened(app, make_mail(sender=AGENT, subject="Fwd: Printer", body=GMAIL))
    assert view.requester is None and not [k for k, _, _ in sent if k == "ack"]


async def test_a_customers_own_forward_stays_theirs(app: App) -> None:
    view, _ = await opened(app, make_mail(sender="Piet <piet@klant.nl>", body=GMAIL))
    assert view.requester == "piet@klant.nl"
