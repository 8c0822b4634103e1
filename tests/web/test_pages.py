"""The ticket page's other forms: a quote to approve, reference fields, a mail's trace."""

from __future__ import annotations

import re
from datetime import timedelta

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


async def test_a_change_on_the_web_is_in_the_tickets_log_with_its_agent(running: Running) -> None:
    await deliver(running.app, make_mail())
    async with client() as http:
        assert await sign_in(http, running.url) == 303
        token = await csrf_of(http, running.url)
        form = {"csrf": token, "priority": "high", "status": "in_progress"}
        async with http.post(f"{running.url}/tickets/1/set", data=form) as page:
            assert page.status == 200
    async with session(running.app.engine) as s:
        view = await Repo(s).ticket_view(1)
    assert view is not None and (view.priority, view.status) == ("high", "in_progress")
    logged = [e for e in view.events if e.kind == "web_change"]
    assert len(logged) == 1 and logged[0].actor == "anna@example.com"
    assert "priority=high" in (logged[0].detail or "")


async def test_the_customer_approves_a_quote_and_says_it_is_solved_on_their_page(
    running: Running,
) -> None:
    from mailgate.core.sessions import Signer
    from mailgate.service import mail_as

    app = running.app
    await deliver(app, make_mail())
    quote = "Rapport: EUR 180."
    await mail_as(app, 1, "anna@example.com", quote, source="web", commands=["#quote"])
    link = running.url + Signer(app.codec.secret).link_path(1, "alice@customer.nl")
    async with client() as http:
        for action in ("approve", "solved"):
            async with http.get(link) as page:
                html = await page.text()
            check = re.search(r'name="check" value="([^"]+)"', html)
            assert check is not None
            if action == "approve":
                assert 'value="approve"' in html  # offered while a quote waits
            async with http.post(link, data={"check": check[1], "action": action}) as done:
                assert done.status == 200
            async with session(app.engine) as s:
                view = await Repo(s).ticket_view(1)
            assert view is not None
            if action == "approve":
                assert view.approval == "approved"
    assert view.status == "closed"  # the workflow's move on "opgelost" by mail


async def test_the_lists_mark_moves_when_a_ticket_changes(running: Running) -> None:
    await deliver(running.app, make_mail())
    async with client() as http:
        assert await sign_in(http, running.url) == 303

        async def mark() -> str:
            async with http.get(f"{running.url}/tickets/changed") as answer:
                return str((await answer.json())["mark"])

        before = await mark()
        assert before == await mark()  # nothing changed: the page stays
        running.app.clock.advance(timedelta(minutes=1))  # type: ignore[attr-defined]
        await deliver(running.app, make_mail(subject="Nog een"))
        assert await mark() != before  # the page reloads


async def test_an_agent_downloads_the_raw_mail_as_received(running: Running) -> None:
    raw = make_mail(subject="Ruw", body="Precies zo ontvangen.")
    await deliver(running.app, raw)
    async with client() as http:
        assert await sign_in(http, running.url) == 303
        async with http.get(f"{running.url}/tickets/1/raw/0") as download:
            assert download.status == 200
            assert (
                download.headers["Content-Disposition"] == 'attachment; filename="ticket-1-0.eml"'
            )
            assert await download.read() == raw


async def test_the_list_filters_by_status_requester_and_organisation(running: Running) -> None:
    await deliver(running.app, make_mail(subject="Eerste"))
    await deliver(running.app, make_mail(subject="Tweede", sender="Bert <bert@klant.nl>"))
    async with client() as http:
        assert await sign_in(http, running.url) == 303

        async def listed(query: str) -> list[str]:
            async with http.get(f"{running.url}/tickets?view=all&{query}") as page:
                return re.findall(r'<td><a href="/tickets/\d+">(#\d+)</a></td>', await page.text())

        assert await listed("status=new") == ["#1", "#2"]
        assert await listed("status=closed") == []
        assert await listed("requester=BERT@klant.nl") == ["#2"]
        assert await listed("organisation=customer.nl") == ["#1"]
        assert await listed("q=tweede") == ["#2"]
