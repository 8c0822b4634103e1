"""Bounces of our mail and complaints about it; whom they concern (held mails run end to
end in tests/runners/test_worker.py)."""

from __future__ import annotations

import pytest

from mailgate.app import App
from mailgate.core.bounces import DeliveryReport
from mailgate.core.model import Action
from mailgate.store.db import session
from mailgate.store.repos import Repo, Tx
from mailgate.tickets.holds import failed_recipients
from tests.conftest import deliver
from tests.feedback import feedback
from tests.mails import make_mail


def test_a_bounce_concerns_the_recipients_it_names_or_else_the_only_one() -> None:
    report = DeliveryReport(("bob@x.nl",), "5.1.1", None, True)
    assert failed_recipients(report, ("Bob@x.nl", "carol@x.nl")) == ("bob@x.nl",)
    nameless = DeliveryReport((), "5.1.1", None, True)
    assert failed_recipients(nameless, ("carol@x.nl",)) == ("carol@x.nl",)
    assert failed_recipients(nameless, ("bob@x.nl", "carol@x.nl")) == ()


@pytest.mark.parametrize("name", ["arf-abuse.eml", "ses-complaint-sns.json"])
async def test_a_complaint_opens_nothing_answers_nothing_suppresses_and_tells_the_team_once(
    app: App, name: str
) -> None:
    outcome = await deliver(app, make_mail(sender="alice@customer.nl"))
    async with session(app.engine) as s:
        ack = (await Repo(s).outbox_list())[0]
    complaint = await deliver(app, feedback(name, "alice@customer.nl", ack.message_id))
    assert (complaint.action, complaint.ticket) == (Action.BOUNCE, outcome.ticket)
    assert "complained" in complaint.reason
    async with session(app.engine) as s:
        sent = await Repo(s).outbox_list()
        tickets = await Repo(s).tickets_list()
    assert len(tickets) == 1
    told = [item for item in sent if item.kind == "team_complaint"]
    assert len(told) == 1 and told[0].recipients == ("team@example.com",)
    assert not [item for item in sent if "sns.amazonaws.com" in " ".join(item.recipients)]
    assert not [item for item in sent if "example.net" in " ".join(item.recipients)]
    suppressed = await app.blocking.read(
        lambda conn: Tx.on(conn).outbox.suppressed(("alice@customer.nl",), ack.created_at)
    )
    assert suppressed == {"alice@customer.nl"}
