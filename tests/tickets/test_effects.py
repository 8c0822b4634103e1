"""The status engine and the team's mailbox, driven by real mail through intake and outbox.

Every step is a mail into the intake path or a timer on the frozen clock; every
check reads the ticket or the mails that came out of the outbox (the maildir).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from mailgate.app import App
from mailgate.clock import FrozenClock
from mailgate.config import Config
from mailgate.core.model import Action, TicketView
from mailgate.intake.spool import Received
from mailgate.store.db import session
from mailgate.store.repos import Repo
from tests.mails import make_mail
from tests.world import World

CUSTOMER = "alice@customer.nl"
AGENT = "bob@example.com"
TEAM = "team@example.com"


async def view(app: App, number: int) -> TicketView:
    async with session(app.engine) as s:
        found = await Repo(s).ticket_view(number)
    assert found is not None
    return found


async def open_ticket(world: World, customer: str = CUSTOMER, **mail: Any) -> tuple[int, Any, Any]:
    """A customer's first mail: the ticket, the acknowledgment, the team's notice."""
    outcome = await world.send(make_mail(sender=customer, **mail))
    assert outcome.action is Action.CREATED and outcome.ticket is not None
    ack = await world.only(customer)
    notice = await world.only(TEAM)
    return outcome.ticket, ack, notice


async def test_the_whole_life_of_a_ticket_by_mail(desk: Any, clock: FrozenClock) -> None:
    app = await desk(workflow={"reply_to_closed": "append"})
    world = World(app)
    number, ack, notice = await open_ticket(world)
    assert (await view(app, number)).status == "new"
    assert "Ontvangen" in str(ack["Subject"])

    # The agent answers the team's notice, asking for information.
    outcome = await world.send(
        World.answer(notice, sender=AGENT, body="#status waiting_customer\nWelke foutcode ziet u?")
    )
    assert outcome.action is Action.APPENDED
    ticket = await view(app, number)
    assert (ticket.status, ticket.action_by) == ("waiting_customer", "customer")
    question = await world.only(CUSTOMER)
    assert "Welke foutcode ziet u?" in World.text(question)
    assert "#status" not in World.text(question)
    assert "meer informatie" in World.text(question)
    assert AGENT not in str(question["From"])  # the agent's own address is not exposed

    # The customer answers from Outlook: open again, the team hears of it.
    await world.send(World.answer(question, sender=CUSTOMER, body="Code E42.", prefix="AW: "))
    ticket = await view(app, number)
    assert (ticket.status, ticket.action_by) == ("open", "support")
    team = await world.only(TEAM)
    assert "Code E42." in World.text(team)

    # Extra work: the agent quotes, the customer approves.
    await world.send(
        World.answer(
            team, sender=AGENT, body="#quote 4 uur à 95 euro\nDit valt buiten het contract."
        )
    )
    ticket = await view(app, number)
    assert (ticket.status, ticket.approval, ticket.quote) == (
        "approval_needed",
        "pending",
        "4 uur à 95 euro",
    )
    asked = await world.only(CUSTOMER)
    assert "4 uur à 95 euro" in World.text(asked) and "akkoord" in World.text(asked)
    await world.send(World.answer(asked, sender=CUSTOMER, body="Akkoord, ga uw gang."))
    ticket = await view(app, number)
    assert (ticket.status, ticket.approval) == ("in_progress", "approved")
    team = await world.only(TEAM)

    # Commands only: the ticket changes; the customer gets the transition's template.
    await world.send(World.answer(team, sender=AGENT, body="#status klaar voor test"))
    assert (await view(app, number)).status == "ready_for_test"
    test_request = await world.only(CUSTOMER)
    assert "Actie nodig" in str(test_request["Subject"])
    assert "testen" in World.text(test_request)

    # The customer rejects the test with a reason: back to support.
    await world.send(
        World.answer(test_request, sender=CUSTOMER, body="Niet akkoord: de export faalt nog.")
    )
    ticket = await view(app, number)
    assert ticket.status == "open"
    rejected = [e for e in ticket.events if e.kind == "status_changed"][-1]
    assert rejected.detail == "customer: reject (de export faalt nog.)"
    team = await world.only(TEAM)

    # Resolved, then closed when the customer stays silent for 5 business days.
    await world.send(World.answer(team, sender=AGENT, body="#status resolved"))
    assert (await view(app, number)).status == "resolved"
    resolved = await world.only(CUSTOMER)
    assert "Opgelost" in str(resolved["Subject"])
    clock.advance(timedelta(days=3))
    assert await app.scheduler.run_due() == 0
    clock.advance(timedelta(days=5))
    assert await app.scheduler.run_due() == 1
    assert (await view(app, number)).status == "closed"
    assert await world.inbox(CUSTOMER) == []  # closing quietly

    # A reply within the window under `append`: kept, status unchanged, team told.
    await world.send(World.answer(resolved, sender=CUSTOMER, body="Dank u wel!"))
    ticket = await view(app, number)
    assert ticket.status == "closed"
    assert ticket.messages[-1].text.startswith("Dank u wel!") or any(
        m.text.startswith("Dank u wel!") for m in ticket.messages
    )

    # Seven days after closing the ticket is archived; a reply then opens a new, linked one.
    clock.advance(timedelta(days=7))
    assert await app.scheduler.run_due() == 1
    assert (await view(app, number)).status == "archived"
    outcome = await world.send(
        World.answer(resolved, sender=CUSTOMER, body="Het probleem is terug.")
    )
    assert outcome.action is Action.CREATED and outcome.ticket != number
    assert outcome.ticket is not None
    new = await view(app, outcome.ticket)
    assert any(e.kind == "linked" and e.new == f"#{number}" for e in new.events)
    assert any(
        e.kind == "linked" and e.new == f"#{outcome.ticket}"
        for e in (await view(app, number)).events
    )
    statuses = [
        (e.old, e.new) for e in (await view(app, number)).events if e.kind == "status_changed"
    ]
    assert statuses == [
        ("new", "waiting_customer"),
        ("waiting_customer", "open"),
        ("open", "approval_needed"),
        ("approval_needed", "in_progress"),
        ("in_progress", "ready_for_test"),
        ("ready_for_test", "open"),
        ("open", "resolved"),
        ("resolved", "closed"),
        ("closed", "archived"),
    ]


@pytest.mark.parametrize(
    ("policy", "status", "action"),
    [
        ("reopen", "open", Action.APPENDED),
        ("append", "closed", Action.APPENDED),
        ("new_ticket", "closed", Action.CREATED),
    ],
    ids=["reopen", "append", "new_ticket"],
)
async def test_a_reply_to_a_closed_ticket_follows_the_policy(
    desk: Any, policy: str, status: str, action: Action
) -> None:
    app = await desk(workflow={"reply_to_closed": policy})
    world = World(app)
    number, ack, notice = await open_ticket(world)
    await world.send(World.answer(notice, sender=AGENT, body="#close"))
    assert (await view(app, number)).status == "closed"
    outcome = await world.send(World.answer(ack, sender=CUSTOMER, body="Toch nog een vraag."))
    assert outcome.action is action
    assert (await view(app, number)).status == status
    if action is Action.CREATED:
        assert outcome.ticket is not None and outcome.ticket != number
        assert any(e.kind == "linked" for e in (await view(app, outcome.ticket)).events)


async def test_an_agent_reply_without_commands_waits_for_the_customer(desk: Any) -> None:
    app = await desk()
    world = World(app)
    number, _, notice = await open_ticket(world)
    await world.send(World.answer(notice, sender=AGENT, body="Probeert u het nog eens?"))
    assert (await view(app, number)).status == "waiting_customer"
    relayed = await world.only(CUSTOMER)
    assert "Probeert u het nog eens?" in World.text(relayed)
    assert relayed["Auto-Submitted"] is None  # a person's answer, not automatic mail
    # No display name: the answer is signed by the team, never with the agent's address.
    assert AGENT not in World.text(relayed)
    assert "Support" in World.text(relayed).split("Probeert u het nog eens?", 1)[1]


async def test_an_answer_signed_by_its_agent_gets_no_second_name_line(desk: Any) -> None:
    app = await desk()
    world = World(app)
    _, _, notice = await open_ticket(world)
    body = "Probeert u het nog eens?\n\nMet vriendelijke groet,\nBob Visser"
    await world.send(World.answer(notice, sender=f"Bob Visser <{AGENT}>", body=body))
    relayed = await world.only(CUSTOMER)
    text = World.text(relayed)
    assert text.count("Bob Visser") == 1 and AGENT not in text
    html = relayed.get_body(preferencelist=("html",))
    assert html is not None and str(html.get_content()).count("Bob Visser") == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("commands", "fault"),
    [
        ("#status bestaat-niet", "onbekende status; nu mogelijk: Open, In behandeling"),
        ("#prioriteit enorm", "onbekende prioriteit; kies uit: kritiek, hoog"),
        ("#type taart", "onbekend soort; kies uit: gebruiksvraag, error of bug"),
        ("#assign iemand@elders.org", "geen agent"),
        ("#merge #99999", "geen ander ticket #99999"),
        ("#cc add geen-adres", "#cc toevoegen <adres>"),
        ("#frobnicate", "onbekende opdracht"),
        ("#reopen", "niet mogelijk zolang het ticket Nieuw is; wel mogelijk: Open"),
        ("#cc remove alice@customer.nl", "de aanvrager kan niet worden verwijderd"),
    ],
    ids=[
        "status",
        "priority",
        "type",
        "assign",
        "merge",
        "cc",
        "unknown",
        "forbidden",
        "requester",
    ],
)
async def test_an_invalid_command_is_answered_with_an_error_and_nothing_is_relayed(
    desk: Any, commands: str, fault: str
) -> None:
    app = await desk()
    world = World(app)
    number, _, notice = await open_ticket(world)
    before = await view(app, number)
    await world.send(
        World.answer(notice, sender=AGENT, body=f"#prioriteit hoog\n{commands}\nBeste klant, ...")
    )
    after = await view(app, number)
    assert (after.status, after.priority, after.type) == (
        before.status,
        before.priority,
        before.type,
    )
    assert await world.inbox(CUSTOMER) == []
    error = await world.only(AGENT)
    assert "niet uitgevoerd" in str(error["Subject"])
    assert fault in World.text(error)
    assert any(e.kind == "command_failed" for e in after.events)


async def test_a_merged_away_ticket_is_closed_as_merged_and_its_clock_stopped(
    desk: Any, clock: FrozenClock
) -> None:
    """``#merge``: the merged-away ticket is nobody's turn any more (closed, pointing at
    its target), and its SLA clock stops: no breach is counted for it later."""
    app = await desk()
    world = World(app)
    target, _, _ = await open_ticket(world)
    merged, _, notice = await open_ticket(
        world, customer="carol@customer.nl", subject="Scanner stuk", message_id="<s@customer.nl>"
    )
    await world.send(World.answer(notice, sender=AGENT, body=f"#merge #{target}"))
    gone = await view(app, merged)
    assert (gone.status, gone.action_by, gone.merged_into) == ("closed", "nobody", target)
    closing = [e for e in gone.events if e.kind == "status_changed"]
    assert [(e.old, e.new, e.detail) for e in closing] == [
        ("new", "closed", f"merged into #{target}")
    ]
    async with session(app.engine) as s:
        stopped = await Repo(s).sla_clock(merged)
    assert stopped.running_since is None and stopped.solved_at is not None
    assert (await view(app, target)).status == "new"  # the survivor is untouched


async def test_commands_change_fields_and_are_events(desk: Any) -> None:
    app = await desk()
    world = World(app)
    number, _, notice = await open_ticket(world)
    other, _, _ = await open_ticket(world, "carol@other.nl", subject="Iets anders")
    body = "\n".join(
        (
            "#Prioriteit Hoog",
            "#type incident",
            "#toewijzen me",
            "#cc toevoegen dave@customer.nl",
            "#intern",
            "Klant belt morgen terug.",
        )
    )
    await world.send(World.answer(notice, sender=AGENT, body=body))
    ticket = await view(app, number)
    assert (ticket.priority, ticket.type, ticket.assignee) == ("high", "bug", AGENT)
    assert ticket.status == "new"  # a note does not answer the customer
    assert "dave@customer.nl" in [p.address for p in ticket.participants]
    kinds = [e.kind for e in ticket.events]
    for kind in ("priority_changed", "type_changed", "assignee_changed", "participant_added"):
        assert kind in kinds
    assert await world.inbox(CUSTOMER) == []
    note = await world.only(TEAM)
    assert "Klant belt morgen terug." in World.text(note)
    assert [m for m in ticket.messages if m.direction == "in"][-1].kind == "note"

    # Merge: the thread and people move; later mail to the old token lands on the survivor.
    await world.send(World.answer(notice, sender=AGENT, body=f"#samenvoegen #{other}"))
    merged = await view(app, other)
    assert CUSTOMER in [p.address for p in merged.participants]
    assert any(m.text.startswith("Hallo, de printer") for m in merged.messages)
    late = await world.send(
        make_mail(subject=f"Re: {app.codec.subject_tag(number)} Printer", body="Nog iets.")
    )
    assert late.ticket == other


async def test_help_lists_the_commands(desk: Any) -> None:
    app = await desk()
    world = World(app)
    number, _, notice = await open_ticket(world)
    await world.send(World.answer(notice, sender=AGENT, body="#help"))
    reference = await world.only(AGENT)
    text = World.text(reference)
    assert "#status" in text and "Meer info nodig" in text and "#samenvoegen" in text
    assert "waiting_customer" not in text and "a note: not sent" not in text  # one language
    assert await world.inbox(CUSTOMER) == []
    assert (await view(app, number)).status == "new"


async def test_submission_tags_are_read_and_the_clamp_is_announced(desk: Any) -> None:
    app = await desk()
    world = World(app)
    outcome = await world.send(make_mail(subject="[idee] [kritiek] Donkere modus"))
    assert outcome.ticket is not None
    ticket = await view(app, outcome.ticket)
    assert (ticket.type, ticket.priority, ticket.title) == ("feedback", "medium", "Donkere modus")
    ack = await world.only(CUSTOMER)
    assert "U vroeg om prioriteit kritiek" in World.text(ack)


async def test_keyword_rules_give_urgency(desk: Any) -> None:
    app = await desk(
        submission={"keywords": [{"match": ["werkt niet"], "type": "bug", "priority": "high"}]}
    )
    world = World(app)
    outcome = await world.send(make_mail(subject="Inloggen", body="Het inloggen werkt niet meer."))
    assert outcome.ticket is not None
    ticket = await view(app, outcome.ticket)
    assert (ticket.type, ticket.priority) == ("bug", "high")


async def test_a_strangers_opgelost_does_not_close_someone_elses_ticket(desk: Any) -> None:
    app = await desk()
    world = World(app)
    number, ack, _ = await open_ticket(world)
    stranger = World.answer(ack, sender="Mallory <mallory@elsewhere.org>", body="Opgelost")
    outcome = await world.send(stranger)
    assert outcome.action is Action.HELD
    colleague = World.answer(ack, sender="Carl <carl@customer.nl>", body="Opgelost")
    outcome = await world.send(colleague)
    assert outcome.action is Action.APPENDED  # a colleague may add, not close
    assert (await view(app, number)).status == "new"
    await world.send(World.answer(ack, sender=CUSTOMER, body="Beschouw deze aanvraag als opgelost"))
    assert (await view(app, number)).status == "closed"


async def test_the_team_releases_or_rejects_a_held_mail_by_answering_its_notice(
    desk: Any,
) -> None:
    """A stranger's reply is held; the team's notice carries its text; ``#vrijgeven`` in
    an answer to that notice makes it the customer's reply (its author joins, the status
    moves as for a reply), ``#weigeren`` leaves the next one aside for good."""
    app = await desk()
    world = World(app)
    number, ack, notice = await open_ticket(world)
    await world.send(World.answer(notice, sender=AGENT, body="#status waiting_customer\nFoto?"))
    assert (await view(app, number)).status == "waiting_customer"
    await world.inbox(CUSTOMER)
    colleague = "Dave <dave@partner.org>"
    held = await world.send(World.answer(ack, sender=colleague, body="Hier is de foto van Alice."))
    assert held.action is Action.HELD
    told = await world.only(TEAM)
    assert "Hier is de foto van Alice." in World.text(told) and "#vrijgeven" in World.text(told)

    await world.send(World.answer(told, sender=AGENT, body="#vrijgeven"))
    ticket = await view(app, number)
    assert ticket.status == "open"  # as when the customer answers
    assert "dave@partner.org" in [p.address for p in ticket.participants]
    released = [e for e in ticket.events if e.kind == "message_released"]
    assert [e.old for e in released] == ["dave@partner.org"]
    assert await world.inbox(CUSTOMER) == [] and await world.inbox(AGENT) == []
    again = await world.send(World.answer(ack, sender=colleague, body="Nog een foto."))
    assert again.action is Action.APPENDED  # a participant now: not held

    stranger = World.answer(ack, sender="Mallory <mallory@elsewhere.org>", body="Klik hier")
    assert (await world.send(stranger)).action is Action.HELD
    second = [m for m in await world.inbox(TEAM) if "Tegengehouden" in str(m["Subject"])]
    await world.send(World.answer(second[-1], sender=AGENT, body="#weigeren"))
    ticket = await view(app, number)
    assert [e.old for e in ticket.events if e.kind == "message_rejected"] == [
        "mallory@elsewhere.org"
    ]
    assert "mallory@elsewhere.org" not in [p.address for p in ticket.participants]
    nothing = await world.send(World.answer(second[-1], sender=AGENT, body="#weigeren"))
    assert "commands refused" in nothing.reason
    error = await world.only(AGENT)
    assert "geen tegengehouden bericht" in World.text(error)


