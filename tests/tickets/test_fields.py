"""Reference fields by mail: found in a first mail or a later reply, asked for when
required and missing, set by an agent's ``#veld``, shown by ``show`` and ``tickets``."""

from __future__ import annotations

from typing import Any

from mailgate.core.model import Action
from tests.mails import make_mail
from tests.tickets.test_effects import AGENT, CUSTOMER, TEAM, view
from tests.world import World

DEBTOR = {
    "name": "debiteurnummer",
    "label": "debiteurnummer",
    "pattern": r"debiteur(?:nummer|nr)\.?\s*:?\s*(\d{4,10})",
    "required": True,
}
QUEUES = [
    {
        "name": "support",
        "addresses": ["support@example.com"],
        "team_address": "team@example.com",
        "fields": [DEBTOR, {"name": "plaatsing", "pattern": r"plaatsing\s*:?\s*(P-\d+)"}],
    }
]


async def test_the_reference_field_round_trip_by_mail(desk: Any) -> None:
    app = await desk(queues=QUEUES)
    world = World(app)
    opened = await world.send(make_mail(body="Hallo, ik kan de facturen niet openen."))
    assert opened.action is Action.CREATED and opened.ticket is not None
    ack = await world.only(CUSTOMER)
    assert "Wij missen nog: debiteurnummer" in World.text(ack)
    notice = await world.only(TEAM)
    assert (await view(app, opened.ticket)).fields == ()

    # The customer answers the acknowledgment with the number: filled in, no question again.
    reply = World.answer(ack, sender=CUSTOMER, body="Debiteurnummer: 123456\nPlaatsing P-77")
    assert (await world.send(reply)).action is Action.APPENDED
    ticket = await view(app, opened.ticket)
    assert ticket.fields == (("debiteurnummer", "123456"), ("plaatsing", "P-77"))
    assert [(e.field, e.new) for e in ticket.events if e.kind == "field_set"] == [
        ("debiteurnummer", "123456"),
        ("plaatsing", "P-77"),
    ]

    # An agent corrects it by command; a name the queue does not know is refused, in Dutch.
    await world.send(World.answer(notice, sender=AGENT, body="#veld debiteurnummer 654321"))
    ticket = await view(app, opened.ticket)
    assert dict(ticket.fields)["debiteurnummer"] == "654321"
    changed = [e for e in ticket.events if e.kind == "field_set"][-1]
    assert (changed.old, changed.new, changed.actor) == ("123456", "654321", AGENT)
    await world.send(World.answer(notice, sender=AGENT, body="#veld ordernummer 1"))
    refusal = await world.only(AGENT)
    assert "#veld <naam> <waarde>, met als naam: debiteurnummer, plaatsing" in World.text(refusal)

    # A first mail that carries the field (here in its subject) is not asked for it.
    second = await world.send(
        make_mail(sender="bob@other.nl", subject="Factuur debiteurnr. 99887", body="Zie onderwerp")
    )
    assert "missen" not in World.text(await world.only("bob@other.nl"))
    assert (await view(app, second.ticket or 0)).fields == (("debiteurnummer", "99887"),)

    # show and tickets print them; tickets --search finds a ticket by its number.
    import argparse
    import io

    from mailgate.cli.desk import show, tickets

    out = io.StringIO()
    await show(app, argparse.Namespace(ref=f"#{opened.ticket}", json=False, full=False), out)
    assert "debiteurnummer 654321 · plaatsing P-77" in out.getvalue()
    listed = io.StringIO()
    filters = dict.fromkeys(("status", "action_by", "assignee", "priority", "type_", "queue"))
    filters.update(requester=None, organisation=None, search="654321", sort="number", json=False)
    await tickets(app, argparse.Namespace(**filters), listed)
    lines = listed.getvalue().splitlines()
    assert len(lines) == 2 and "[debiteurnummer 654321] [plaatsing P-77]" in lines[1]
