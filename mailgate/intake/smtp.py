"""The SMTP and LMTP listeners: accept mail for our addresses and hand it to the spool.

Both run aiosmtpd's protocol on mailgate's own event loop. ``250`` is sent only
after ``Spool.store`` returned, that is after the raw mail is fsync'd and its
row committed; any failure of ours answers ``451 4.3.0`` so the sender retries.
Recipients that are not ours are refused at RCPT (``550 5.1.1``), before any
body is sent, so the listener is never an open relay. Limits (size, recipients,
connections, per-IP rates, idle timeout, line length) come from ``[smtp]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import structlog
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, syntax

from mailgate.clock import Clock
from mailgate.config import LmtpConfig, SmtpConfig
from mailgate.core.address import AddressPolicy
from mailgate.core.limits import SlidingWindow
from mailgate.errors import BadMail, ConfigError, MailgateError
from mailgate.intake.spool import Received, Spool

log = structlog.get_logger("mailgate.smtp")

# aiosmtpd's own replies, rewritten with enhanced status codes (RFC 3463).
REPLIES: dict[str, str] = {
    "552 Error: Too much mail data": "552 5.3.4 Message too big for this system",
    "552 Error: message size exceeds fixed maximum message size": (
        "552 5.3.4 Message size exceeds fixed maximum message size"
    ),
    "500 Line too long (see RFC5321 4.5.3.1.6)": "500 5.5.2 Line too long (RFC 5321 4.5.3.1.6)",
    "500 Command line too long": "500 5.5.2 Command line too long",
    "530 SMTP authentication is required": "530 5.7.0 Authentication required",
}
REPLY_STORED = "250 2.0.0 Ok: stored as {spool_id}"
REPLY_TEMPORARY = "451 4.3.0 Temporary local problem, please try again later"
REPLY_EMPTY = "554 5.6.0 Empty message"
REPLY_NO_MAILBOX = "550 5.1.1 <{address}>: Recipient address rejected: no such mailbox here"
REPLY_TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
REPLY_TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections, try again later"
REPLY_CONNECTION_RATE = "421 4.7.0 Too many connections from your address, try again later"
REPLY_CONNECTIONS_PER_IP = (
    "421 4.7.0 Too many concurrent connections from your address, try again later"
)
REPLY_DATA_TIMEOUT = "421 4.4.2 DATA took too long, closing connection"
REPLY_MESSAGE_RATE = "450 4.7.1 Too many messages from your address, try again later"
REPLY_SHUTTING_DOWN = "421 4.3.2 Service shutting down, try again later"
REPLY_NEED_TLS = "530 5.7.0 Must issue a STARTTLS command first"


def _show_address(address: Any) -> str:
    """``127.0.0.1:2525``, ``[::1]:2525`` or a socket path, for the log."""
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address)


def _peer_ip(session: Session) -> str:
    peer: Any = session.peer
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return "local"


@dataclass
class Gate:
    """Admission control shared by all connections of the listeners."""

    max_connections: int
    max_per_ip: int
    connections_per_ip: SlidingWindow
    messages_per_ip: SlidingWindow
    monotonic: Callable[[], float] = time.monotonic
    active: set[MailgateSMTP] = field(default_factory=set)
    per_ip: dict[str, int] = field(default_factory=dict)  # open connections by client address
    closing: bool = False
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.idle.set()

    def begin(self) -> None:
        """A DATA transaction started; shutdown waits for it."""
        self.in_flight += 1
        self.idle.clear()

    def end(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self.idle.set()

    def admit(self, protocol: MailgateSMTP, ip: str) -> str | None:
        """None when the connection may proceed, else the reply to refuse it with."""
        if self.closing:
            return REPLY_SHUTTING_DOWN
        if len(self.active) >= self.max_connections:
            return REPLY_TOO_MANY_CONNECTIONS
        if ip != "local" and self.per_ip.get(ip, 0) >= self.max_per_ip:
            return REPLY_CONNECTIONS_PER_IP
        if ip != "local" and not self.connections_per_ip.allow(ip, self.monotonic()):
            return REPLY_CONNECTION_RATE
        self.active.add(protocol)
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
        return None

    def leave(self, protocol: MailgateSMTP, ip: str) -> None:
        """A connection that ``admit`` let in has closed."""
        if protocol not in self.active:
            return
        self.active.discard(protocol)
        left = self.per_ip.get(ip, 1) - 1
        if left > 0:
            self.per_ip[ip] = left
        else:
            self.per_ip.pop(ip, None)

    def message_allowed(self, ip: str) -> bool:
        return ip == "local" or self.messages_per_ip.allow(ip, self.monotonic())


class MailgateSMTP(SMTP):
    """aiosmtpd's SMTP with admission control and enhanced status codes."""

    protocol_name = "ESMTP"

    def __init__(
        self,
        handler: IntakeHandler,
        gate: Gate,
        *,
        max_line_length: int,
        data_timeout: float,
        **kwargs: Any,
    ) -> None:
        # aiosmtpd reads the line limit (with CRLF) when it builds its stream reader.
        self.line_length_limit = max_line_length + 2
        self.gate = gate
        self.data_timeout = data_timeout
        self.in_transaction = False
        self.receiving = False  # the body of a DATA is arriving
        self.data_buffer: tuple[bytearray, int] | None = None  # (trace + body, trace length)
        self._deadline: asyncio.TimerHandle | None = None
        self._refusal: str | None = None
        super().__init__(handler, **kwargs)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if first:
            assert self.session is not None
            self._refusal = self.gate.admit(self, _peer_ip(self.session))

    def connection_lost(self, error: Exception | None) -> None:
        if self.session is not None:
            self.gate.leave(self, _peer_ip(self.session))
        self._cancel_deadline()
        super().connection_lost(error)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _data_expired(self) -> None:
        """The DATA deadline passed while the body was still arriving: a client trickling
        bytes to hold a slot. Tell it (421, temporary: a real sender retries) and hang up."""
        self._deadline = None
        if not self.receiving or self.transport is None:
            return
        assert self.session is not None
        log.warning(
            "smtp.rejected",
            peer=_peer_ip(self.session),
            code=REPLY_DATA_TIMEOUT[:3],
            reason=REPLY_DATA_TIMEOUT[10:],
        )
        if isinstance(self.transport, asyncio.WriteTransport):
            self.transport.write(REPLY_DATA_TIMEOUT.encode() + b"\r\n")
        self.transport.close()

    async def _handle_client(self) -> None:
        if self._refusal is not None:
            assert self.session is not None
            log.warning(
                "smtp.rejected",
                peer=_peer_ip(self.session),
                code=self._refusal[:3],
                reason=self._refusal[10:],
            )
            await self.push(self._refusal)
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()

    async def push(self, status: str | bytes) -> None:
        if isinstance(status, str):
            if status in REPLIES and status.startswith("5") and self.session is not None:
                # aiosmtpd's own refusals (too big, line too long): logged like ours are.
                log.warning(
                    "smtp.rejected",
                    peer=_peer_ip(self.session),
                    code=status[:3],
                    reason=REPLIES[status][10:],
                )
            await super().push(REPLIES.get(status, status))
        else:
            await super().push(status)

    async def smtp_MAIL(self, arg: str) -> None:
        if self.require_starttls and not self._tls_protocol:
            await self.push(REPLY_NEED_TLS)
            return
        await super().smtp_MAIL(arg)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, receiving the body straight into one buffer behind our trace
        header: a 24 MB mail costs about 24 MB while it arrives and while it is stored,
        not a list of lines, their join and copies (see ``receive_body``)."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None and self.session is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        self.in_transaction = True
        self.receiving = True
        self._deadline = asyncio.get_running_loop().call_later(
            self.data_timeout, self._data_expired
        )
        self.gate.begin()
        try:
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            handler = self.event_handler
            trace = handler.trace(self.session, self.received_with())
            body, refusal = await receive_body(
                self._reader, bytearray(trace), self.data_size_limit, self.line_length_limit
            )
            self.receiving = False
            if refusal is not None:
                self._set_post_data_state()  # type: ignore[no-untyped-call]
                await self.push(refusal)
                return
            self.data_buffer = (body, len(trace))  # the handler stores it from here
            status = await self._call_handler_hook("DATA")
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push(status)
        finally:
            self.data_buffer = None
            self.in_transaction = False
            self.receiving = False
            self._cancel_deadline()
            self.gate.end()

    def received_with(self) -> str:
        """The ``with`` word of our Received: header (RFC 3848)."""
        assert self.session is not None
        name = self.protocol_name
        if self._tls_protocol is not None or (
            self.transport is not None and self.transport.get_extra_info("sslcontext")
        ):
            name += "S"
        if self.session.authenticated:
            name += "A"
        return name


