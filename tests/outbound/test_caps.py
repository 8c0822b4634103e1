"""The caps on automatic mail, end to end: a robot gets the hourly cap, the team every notice."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from mailgate.app import App
from mailgate.core.notify import Kind
from mailgate.core.parties import AutoAnswer
from mailgate.store.repos.outbox import Counted
from tests.conftest import deliver
from tests.mails import make_mail
from tests.outbound.outboxes import outbox


async def test_a_robot_that_answers_every_mail_with_a_new_one_gets_at_most_the_hourly_cap(
    app: App,
) -> None:
    # A naive autoresponder without any automatic-mail header, dropping all references:
    # every answer of its opens a new ticket, and every ticket would be acknowledged.
    for i in range(14):
        await deliver(app, make_mail(sender="helpdesk@robot.example", subject=f"Ticket {i}"))
    to_robot = [k for k, to, _ in await outbox(app) if to == ("helpdesk@robot.example",)]
    assert to_robot == ["ack"] * app.config.outbound.max_automatic_per_recipient_per_hour
    team = [k for k, to, _ in await outbox(app) if to == ("team@example.com",)]
    assert len(team) == 14  # the team still hears of every one


async def test_a_domain_shares_one_cap_however_many_mailboxes_write(app: App) -> None:
    cap = app.config.outbound.max_automatic_per_domain_per_hour
    for i in range(cap + 3):
        await deliver(app, make_mail(sender=f"person{i}@one-company.example", subject=f"Vraag {i}"))
    acks = [to for k, to, _ in await outbox(app) if k == "ack"]
    assert len(acks) == cap and all(to[0].endswith("@one-company.example") for to in acks)


def test_a_counted_answer_gets_its_outbox_id_and_its_subject_without_our_tag(app: App) -> None:
    caps = app.notifier.caps
    at = datetime(2026, 3, 2, 10, tzinfo=UTC)
    counted = Counted(1, Kind.ACK.value, 7, AutoAnswer("a@b.nl", "b.nl", "", at, True))
    subject = f"Re: {app.codec.subject_tag(7)} Printer kapot"
    done = caps.subject(counted, [40, 41], {41: subject})
    assert done.outbox == 41 and done.answer == replace(counted.answer, subject=done.answer.subject)
    assert (
        app.codec.token(7) not in done.answer.subject
        and "printer kapot" in done.answer.subject.lower()
    )
