"""The web desk's locks, tried from outside over HTTP: sessions, forms, links, mail HTML."""

from __future__ import annotations

import re
from email.message import EmailMessage

import aiohttp

from mailgate.core.sessions import Signer
from tests.conftest import deliver
from tests.mails import make_mail
from tests.web.conftest import AGENT, PASSWORD, Running


def client() -> aiohttp.ClientSession:
    # unsafe: keep cookies of a bare IP address (the desk listens on 127.0.0.1)
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def sign_in(http: aiohttp.ClientSession, url: str, password: str = PASSWORD) -> int:
    async with http.get(f"{url}/sign-in") as page:
        check = re.search(r'name="check" value="([^"]+)"', await page.text())
    assert check is not None
    form = {"check": check[1], "address": AGENT, "password": password, "lang": "en"}
    async with http.post(f"{url}/sign-in", data=form, allow_redirects=False) as answer:
        return answer.status


async def csrf_of(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(f"{url}/tickets") as page:
        found = re.search(r'name="csrf" value="([^"]+)"', await page.text())
    assert found is not None
    return found[1]


async def test_no_team_page_without_a_session(running: Running) -> None:
    await deliver(running.app, make_mail())
    async with client() as http:
        for path in ("/tickets", "/tickets/1", "/tickets/changed", "/tickets/1/raw/0"):
            async with http.get(running.url + path, allow_redirects=False) as answer:
                assert answer.status == 303, path
                assert answer.headers["Location"] == "/sign-in"
        form = {"text": "hello", "csrf": "x"}
        async with http.post(f"{running.url}/tickets/1/answer", data=form) as answer:
            assert answer.status == 403
        async with http.get(f"{running.url}/sign-in") as page:
            assert page.status == 200
            assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


async def test_a_forged_session_cookie_is_no_session(running: Running) -> None:
    other = Signer(b"another installation's secret!!")
    from datetime import timedelta

    forged = other.session(AGENT, running.app.clock.now(), timedelta(hours=1), "en", "n")
    async with client() as http:
        http.cookie_jar.update_cookies({"mailgate_session": forged})
        async with http.get(f"{running.url}/tickets", allow_redirects=False) as answer:
            assert answer.status == 303


async def test_sign_in_with_the_password_and_not_without(running: Running) -> None:
    async with client() as http:
        assert await sign_in(http, running.url, "wrong password!") == 401
        assert await sign_in(http, running.url) == 303
        async with http.get(f"{running.url}/tickets") as page:
            assert page.status == 200
            assert AGENT in await page.text()


async def test_sign_in_is_rate_limited(running: Running) -> None:
    async with client() as http:
        statuses = [await sign_in(http, running.url, f"guess number {n}") for n in range(6)]
        assert statuses == [401] * 5 + [429]
        # the right password does not get through while the limit holds
        assert await sign_in(http, running.url) == 429


async def test_a_form_without_its_csrf_token_is_refused(running: Running) -> None:
    await deliver(running.app, make_mail())
    async with client() as http:
        assert await sign_in(http, running.url) == 303
        token = await csrf_of(http, running.url)
        url = f"{running.url}/tickets/1/set"
        async with http.post(url, data={"priority": "high"}, allow_redirects=False) as no:
            assert no.status == 403
        wrong = {"priority": "high", "csrf": token[:-2] + "xx"}
        async with http.post(url, data=wrong, allow_redirects=False) as bad:
            assert bad.status == 403
        right = {"priority": "high", "csrf": token}
        async with http.post(url, data=right, allow_redirects=False) as ok:
            assert ok.status == 303
    async with running.app.engine.connect() as conn:
        from sqlalchemy import text

        assert (await conn.execute(text("SELECT priority FROM tickets"))).scalar() == "high"


async def test_customer_links_forged_or_of_others_are_404_and_never_a_session(
    running: Running,
) -> None:
    await deliver(running.app, make_mail())
    signer = Signer(running.app.codec.secret)
    good = signer.link_path(1, "alice@customer.nl")
    async with client() as http:
        async with http.get(running.url + good) as page:
            assert page.status == 200
            assert "de printer brandt weer" in await page.text()
        for bad in (
            good[:-3] + "AAA",
            signer.link_path(1, "mallory@customer.nl"),  # not a participant
            signer.link_path(2, "alice@customer.nl"),  # no such ticket
            "/c/1/" + "A" * 22,
        ):
            async with http.get(running.url + bad) as page:
                assert page.status == 404, bad
        # the customer's link opened no door to the team's pages
        async with http.get(f"{running.url}/tickets", allow_redirects=False) as answer:
            assert answer.status == 303


async def test_html_and_script_from_mails_render_inert(running: Running) -> None:
    hostile = EmailMessage()
    hostile["From"] = "Alice <alice@customer.nl>"
    hostile["To"] = "support@example.com"
    hostile["Subject"] = '<img src=x onerror="alert(1)"> kapot'
    hostile["Message-ID"] = "<hostile@customer.nl>"
    hostile.set_content("Zie hieronder.")
    hostile.add_alternative(
        '<p>Hallo<script>alert("x")</script><a href="javascript:alert(2)">klik</a>'
        "<style>body{background:url(javascript:alert(3))}</style></p>",
        subtype="html",
    )
    await deliver(running.app, hostile.as_bytes())
    async with client() as http:
        assert await sign_in(http, running.url) == 303
        for path in ("/tickets", "/tickets/1"):
            async with http.get(running.url + path) as page:
                html = await page.text()
                assert "<script>" not in html and "<img" not in html and "javascript:" not in html
                assert "&lt;img src=x onerror=" in html
                assert "script-src 'self'" in page.headers["Content-Security-Policy"]


async def test_attachments_are_downloads_never_pages(running: Running) -> None:
    mail = EmailMessage()
    mail["From"] = "Alice <alice@customer.nl>"
    mail["To"] = "support@example.com"
    mail["Subject"] = "Bijlage"
    mail.set_content("Zie bijlage.")
    mail.add_attachment(
        b"<html><script>alert(1)</script></html>",
        maintype="text",
        subtype="html",
        filename="page.html",
    )
    await deliver(running.app, mail.as_bytes())
    async with client() as http:
        assert await sign_in(http, running.url) == 303
        async with http.get(f"{running.url}/tickets/1") as page:
            found = re.search(r'href="(/tickets/1/attachments/[0-9a-f]{64})"', await page.text())
        assert found is not None
        async with http.get(running.url + found[1]) as download:
            assert download.status == 200
            assert download.headers["Content-Disposition"].startswith("attachment;")
            assert download.headers["X-Content-Type-Options"] == "nosniff"
            assert "sandbox" in download.headers["Content-Security-Policy"]


async def test_a_customers_link_expires_link_days_after_archiving(running: Running) -> None:
    from datetime import timedelta

    from sqlalchemy import text

    await deliver(running.app, make_mail())
    link = running.url + Signer(running.app.codec.secret).link_path(1, "alice@customer.nl")
    archived = running.app.clock.now()
    async with running.app.engine.begin() as conn:
        await conn.execute(
            text("UPDATE tickets SET status = 'archived', status_since = :at"),
            {"at": archived.replace(tzinfo=None)},
        )
    clock = running.app.clock
    async with client() as http:
        clock.advance(timedelta(days=89))  # type: ignore[attr-defined]
        async with http.get(link) as page:
            assert page.status == 200
        clock.advance(timedelta(days=2))  # type: ignore[attr-defined]
        async with http.get(link) as page:
            assert page.status == 404


async def test_a_mailed_sign_in_link_works_once_and_only_for_agents(running: Running) -> None:
    from tests.world import World

    world = World(running.app)

    async def ask(http: aiohttp.ClientSession, address: str) -> str:
        async with http.get(f"{running.url}/sign-in") as page:
            check = re.search(r'name="check" value="([^"]+)"', await page.text())
        assert check is not None
        form = {"check": check[1], "address": address, "lang": "en"}
        async with http.post(f"{running.url}/sign-in/mail", data=form) as answer:
            assert answer.status == 200
            return await answer.text()

    async with client() as http:
        stranger = await ask(http, "alice@customer.nl")
        mine = await ask(http, AGENT)
        assert "a sign-in link is on its way" in stranger and "on its way" in mine
        assert await world.inbox("alice@customer.nl") == []  # nobody else gets one
        mail = await world.only(AGENT)
        link = re.search(r"http://\S+/sign-in/link/\S+", World.text(mail))
        assert link is not None and mail["Auto-Submitted"] == "auto-generated"
        async with http.get(link[0]) as page:  # opening it uses nothing up
            confirm = await page.text()
        check = re.search(r'name="check" value="([^"]+)"', confirm)
        assert check is not None and f"Sign in as {AGENT}" in confirm
        async with http.post(link[0], data={"check": check[1]}, allow_redirects=False) as use:
            assert use.status == 303
        async with http.get(f"{running.url}/tickets", allow_redirects=False) as page:
            assert page.status == 200
    async with client() as other:  # the same link a second time: refused
        async with other.get(link[0]) as page:
            again = re.search(r'name="check" value="([^"]+)"', await page.text())
        assert again is not None
        async with other.post(link[0], data={"check": again[1]}, allow_redirects=False) as used:
            assert used.status == 410
        forged = link[0][:-4] + "AAAA"
        async with other.get(forged) as page:
            assert page.status == 404