async def receive_body(
    reader: asyncio.StreamReader, buffer: bytearray, size_limit: int | None, line_limit: int
) -> tuple[bytearray, str | None]:
    """Read a DATA body up to the lone dot into ``buffer`` (which may already hold our trace
    header), undoing dot-stuffing (RFC 5321 4.5.2); the buffer and None, or the refusal when
    the mail was too big or had a line too long. As in aiosmtpd, a refused mail is still
    read to its end, and its bytes are dropped as soon as it is refused."""
    start = len(buffer)
    refusal: str | None = None
    size = 0
    mid_line = False  # the last read ended inside an overlong line
    while True:
        try:
            line = await reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError as exc:
            refusal = refusal or "500 Line too long (see RFC5321 4.5.3.1.6)"
            del buffer[start:]
            await reader.read(exc.consumed)
            mid_line = True
            continue
        except asyncio.IncompleteReadError as exc:
            raise ConnectionResetError("connection closed during DATA") from exc
        if not mid_line and line == b".\r\n":
            return buffer, refusal
        size += len(line)
        if refusal is None and size_limit and size > size_limit:
            refusal = "552 Error: Too much mail data"
            del buffer[start:]
        if refusal is None and not mid_line and len(line) > line_limit:
            refusal = "500 Line too long (see RFC5321 4.5.3.1.6)"
            del buffer[start:]
        if refusal is None:
            buffer += memoryview(line)[1:] if line.startswith(b".") and not mid_line else line
        mid_line = False


