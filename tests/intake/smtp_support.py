"""A running SMTP/LMTP listener for the tests, and clients to talk to it."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from mailgate.app import App
from mailgate.intake.listeners import Listeners
from mailgate.store.db import session


@dataclass
class Server:
    app: App
    listeners: Listeners

    @property
    def port(self) -> int:
        return int(self.listeners.addresses["smtp"][1])

    def address(self, name: str) -> Any:
        return self.listeners.addresses[name]

    async def count(self, table: str = "spool") -> int:
        async with session(self.app.engine) as s:
            result = await s.exec(text(f"SELECT count(*) FROM {table}"))  # type: ignore[call-overload]
            return int(result.one()[0])


def smtp_client(port: int) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", port, timeout=20)
    client.ehlo("client.example.org")
    return client


async def in_thread(function: Callable[[], Any]) -> Any:
    return await asyncio.to_thread(function)


async def send(port: int, recipients: list[str], raw: bytes) -> dict[str, tuple[int, bytes]]:
    def run() -> dict[str, tuple[int, bytes]]:
        with smtp_client(port) as client:
            return client.sendmail("alice@customer.nl", recipients, raw)

    return dict(await in_thread(run))


async def begin_data(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw client connection that has just been told 354 (go ahead with DATA)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()
    commands = (
        b"EHLO c.example.org",
        b"MAIL FROM:<s@customer.nl>",
        b"RCPT TO:<support@example.com>",
        b"DATA",
    )
    for line in commands:
        writer.write(line + b"\r\n")
        await writer.drain()
        while (await reader.readline())[3:4] == b"-":
            pass
    return reader, writer
