"""Answer monitoring over HTTP: ``/healthz`` (200 or 503, with reasons) and ``/metrics``.

Served by aiohttp.web on the daemon's event loop (two GET routes); nothing else
is served (decision 0016: why aiohttp). Health means: the
database answers, the listeners are bound, each IMAP mailbox this instance polls
is connected (the others are polled by another instance), and no outbox mail has
been due for longer than ``stuck_after``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine

from mailgate.clock import Clock
from mailgate.errors import cannot_listen
from mailgate.ops.metrics import Metrics
from mailgate.store.db import session
from mailgate.store.repos import Repo

if TYPE_CHECKING:
    from mailgate.app import App

log = structlog.get_logger("mailgate.ops.http")


@dataclass
class Health:
    """What ``/healthz`` checks; ``listening`` reports whether the listeners are bound."""

    engine: AsyncEngine
    metrics: Metrics
    clock: Clock
    mailboxes: tuple[str, ...]
    listening: Callable[[], bool] = lambda: True
    stuck_after: timedelta = timedelta(minutes=15)
    timeout: float = 5.0

    async def check(self) -> tuple[bool, dict[str, str]]:
        """(healthy, reason per check); refreshes the database gauges on the way."""
        found: dict[str, str] = {}
        healthy = True
        try:
            stuck = await asyncio.wait_for(self._database(self.clock.now()), self.timeout)
            found["database"] = "ok"
            found["outbox"] = (
                "ok" if not stuck else f"{stuck} mail(s) due for over {self.stuck_after}"
            )
            healthy &= not stuck
        except Exception as exc:  # any failure to read is the answer: not healthy
            found["database"] = f"unreachable: {type(exc).__name__}"
            healthy = False
        found["listeners"] = "ok" if self.listening() else "not bound"
        healthy &= found["listeners"] == "ok"
        for mailbox in self.mailboxes:
            state = self.metrics.imap_state.get(mailbox, "standby (polled by another instance)")
            found[f"imap {mailbox}"] = state
            healthy &= state == "connected" or state.startswith("standby")
        return healthy, found

    async def _database(self, now: datetime) -> int:
        async with session(self.engine) as s:
            repo = Repo(s)
            tickets = await repo.tickets_by_status()
            outbox = await repo.outbox_by_state()
            stuck = await repo.outbox_stuck(now - self.stuck_after)
        self.metrics.tickets.clear()
        for status, count in tickets.items():
            self.metrics.tickets.labels(status=status).set(count)
        self.metrics.outbox.clear()
        for state, count in outbox.items():
            self.metrics.outbox.labels(state=state).set(count)
        return stuck


def health_of(app: App) -> Health:
    """The health checks of ``app``: its database, listeners, mailboxes and outbox."""
    config = app.config
    return Health(
        app.engine,
        app.metrics,
        app.clock,
        tuple(m.name for m in config.imap),
        listening=lambda: (
            app.listeners is not None or not (config.smtp.enabled or config.lmtp.enabled)
        ),
    )


class Served:
    """An aiohttp application served on the daemon's loop until closed; ``section`` names
    its config section in the error when its port cannot be bound."""

    section = "[http]"

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None

    def application(self) -> web.Application:
        raise NotImplementedError

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host``:``port`` (0: any free port); the port bound."""
        self.runner = web.AppRunner(self.application(), access_log=None, handle_signals=False)
        await self.runner.setup()
        try:
            await web.TCPSite(self.runner, host, port).start()
        except OSError as exc:
            await self.close()
            raise cannot_listen(self.section, exc) from exc
        bound = int(self.runner.addresses[0][1])
        log.info("http.listening", section=self.section, host=host, port=bound)
        return bound

    async def close(self) -> None:
        if self.runner is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.runner.cleanup(), 5.0)
            self.runner = None


class MonitorServer(Served):
    """Serves ``/healthz`` and ``/metrics`` on the daemon's loop (aiohttp.web) until closed."""

    def __init__(self, health: Health) -> None:
        super().__init__()
        self.health = health

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)  # and HEAD; other methods: 405
        app.router.add_get("/metrics", self._metrics)
        return app

    async def _healthz(self, request: web.Request) -> web.Response:
        healthy, checks = await self.health.check()
        return web.json_response(
            {"healthy": healthy, "checks": checks},
            status=200 if healthy else 503,
            dumps=lambda value: json.dumps(value, indent=1) + "\n",
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        await self.health.check()  # refresh the gauges read from the database
        body = generate_latest(self.health.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
