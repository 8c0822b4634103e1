"""Fixtures: listeners started on loopback with their own desk, and a TLS certificate."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from mailgate.app import build_app
from mailgate.clock import FrozenClock
from mailgate.config import Config
from mailgate.intake.listeners import start_listeners
from tests.intake.smtp_support import Server


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl missing")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture
def start(
    make_config: Callable[..., Config], clock: FrozenClock
) -> AsyncIterator[Callable[..., Any]]:
    running: list[Server] = []

    async def starter(**smtp: Any) -> Server:
        lmtp = smtp.pop("lmtp", {"enabled": False})
        defaults = {
            "port": 0,
            "hostname": "mx.example.com",
            "messages_per_ip_per_minute": 100000,
            "connections_per_ip_per_minute": 100000,
        }
        config = make_config(smtp={**defaults, **smtp}, lmtp=lmtp)
        app = await build_app(config, clock)
        listeners = await start_listeners(
            smtp=config.smtp, lmtp=config.lmtp, spool=app.spool, policy=app.policy, clock=app.clock
        )
        server = Server(app, listeners)
        running.append(server)
        return server

    async def generator() -> AsyncIterator[Callable[..., Any]]:
        yield starter
        for server in running:
            await server.listeners.close()
            await server.app.close()

    return generator()


@pytest.fixture
async def server(start: AsyncIterator[Callable[..., Any]]) -> AsyncIterator[Server]:
    starter = await anext(start)
    yield await starter()
    with pytest.raises(StopAsyncIteration):
        await anext(start)


@pytest.fixture
async def starter(start: AsyncIterator[Callable[..., Any]]) -> AsyncIterator[Callable[..., Any]]:
    function = await anext(start)
    yield function
    with pytest.raises(StopAsyncIteration):
        await anext(start)
