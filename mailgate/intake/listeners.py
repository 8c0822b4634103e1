"""Binding the SMTP, SMTPS and LMTP listeners on the daemon's loop, and closing them gracefully.

Limits (size, recipients, connections, per-IP rates, idle timeout, line length),
TLS and AUTH accounts come from ``[smtp]``; ``[lmtp]`` listens on a port or a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from mailgate.clock import Clock
from mailgate.config import LmtpConfig, SmtpConfig
from mailgate.core.address import AddressPolicy
from mailgate.core.limits import SlidingWindow
from mailgate.errors import cannot_listen
from mailgate.intake.handler import IntakeHandler
from mailgate.intake.smtp import REPLY_SHUTTING_DOWN, Gate, MailgateLMTP, MailgateSMTP, peer_ip
from mailgate.intake.spool import Spool

log = structlog.get_logger("mailgate.smtp")


def _show_address(address: Any) -> str:
    """``127.0.0.1:2525``, ``[::1]:2525`` or a socket path, for the log."""
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address)


def tls_context(config: SmtpConfig) -> ssl.SSLContext | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


class Authenticator:
    """Checks AUTH PLAIN/LOGIN credentials against the configured accounts."""

    def __init__(self, accounts: dict[str, str]) -> None:
        self.accounts = accounts

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        username = auth_data.login.decode("utf-8", "replace")
        expected = self.accounts.get(username)
        ok = expected is not None and hmac.compare_digest(
            expected.encode(), bytes(auth_data.password)
        )
        log.info("smtp.auth", peer=peer_ip(session), username=username, success=ok)
        return AuthResult(success=ok, handled=False, auth_data=username if ok else None)


@dataclass
class Listeners:
    """The running SMTP/LMTP servers; ``close`` shuts them down gracefully."""

    servers: list[asyncio.base_events.Server]
    gate: Gate
    grace: float
    addresses: dict[str, Any]
    socket_path: Path | None = None

    async def close(self) -> None:
        """Stop accepting, let transactions in flight finish (up to the grace), then hang up."""
        self.gate.closing = True
        for server in self.servers:
            server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.gate.idle.wait(), self.grace)
        for protocol in list(self.gate.active):
            if protocol.transport is not None and not protocol.in_transaction:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(protocol.push(REPLY_SHUTTING_DOWN), 1.0)
            if protocol.transport is not None:
                protocol.transport.close()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)
        if self.socket_path is not None:
            self.socket_path.unlink(missing_ok=True)
        log.info("smtp.stopped")


async def start_listeners(
    *, smtp: SmtpConfig, lmtp: LmtpConfig, spool: Spool, policy: AddressPolicy, clock: Clock
) -> Listeners:
    """Bind the configured SMTP, SMTPS and LMTP listeners on the running loop."""
    gate = Gate(
        max_connections=smtp.max_connections,
        max_per_ip=smtp.max_connections_per_ip,
        connections_per_ip=SlidingWindow(smtp.connections_per_ip_per_minute),
        messages_per_ip=SlidingWindow(smtp.messages_per_ip_per_minute),
    )
    protocols = _Protocols(smtp, spool, policy, clock, gate, smtp.hostname or socket.getfqdn())
    listeners = Listeners([], gate, smtp.shutdown_grace, {})
    where = "[smtp]"
    try:
        if smtp.enabled:
            await _bind_smtp(listeners, smtp, protocols)
        where = "[lmtp]"
        if lmtp.enabled:
            await _bind_lmtp(listeners, lmtp, protocols)
    except OSError as exc:
        for server in listeners.servers:
            server.close()
        raise cannot_listen(where, exc) from exc
    for name, address in listeners.addresses.items():
        log.info("smtp.listening", listener=name, address=_show_address(address))
    return listeners


@dataclass
class _Protocols:
    """Builds the protocol factory of each kind of listener; all share one gate."""

    smtp: SmtpConfig
    spool: Spool
    policy: AddressPolicy
    clock: Clock
    gate: Gate
    hostname: str

    def __post_init__(self) -> None:
        self.context = tls_context(self.smtp)
        accounts = {a.username: a.password for a in self.smtp.accounts}
        self.authenticator = Authenticator(accounts) if accounts else None

    def factory(
        self, protocol: type[MailgateSMTP], *, implicit_tls: bool = False, is_lmtp: bool = False
    ) -> Callable[[], MailgateSMTP]:
        smtp, loop = self.smtp, asyncio.get_running_loop()
        handler = IntakeHandler(
            spool=self.spool,
            policy=self.policy,
            config=smtp,
            gate=self.gate,
            clock=self.clock,
            hostname=self.hostname,
            lmtp=is_lmtp,
        )

        def build() -> MailgateSMTP:
            return protocol(
                handler,
                self.gate,
                max_line_length=smtp.max_line_length,
                data_timeout=smtp.data_timeout,
                data_size_limit=smtp.max_message_size,
                enable_SMTPUTF8=True,
                hostname=self.hostname,
                ident="mailgate",
                tls_context=None if implicit_tls or is_lmtp else self.context,
                require_starttls=smtp.require_tls and not implicit_tls and not is_lmtp,
                timeout=smtp.timeout,
                auth_required=smtp.auth_required and not is_lmtp,
                auth_require_tls=True,
                authenticator=self.authenticator,
                loop=loop,
            )

        return build


async def _bind_smtp(listeners: Listeners, smtp: SmtpConfig, protocols: _Protocols) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocols.factory(MailgateSMTP), smtp.host, smtp.port)
    listeners.servers.append(server)
    listeners.addresses["smtp"] = server.sockets[0].getsockname()
    if smtp.tls_port and protocols.context is not None:
        tls_server = await loop.create_server(
            protocols.factory(MailgateSMTP, implicit_tls=True),
            smtp.host,
            smtp.tls_port,
            ssl=protocols.context,
        )
        listeners.servers.append(tls_server)
        listeners.addresses["smtps"] = tls_server.sockets[0].getsockname()


async def _bind_lmtp(listeners: Listeners, lmtp: LmtpConfig, protocols: _Protocols) -> None:
    loop = asyncio.get_running_loop()
    factory = protocols.factory(MailgateLMTP, is_lmtp=True)
    if lmtp.socket is None:
        server = await loop.create_server(factory, lmtp.host, lmtp.port)
        listeners.addresses["lmtp"] = server.sockets[0].getsockname()
    else:
        lmtp.socket.unlink(missing_ok=True)
        lmtp.socket.parent.mkdir(parents=True, exist_ok=True)
        server = await loop.create_unix_server(factory, str(lmtp.socket))
        # The MTA runs as another user: the socket is open to it, and its directory
        # decides who may reach it (mailgate's own umask would make it 0600).
        lmtp.socket.chmod(0o666)
        listeners.socket_path = lmtp.socket
        listeners.addresses["lmtp"] = str(lmtp.socket)
    listeners.servers.append(server)
