"""Answer monitoring over HTTP: ``/healthz`` (200 or 503, with reasons) and ``/metrics``.

A deliberately small HTTP/1.1 server on the daemon's event loop (two GET
routes, one request per connection); nothing else is served. Health means: the
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

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine

from mailgate.clock import Clock
from mailgate.ops.metrics import Metrics
from mailgate.store.db import session
from mailgate.store.repos import Repo

log = structlog.get_logger("mailgate.ops.http")

_STATUS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


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


class MonitorServer:
    """Serves ``/healthz`` and ``/metrics`` until closed."""

    def __init__(self, health: Health) -> None:
        self.health = health
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self.server = await asyncio.start_server(self._serve, host, port)
        bound = int(self.server.sockets[0].getsockname()[1])
        log.info("http.listening", host=host, port=bound)
        return bound

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 10.0)
            while (await asyncio.wait_for(reader.readline(), 10.0)) not in (b"\r\n", b"\n", b""):
                pass  # headers: nothing in them matters here
            method, _, rest = request.decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            status, content_type, body = await self._route(method, path)
            writer.write(
                f"HTTP/1.1 {status} {_STATUS[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _route(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"GET only\n"
        if path == "/healthz":
            healthy, checks = await self.health.check()
            body = json.dumps({"healthy": healthy, "checks": checks}, indent=1).encode() + b"\n"
            return (200 if healthy else 503), "application/json", body
        if path == "/metrics":
            await self.health.check()  # refresh the gauges read from the database
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.health.metrics.registry)
        return 404, "text/plain", b"/healthz or /metrics\n"
