"""The relay transport with OAuth2: AUTH XOAUTH2 against a local SMTP server that checks
the token, a refused token retried once fresh, a token that cannot be had deferring."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from mailgate.config import OAuth2Config, RelayConfig
from mailgate.errors import DeliveryDeferred
from mailgate.outbound.transport import SmtpRelay
from tests.conftest import free_port


class TokenChecking:
    """Accepts AUTH XOAUTH2 for one user with one of ``valid`` tokens; keeps what it got."""

    def __init__(self) -> None:
        self.valid: set[str] = set()
        self.offered: list[str] = []
        self.received: list[bytes] = []

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        fields = base64.b64decode(args[1]).decode().split("\x01")
        user = fields[0].removeprefix("user=")
        token = next(f for f in fields if f.startswith("auth=")).removeprefix("auth=Bearer ")
        self.offered.append(token)
        ok = user == "support@example.com" and token in self.valid
        return AuthResult(success=ok, handled=False)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert session.authenticated
        self.received.append(envelope.original_content or b"")
        return "250 2.0.0 Ok"


@pytest.fixture
async def relay_server() -> AsyncIterator[tuple[TokenChecking, int]]:
    handler = TokenChecking()
    port = free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, auth_require_tls=False,
        auth_exclude_mechanism=["LOGIN", "PLAIN"],
    )  # fmt: skip
    controller.start()
    yield handler, port
    controller.stop()


def relay(port: int, command: str) -> RelayConfig:
    return RelayConfig(
        host="127.0.0.1", port=port, security="none", username="support@example.com",
        password="", timeout=10.0, oauth2=OAuth2Config("command", command=command, timeout=5.0),
    )  # fmt: skip


async def test_the_relay_logs_in_with_xoauth2_and_a_fresh_token_once_refused(
    relay_server: tuple[TokenChecking, Any], tmp_path: Path
) -> None:
    handler, port = relay_server
    current = tmp_path / "token"
    current.write_text("first-token")
    transport = SmtpRelay(relay(port, f"cat {current}"))
    handler.valid = {"first-token"}
    raw = b"Subject: hallo\r\n\r\nHallo\r\n"
    assert "Ok" in await transport.send("bounces@example.com", ["alice@customer.nl"], raw)
    await transport.close()
    handler.valid, handler.offered = {"second-token"}, []
    current.write_text("second-token")  # the first was revoked; the command has a new one
    assert "Ok" in await transport.send("bounces@example.com", ["alice@customer.nl"], raw)
    await transport.close()
    assert handler.offered == ["first-token", "second-token"]
    assert len(handler.received) == 2


async def test_a_token_that_cannot_be_had_defers_the_mail(
    relay_server: tuple[TokenChecking, Any],
) -> None:
    handler, port = relay_server
    transport = SmtpRelay(relay(port, "echo 'no refresh token' >&2; exit 1"))
    with pytest.raises(DeliveryDeferred) as deferred:
        await transport.send("bounces@example.com", ["alice@customer.nl"], b"Subject: x\r\n\r\nx")
    assert "token_command exited with status 1: no refresh token" in str(deferred.value)
    handler.valid = set()
    refused = SmtpRelay(relay(port, "printf revoked"))
    with pytest.raises(DeliveryDeferred):
        await refused.send("bounces@example.com", ["alice@customer.nl"], b"Subject: x\r\n\r\nx")
    assert handler.offered[-2:] == ["revoked", "revoked"] and handler.received == []
