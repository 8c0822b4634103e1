"""The five seed desks, each played as its help page describes it, by mail end to end.

KampAdmin, KidsKonnect, Club-assistent, Appinco and Studytube each expect
something different of a support desk; each scenario below configures mailgate
the way that desk works and plays its story through the intake path, the
workflow, the timers and the outbox.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest

from mailgate.app import App, build_app
from mailgate.clock import FrozenClock
from mailgate.config import Config
from mailgate.core.model import Action
from mailgate.core.workflow import DEFAULT_WORKFLOW
from tests.mails import make_mail
from tests.tickets.test_effects import AGENT, TEAM, view
from tests.world import World


@pytest.fixture
async def world(
    make_config: Callable[..., Config], clock: FrozenClock
) -> AsyncIterator[Callable[..., Any]]:
    apps: list[App] = []

    async def build(**sections: Any) -> World:
        app = await build_app(make_config(**sections), clock)
        apps.append(app)
        return World(app)

    yield build
    for app in apps:
        await app.close()


def states_with(**extra: dict[str, Any]) -> dict[str, Any]:
    """The shipped states as config, plus ``extra`` ones (added to every open state's next)."""
    states: dict[str, Any] = {}
    for state in DEFAULT_WORKFLOW.states:
        nexts = list(state.next)
        if state.group.value in ("support", "customer", "hold") and state.name != "resolved":
            nexts += list(extra)
        states[state.name] = {
            "group": state.group.value,
            "nl": state.nl,
            "en": state.en,
            "next": nexts,
        }
    states.update(extra)
    return states


async def test_kampadmin_one_question_per_ticket_and_priority_rules(world: Any) -> None:
    """KampAdmin: type and priority with submission rules, "actie vereist door", one
    question per ticket (a reply to a closed ticket is a new ticket)."""
    w = await world(workflow={"reply_to_closed": "new_ticket"})
    wish = await w.send(
        make_mail(subject="[Feedback of idee] [kritiek] Graag een donkere modus", body="Graag!")
    )
    assert wish.ticket is not None
    ticket = await view(w.app, wish.ticket)
    assert (ticket.type, ticket.priority) == ("feedback", "medium")
    assert "U vroeg om prioriteit kritiek" in World.text(await w.only("alice@customer.nl"))
    await w.inbox(TEAM)

    bug = await w.send(make_mail(subject="[Error of bug] [kritiek] Inschrijvingen verdwenen"))
    assert bug.ticket is not None
    ticket = await view(w.app, bug.ticket)
    assert (ticket.type, ticket.priority, ticket.action_by) == ("bug", "critical", "support")
    ack = await w.only("alice@customer.nl")
    assert "U vroeg" not in World.text(ack)
    notice = await w.only(TEAM)

    await w.send(World.answer(notice, sender=AGENT, body="#status waiting_customer\nWelk kamp?"))
    assert (await view(w.app, bug.ticket)).action_by == "customer"
    question = await w.only("alice@customer.nl")
    await w.send(World.answer(question, sender="alice@customer.nl", body="Zomerkamp 2026."))
    assert (await view(w.app, bug.ticket)).action_by == "support"
    team = await w.only(TEAM)
    await w.send(World.answer(team, sender=AGENT, body="#close\nHersteld uit de back-up."))
    closed = await w.only("alice@customer.nl")
    assert (await view(w.app, bug.ticket)).status == "closed"

    again = await w.send(
        World.answer(closed, sender="alice@customer.nl", body="Andere vraag: hoe exporteer ik?")
    )
    assert again.action is Action.CREATED and again.ticket not in (None, bug.ticket)
    assert (await view(w.app, bug.ticket)).status == "closed"


async def test_kidskonnect_automatic_urgency_and_privacy(world: Any) -> None:
    """KidsKonnect: urgency from what the report says; no BSN numbers in tickets."""
    w = await world(
        submission={
            "keywords": [
                {"match": ["verstorend voor meerdere", "meerdere collega's"], "priority": "high"},
                {"match": ["foutmelding", "werkt niet"], "type": "bug"},
            ]
        }
    )
    body = (
        "Module: facturatie\n"
        "Bij het aanmaken van de facturen krijgen wij een foutmelding.\n"
        "Is dit verstorend voor meerdere collega's en/of ouders? Ja.\n"
        "Debiteurnummer 4711, kind met BSN 111222333.\n"
    )
    outcome = await w.send(make_mail(subject="Facturatie: foutmelding", body=body))
    assert outcome.ticket is not None
    ticket = await view(w.app, outcome.ticket)
    assert (ticket.type, ticket.priority) == ("bug", "high")
    assert "111222333" not in ticket.messages[0].text
    assert any(e.kind == "privacy_masked" for e in ticket.events)
    to_customer = await w.inbox("alice@customer.nl")
    assert any("BSN" in World.text(m) for m in to_customer)  # told once, kindly
    notice = await w.only(TEAM)
    assert "111222333" not in World.text(notice)

    # The team re-rates once it knows more; the change is an event.
    await w.send(World.answer(notice, sender=AGENT, body="#prioriteit gemiddeld"))
    ticket = await view(w.app, outcome.ticket)
    assert ticket.priority == "medium"
    assert [(e.old, e.new) for e in ticket.events if e.kind == "priority_changed"] == [
        ("high", "medium")
    ]


async def test_club_assistent_extra_work_confirmation_and_archive(
    world: Any, clock: FrozenClock
) -> None:
    """Club-assistent: high only for problems, extra work needs approval, confirmation
    before closing, replies after closing arrive without changing status, archived after
    7 days, last changed and by whom."""
    w = await world(workflow={"reply_to_closed": "append"})
    outcome = await w.send(make_mail(subject="[wens] [hoog] Ledenlijst per team"))
    assert outcome.ticket is not None
    number = outcome.ticket
    ticket = await view(w.app, number)
    assert (ticket.type, ticket.priority) == ("feedback", "medium")
    await w.inbox("alice@customer.nl")
    notice = await w.only(TEAM)

    await w.send(
        World.answer(
            notice,
            sender=AGENT,
            body="#type meerwerk\n#offerte 3 uur, 240 euro\nDit bouwen wij graag voor u.",
        )
    )
    ticket = await view(w.app, number)
    assert (ticket.type, ticket.status, ticket.approval) == (
        "extra_request",
        "approval_needed",
        "pending",
    )
    assert (ticket.updated_by, ticket.action_by) == (AGENT, "customer")
    quote = await w.only("alice@customer.nl")
    assert "3 uur, 240 euro" in World.text(quote)
    await w.send(World.answer(quote, sender="alice@customer.nl", body="Akkoord"))
    ticket = await view(w.app, number)
    assert (ticket.status, ticket.approval, ticket.updated_by) == (
        "in_progress",
        "approved",
        "alice@customer.nl",
    )
    team = await w.only(TEAM)

    await w.send(World.answer(team, sender=AGENT, body="#status resolved"))
    confirm = await w.only("alice@customer.nl")
    assert "akkoord" in World.text(confirm)
    await w.send(World.answer(confirm, sender="alice@customer.nl", body="Akkoord, dank!"))
    assert (await view(w.app, number)).status == "closed"

    clock.advance(timedelta(days=3))
    late = await w.send(World.answer(confirm, sender="alice@customer.nl", body="Werkt prima."))
    assert (late.action, late.ticket) == (Action.APPENDED, number)
    assert (await view(w.app, number)).status == "closed"
    clock.advance(timedelta(days=4, hours=1))
    assert await w.app.scheduler.run_due() == 1
    assert (await view(w.app, number)).status == "archived"
    after = await w.send(World.answer(confirm, sender="alice@customer.nl", body="Nieuwe vraag"))
    assert after.action is Action.CREATED and after.ticket != number


async def test_appinco_replies_land_on_their_ticket_and_the_customer_closes_it(
    world: Any,
) -> None:
    """Appinco: every mail to support@ must not become a new ticket; colleagues in CC see
    the ticket; "more info needed" answered from the mail client; site down is urgent;
    the customer marks the request solved."""
    w = await world(
        submission={
            "keywords": [
                {"match": ["site down", "site is down"], "type": "bug", "priority": "critical"}
            ]
        }
    )
    first = await w.send(
        make_mail(
            subject="Site down!",
            body="Onze app is niet bereikbaar.",
            cc="Carl Collega <carl@customer.nl>",
        )
    )
    assert first.ticket is not None
    number = first.ticket
    ticket = await view(w.app, number)
    assert (ticket.type, ticket.priority) == ("bug", "critical")
    await w.inbox("alice@customer.nl")
    notice = await w.only(TEAM)

    await w.send(
        World.answer(notice, sender=AGENT, body="#status meer info nodig\nWelke URL precies?")
    )
    asked = await w.inbox("alice@customer.nl")
    assert asked and "Welke URL precies?" in World.text(asked[-1])
    assert await w.inbox("carl@customer.nl")  # the colleague in CC sees it too

    for prefix, who in (("Antw: ", "carl@customer.nl"), ("RE: ", "alice@customer.nl")):
        outcome = await w.send(
            World.answer(asked[-1], sender=who, body=f"Info van {who}", prefix=prefix)
        )
        assert (outcome.action, outcome.ticket) == (Action.APPENDED, number)
    assert (await view(w.app, number)).status == "open"
    await w.send(
        World.answer(
            asked[-1], sender="alice@customer.nl", body="Beschouw deze aanvraag als opgelost"
        )
    )
    ticket = await view(w.app, number)
    assert ticket.status == "closed"
    assert len([m for m in ticket.messages if m.direction == "in"]) == 5  # one ticket, all mail


async def test_studytube_incidents_development_and_reopening(world: Any) -> None:
    """Studytube: support question / idea / incident, incidents first; type and priority
    change during handling; "waiting for your answer"; escalation to development;
    closed, but a reply reopens."""
    w = await world(
        workflow={
            "reply_to_closed": "reopen",
            "states": states_with(
                development={
                    "group": "hold",
                    "nl": "Bij ontwikkeling",
                    "en": "With development",
                    "next": ["open", "in_progress", "resolved", "closed"],
                }
            ),
        }
    )
    outcome = await w.send(make_mail(subject="[supportvraag] Certificaat niet zichtbaar"))
    assert outcome.ticket is not None
    number = outcome.ticket
    assert (await view(w.app, number)).type == "question"
    await w.inbox("alice@customer.nl")
    notice = await w.only(TEAM)

    # It turns out to be an incident: type and priority change, both recorded.
    await w.send(
        World.answer(
            notice, sender=AGENT, body="#type incident\n#prioriteit hoog\n#status bij ontwikkeling"
        )
    )
    ticket = await view(w.app, number)
    assert (ticket.type, ticket.priority, ticket.status, ticket.action_by) == (
        "bug",
        "high",
        "development",
        "nobody",
    )
    assert {"type_changed", "priority_changed", "status_changed"} <= {e.kind for e in ticket.events}
    assert await w.inbox("alice@customer.nl") == []  # commands only: no mail to the customer

    await w.send(World.answer(notice, sender=AGENT, body="#status gesloten\nHet is verholpen."))
    fixed = await w.only("alice@customer.nl")
    assert "Het is verholpen." in World.text(fixed)
    assert (await view(w.app, number)).status == "closed"
    reply = await w.send(
        World.answer(fixed, sender="alice@customer.nl", body="Bij mij nog steeds niet.")
    )
    assert (reply.action, reply.ticket) == (Action.APPENDED, number)
    assert (await view(w.app, number)).status == "open"