class MailgateLMTP(MailgateSMTP, LMTP):
    """LMTP (RFC 2033): LHLO instead of EHLO, and one reply per recipient after DATA."""

    protocol_name = "LMTP"


class IntakeHandler:
    """The aiosmtpd handler: recipient policy at RCPT, the spool at DATA."""

    def __init__(
        self,
        *,
        spool: Spool,
        policy: AddressPolicy,
        config: SmtpConfig,
        gate: Gate,
        clock: Clock,
        hostname: str,
        lmtp: bool = False,
    ) -> None:
        self.spool = spool
        self.policy = policy
        self.config = config
        self.gate = gate
        self.clock = clock
        self.hostname = hostname
        self.lmtp = lmtp
        self.source = "lmtp" if lmtp else "smtp"

    def _reject(self, session: Session, reply: str, **context: Any) -> str:
        log.warning(
            "smtp.rejected",
            peer=_peer_ip(session),
            code=reply[:3],
            reason=reply[10:],
            listener=self.source,
            **context,
        )
        return reply

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """Advertise PIPELINING and ENHANCEDSTATUSCODES, which the protocol supports."""
        session.host_name = hostname
        extra = ["250-PIPELINING", "250-ENHANCEDSTATUSCODES"]
        return [responses[0], *extra, *responses[1:]]

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self.gate.closing:
            return self._reject(session, REPLY_SHUTTING_DOWN)
        if not self.gate.message_allowed(_peer_ip(session)):
            return self._reject(session, REPLY_MESSAGE_RATE)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= self.config.max_recipients:
            return self._reject(session, REPLY_TOO_MANY_RECIPIENTS)
        if not self.policy.is_ours(address):
            return self._reject(
                session, REPLY_NO_MAILBOX.format(address=address), recipient=address
            )
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if isinstance(server, MailgateSMTP):  # the body is in: the DATA deadline is met
            server.receiving = False
        reply = await self._store(server, session, envelope)
        if self.lmtp:  # RFC 2033: one reply per accepted recipient
            return "\r\n".join(reply for _ in envelope.rcpt_tos)
        return reply

    async def _store(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        peer = _peer_ip(session)
        source = f"{self.source}:{peer}"
        framed = server.data_buffer if isinstance(server, MailgateSMTP) else None
        if framed is not None:
            received = Received.in_buffer(
                framed[0], framed[1], source, envelope.mail_from or "", tuple(envelope.rcpt_tos)
            )
        else:
            received = Received(
                raw=envelope.original_content or b"",
                source=source,
                envelope_from=envelope.mail_from or "",
                envelope_to=tuple(envelope.rcpt_tos),
                trace=self.trace(session, "ESMTP"),
            )
        raw = received.raw
        try:
            stored = await self.spool.store(received)
        except BadMail as exc:
            return self._reject(session, REPLY_EMPTY, error=str(exc))
        except MailgateError as exc:
            log.error("smtp.deferred", peer=peer, error=str(exc), listener=self.source)
            return self._reject(session, REPLY_TEMPORARY, error=str(exc))
        log.info(
            "smtp.accepted",
            peer=peer,
            spool_id=stored.spool_id,
            size=len(raw),
            recipients=len(envelope.rcpt_tos),
            duplicate=stored.duplicate,
            listener=self.source,
        )
        return REPLY_STORED.format(spool_id=stored.spool_id)

    def trace(self, session: Session, protocol: str) -> bytes:
        """Our Received: header for a mail taken in over this session."""
        helo = (session.host_name or "unknown").replace("\r", "").replace("\n", "")[:100]
        stamp = format_datetime(self.clock.now())
        peer = _peer_ip(session)
        return (
            f"Received: from {helo} ([{peer}])\r\n\tby {self.hostname} (mailgate) "
            f"with {protocol};\r\n\t{stamp}\r\n"
        ).encode("ascii", "replace")

    async def handle_exception(self, error: Exception) -> str:
        log.error("smtp.error", error=f"{type(error).__name__}: {error}", exc_info=error)
        return REPLY_TEMPORARY


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
        import hmac

        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        username = auth_data.login.decode("utf-8", "replace")
        expected = self.accounts.get(username)
        ok = expected is not None and hmac.compare_digest(
            expected.encode(), bytes(auth_data.password)
        )
        log.info("smtp.auth", peer=_peer_ip(session), username=username, success=ok)
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
    loop = asyncio.get_running_loop()
    hostname = smtp.hostname or socket.getfqdn()
    gate = Gate(
        max_connections=smtp.max_connections,
        max_per_ip=smtp.max_connections_per_ip,
        connections_per_ip=SlidingWindow(smtp.connections_per_ip_per_minute),
        messages_per_ip=SlidingWindow(smtp.messages_per_ip_per_minute),
    )
    context = tls_context(smtp)
    accounts = {a.username: a.password for a in smtp.accounts}

    def factory(
        protocol: type[MailgateSMTP], *, implicit_tls: bool = False, is_lmtp: bool = False
    ) -> Callable[[], MailgateSMTP]:
        handler = IntakeHandler(
            spool=spool,
            policy=policy,
            config=smtp,
            gate=gate,
            clock=clock,
            hostname=hostname,
            lmtp=is_lmtp,
        )

        def build() -> MailgateSMTP:
            return protocol(
                handler,
                gate,
                max_line_length=smtp.max_line_length,
                data_timeout=smtp.data_timeout,
                data_size_limit=smtp.max_message_size,
                enable_SMTPUTF8=True,
                hostname=hostname,
                ident="mailgate",
                tls_context=None if implicit_tls or is_lmtp else context,
                require_starttls=smtp.require_tls and not implicit_tls and not is_lmtp,
                timeout=smtp.timeout,
                auth_required=smtp.auth_required and not is_lmtp,
                auth_require_tls=True,
                authenticator=Authenticator(accounts) if accounts else None,
                loop=loop,
            )

        return build

    servers: list[asyncio.base_events.Server] = []
    addresses: dict[str, Any] = {}
    socket_path: Path | None = None
    try:
        if smtp.enabled:
            server = await loop.create_server(factory(MailgateSMTP), smtp.host, smtp.port)
            servers.append(server)
            addresses["smtp"] = server.sockets[0].getsockname()
            if smtp.tls_port and context is not None:
                tls_server = await loop.create_server(
                    factory(MailgateSMTP, implicit_tls=True),
                    smtp.host,
                    smtp.tls_port,
                    ssl=context,
                )
                servers.append(tls_server)
                addresses["smtps"] = tls_server.sockets[0].getsockname()
        if lmtp.enabled:
            if lmtp.socket is not None:
                lmtp.socket.unlink(missing_ok=True)
                lmtp.socket.parent.mkdir(parents=True, exist_ok=True)
                lmtp_server = await loop.create_unix_server(
                    factory(MailgateLMTP, is_lmtp=True), str(lmtp.socket)
                )
                # The MTA runs as another user: the socket is open to it, and its directory
                # decides who may reach it (mailgate's own umask would make it 0600).
                lmtp.socket.chmod(0o666)
                socket_path = lmtp.socket
                addresses["lmtp"] = str(lmtp.socket)
            else:
                lmtp_server = await loop.create_server(
                    factory(MailgateLMTP, is_lmtp=True), lmtp.host, lmtp.port
                )
                addresses["lmtp"] = lmtp_server.sockets[0].getsockname()
            servers.append(lmtp_server)
    except OSError as exc:
        for server in servers:
            server.close()
        raise ConfigError([f"[smtp]/[lmtp]: cannot listen: {exc.strerror or exc}"]) from exc
    for name, address in addresses.items():
        log.info("smtp.listening", listener=name, address=_show_address(address))
    return Listeners(servers, gate, smtp.shutdown_grace, addresses, socket_path)
