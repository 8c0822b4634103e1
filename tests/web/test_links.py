"""Notifications carry the web desk's link only where one is meant for their reader."""

from __future__ import annotations

import re

from mailgate.app import App
from mailgate.core.sessions import Signer
from tests.conftest import deliver
from tests.mails import make_mail
from tests.web.conftest import Running
from tests.world import World


async def test_the_customer_gets_their_own_link_and_the_team_its_page(running: Running) -> None:
    world = World(running.app)
    await deliver(running.app, make_mail())
    ack = World.text(await world.only("alice@customer.nl"))
    own = Signer(running.app.codec.secret).link_path(1, "alice@customer.nl")
    assert re.findall(r"http://\S+/c/\S+", ack) == [f"{running.url}{own}"]
    team = World.text(await world.only("team@example.com"))
    assert f"{running.url}/tickets/1" in team and "/c/" not in team
    # one mail to two customers: one person's link would let the other act as them
    await deliver(running.app, make_mail(subject="Nieuw", cc="Carl <carl@customer.nl>"))
    shared = World.text(await world.only("alice@customer.nl"))
    assert "/c/" not in shared


async def test_without_a_public_url_no_mail_carries_a_link(app: App) -> None:
    world = World(app)
    await deliver(app, make_mail())
    for address in ("alice@customer.nl", "team@example.com"):
        text = World.text(await world.only(address))
        assert "/c/" not in text and "/tickets/" not in text
