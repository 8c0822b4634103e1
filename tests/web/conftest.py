"""A running web desk on a real port: an app (SQLite by default), its server, an agent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from mailgate.app import App
from mailgate.web.auth import Passwords
from mailgate.web.server import WebDesk
from tests.conftest import free_port

AGENT = "anna@example.com"
PASSWORD = "correct horse battery"
DEBTOR = {"name": "debiteurnummer", "pattern": r"debiteurnummer\s*:?\s*(\d{4,10})"}
QUEUES = [
    {
        "name": "support",
        "addresses": ["support@example.com"],
        "team_address": "team@example.com",
        "fields": [DEBTOR],
    },
]


@dataclass
class Running:
    app: App
    url: str


@pytest.fixture
def backend() -> str:  # the web desk's logic is the same on both; its SQL runs in bench/web.py
    return "sqlite"


@pytest.fixture
async def running(desk: Callable[..., Any]) -> AsyncIterator[Running]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app: App = await desk(
        web={"port": port, "public_url": url, "sign_in_attempts": 5}, queues=QUEUES
    )
    await Passwords(app.blocking).set(AGENT, PASSWORD, app.clock.now())
    server = WebDesk(app)
    await server.start("127.0.0.1", port)
    try:
        yield Running(app, url)
    finally:
        await server.close()