async def test_timers_fire_once_across_a_restart_and_two_schedulers(
    desk: Any, clock: FrozenClock
) -> None:
    first = await desk()
    world = World(first)
    number, _, notice = await open_ticket(world)
    await world.send(World.answer(notice, sender=AGENT, body="#status waiting_customer"))
    await world.inbox(CUSTOMER)
    await first.close()

    again = await desk()  # a restart: same database, new process state
    clock.advance(timedelta(days=5))  # past 3 business days: the reminder is due
    counts = [await again.scheduler.run_due(), await again.scheduler.run_due()]
    assert counts == [1, 0]
    world = World(again)
    subjects = [str(m["Subject"]) for m in await world.inbox(CUSTOMER)]
    assert [s for s in subjects if s.startswith("Herinnering")] == [subjects[-1]]
    assert (await view(again, number)).status == "waiting_customer"

    other = await desk()
    clock.advance(timedelta(days=14))  # past 10 business days: auto-resolved, once
    results = await asyncio.gather(other.scheduler.run_due(), again.scheduler.run_due())
    assert sorted(results) == [0, 1]
    assert (await view(again, number)).status == "resolved"


async def test_two_agents_on_two_instances_at_once_both_land_in_order(
    desk: Any, make_config: Callable[..., Config], clock: FrozenClock
) -> None:
    first = await desk()
    second = await desk()  # another instance on the same database
    world = World(first)
    number, _, notice = await open_ticket(world)
    replies = [
        World.answer(notice, sender=AGENT, body="#prioriteit hoog\n#intern\nIk kijk ernaar."),
        World.answer(
            notice, sender="eve@example.com", body="#type incident\n#intern\nBekend probleem."
        ),
    ]
    stored = [
        await app.spool.store(Received(raw, "test"))
        for app, raw in zip((first, second), replies, strict=True)
    ]
    outcomes = await asyncio.gather(
        first.processor.process(stored[0].spool_id), second.processor.process(stored[1].spool_id)
    )
    assert all(o is not None and o.action is Action.APPENDED for o in outcomes)
    ticket = await view(first, number)
    assert (ticket.priority, ticket.type) == ("high", "bug")  # no lost update
    changes = [e.kind for e in ticket.events if e.kind in ("priority_changed", "type_changed")]
    assert sorted(changes) == ["priority_changed", "type_changed"]
    notes = [m for m in ticket.messages if m.direction == "in" and m.kind == "note"]
    assert len(notes) == 2


async def test_closing_without_a_word_tells_the_customer_it_is_closed(desk: Any) -> None:
    app = await desk()
    world = World(app)
    number, _, notice = await open_ticket(world)
    await world.send(World.answer(notice, sender=AGENT, body="#close"))
    assert (await view(app, number)).status == "closed"
    told = await world.only(CUSTOMER)
    assert str(told["Subject"]).startswith("Gesloten:") and f"#{number}" in World.text(told)
