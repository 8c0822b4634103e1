"""The ticket page's other forms: a quote to approve, reference fields, a mail's trace."""

from __future__ import annotations

import re

from mailgate.store.db import session
from mailgate.store.repos import Repo
from tests.conftest import deliver
from tests.mails import make_mail
from tests.web.conftest import Running
from tests.web.test_security import client, csrf_of, sign_in
from tests.world import World


async def test_a_quote_and_a_reference_field_go_the_way_of_the_commands(running: Running) -> None:
    app = running.app
    world = World(app)
    await deliver(app, make_mail())
    await world.inbox("alice@customer.nl")
    async with client() as http:
        assert await sign_in(http, running.url) == 303
        token = await csrf_of(http, running.url)
        quote = {"csrf": token, "text": "Een extra rapport: 2 uur, EUR 180."}
        async with http.post(f"{running.url}/tickets/1/quote", data=quote) as page:
            assert "EUR 180" in await page.text()
        field = {"csrf": token, "field_debiteurnummer": "123456"}
        async with http.post(f"{running.url}/tickets/1/fields", data=field) as page:
            assert page.status == 200
        async with http.get(f"{running.url}/tickets/1") as page:
            html = await page.text()
        trace = re.search(r'href="(/tickets/1/trace/\d+)"', html)
        assert trace is not None
        async with http.get(running.url + trace[1]) as page:
            traced = await page.text()
        assert "created" in traced and "no ticket reference" in traced
    async with session(app.engine) as s:
        view = await Repo(s).ticket_view(1)
    assert view is not None
    assert view.approval == "pending" and "EUR 180" in view.quote
    assert view.fields == (("debiteurnummer", "123456"),)
    asked = World.text(await world.only("alice@customer.nl"))
    assert "EUR 180" in asked  # the customer is asked to approve, as after a mailed #quote
