"""The web desk end to end in a real browser (Debian's Chromium, driven by Playwright).

An agent signs in, finds a ticket by a word of its text, answers it (the answer
reaches the customer from support@ through the outbox), sets a status, releases a held
mail; the customer opens the link from their acknowledgment, replies, and the reply
lands on the ticket. Screenshots of the list, a ticket and the customer's page are
saved (into ``MAILGATE_SCREENSHOTS`` when set: ``docs/screenshots`` keeps the README's).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailgate.store.db import session
from mailgate.store.repos import Repo
from tests.conftest import deliver
from tests.mails import make_mail
from tests.web.conftest import AGENT, PASSWORD, Running
from tests.world import World

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("MAILGATE_REQUIRE_SERVERS"),
    reason="Debian's chromium is not installed",
)


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        args = ["--disable-gpu", "--disable-background-networking", "--disable-component-update"]
        args += ["--disable-sync", "--no-first-run"]
        if os.geteuid() == 0:
            args.append("--no-sandbox")
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield launched
        finally:
            await launched.close()


def shots(tmp_path: Path) -> Path:
    chosen = os.environ.get("MAILGATE_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def test_the_team_and_a_customer_work_a_ticket_in_the_browser(
    running: Running, browser: object, tmp_path: Path
) -> None:
    from playwright.async_api import Browser, expect

    assert isinstance(browser, Browser)
    app, url, folder = running.app, running.url, shots(tmp_path)
    world = World(app)
    await deliver(app, make_mail(subject="Printer brandt", body="De printer in hal 3 brandt."))
    await deliver(
        app,
        make_mail(
            subject="Factuur klopt niet",
            sender="Bert <bert@klant.nl>",
            body="De factuur van maart rekent twee keer verzending.",
        ),
    )
    ack = await world.only("alice@customer.nl")
    link = re.search(r"http://127\.0\.0\.1:\d+/c/1/[\w-]+", World.text(ack))
    assert link is not None, World.text(ack)

    page = await (await browser.new_context(viewport={"width": 1280, "height": 800})).new_page()
    await page.goto(f"{url}/tickets")
    await expect(page).to_have_url(f"{url}/sign-in")
    await page.fill("#address", AGENT)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("table.tickets")).to_contain_text("Factuur klopt niet")
    await page.screenshot(path=str(folder / "list.png"), full_page=True)
    await page.click("text=Nederlands")  # the agent's language, kept in the session
    await expect(page.locator("nav.views")).to_contain_text("Support aan zet")
    await page.click("text=English")
    await expect(page.locator("nav.views")).to_contain_text("Support acts")

    await page.fill("input[name=q]", "hal 3")
    await page.click("form.filters button[type=submit]")
    rows = page.locator("table.tickets tbody tr")
    await expect(rows).to_have_count(1)
    await page.click("text=Printer brandt")
    await expect(page.locator("h1")).to_contain_text("Printer brandt")

    await page.fill("#text", "Zet de printer uit en bel ons als het blijft branden.")
    await page.click("#answer ~ form button[type=submit]")
    await expect(page.locator(".message.agent.out")).to_contain_text("Zet de printer uit")
    answer = await world.only("alice@customer.nl")
    assert answer["From"].addresses[0].addr_spec == "support@example.com"
    assert "Zet de printer uit" in World.text(answer)

    await page.select_option("select[name=status]", "in_progress")
    await page.click("#change ~ form.grid button[type=submit]")
    await expect(page.locator(".facts")).to_contain_text("In progress")

    tag = app.codec.subject_tag(1)
    await deliver(app, make_mail(subject=f"Re: {tag} Printer", sender="eve@elders.nl"))
    await page.reload()
    await expect(page.locator("#held")).to_be_visible()
    await page.screenshot(path=str(folder / "ticket.png"), full_page=True)
    await page.click("button[value=release]")
    await expect(page.locator("#held")).to_have_count(0)

    customer = await (await browser.new_context(viewport={"width": 390, "height": 844})).new_page()
    await customer.goto(link[0])
    await expect(customer.locator("h1")).to_contain_text("Printer brandt")
    await expect(customer.locator("body")).not_to_contain_text("eve@elders.nl")
    await expect(customer.locator(".message.agent")).to_have_count(1)  # as relayed, once
    await customer.fill("#text", "Uitgezet, hij brandt niet meer. Dank!")
    await customer.screenshot(path=str(folder / "customer.png"), full_page=True)
    await customer.click("button[value=reply]")
    await expect(customer.locator(".ok")).to_be_visible()
    async with session(app.engine) as s:
        view = await Repo(s).ticket_view(1)
    assert view is not None
    mine = [m for m in view.messages if m.from_addr == "alice@customer.nl"]
    assert mine[-1].text.startswith("Uitgezet, hij brandt niet meer")
    assert (folder / "list.png").stat().st_size > 10_000
