"""The listeners: STARTTLS, implicit TLS and AUTH, LMTP on a port and a socket, a graceful close."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from mailgate.store.db import session
from tests.intake.smtp_support import Server, begin_data, in_thread, smtp_client
from tests.mails import make_mail
from tests.waiting import eventually


async def test_starttls_and_auth_over_tls_only(
    starter: Callable[..., Any], certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAY_PASSWORD", "s3cret-relay")
    cert, key = certificate
    server = await starter(
        tls_cert=str(cert),
        tls_key=str(key),
        auth_required=True,
        accounts=[{"username": "relay", "password_env": "RELAY_PASSWORD"}],
    )
    context = ssl.create_default_context(cafile=str(cert))

    def talk() -> dict[str, Any]:
        result: dict[str, Any] = {}
        with smtp_client(server.port) as client:
            result["starttls_offered"] = client.has_extn("starttls")
            result["auth_before_tls"] = client.docmd("AUTH", "PLAIN AHJlbGF5AHMzY3JldC1yZWxheQ==")[
                0
            ]
            result["mail_before_auth"] = client.mail("a@customer.nl")[0]
            client.starttls(context=context)
            client.ehlo("client.example.org")
            try:
                client.login("relay", "wrong")
            except smtplib.SMTPAuthenticationError as exc:
                result["wrong_password"] = exc.smtp_code
            client.login("relay", "s3cret-relay")
            result["send"] = client.sendmail("a@customer.nl", ["support@example.com"], make_mail())
        return result

    result = await in_thread(talk)
    assert result["starttls_offered"]
    assert result["auth_before_tls"] == 538
    assert result["mail_before_auth"] == 530
    assert result["wrong_password"] == 535
    assert result["send"] == {}
    async with session(server.app.engine) as s:
        raw = (await s.exec(text("SELECT raw FROM spool_raw"))).one()[0]  # type: ignore[call-overload]
    assert b"with ESMTPSA;" in raw  # as committed, before any processing


async def test_implicit_tls_and_required_starttls(
    starter: Callable[..., Any], certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    from tests.conftest import free_port

    server = await starter(
        tls_cert=str(cert), tls_key=str(key), tls_port=free_port(), require_tls=True
    )
    context = ssl.create_default_context(cafile=str(cert))

    def talk() -> tuple[int, dict[str, Any]]:
        with smtp_client(server.port) as plain:
            refused = plain.mail("a@customer.nl")[0]
        port = int(server.address("smtps")[1])
        with smtplib.SMTP_SSL("127.0.0.1", port, context=context, timeout=20) as secure:
            return refused, secure.sendmail("a@customer.nl", ["support@example.com"], make_mail())

    refused, sent = await in_thread(talk)
    assert refused == 530
    assert sent == {}
    assert await server.count() == 1


def _lmtp_session(
    connect: Callable[[], socket.socket], recipients: list[str], raw: bytes
) -> list[bytes]:
    with connect() as sock:
        stream = sock.makefile("rwb")

        def command(line: bytes) -> bytes:
            stream.write(line + b"\r\n")
            stream.flush()
            return reply()

        def reply() -> bytes:
            lines = [stream.readline()]
            while lines[-1][3:4] == b"-":
                lines.append(stream.readline())
            return b"".join(lines)

        assert reply().startswith(b"220")
        assert command(b"LHLO client.example.org").startswith(b"250")
        assert command(b"MAIL FROM:<a@customer.nl>").startswith(b"250")
        for recipient in recipients:
            command(f"RCPT TO:<{recipient}>".encode())
        assert command(b"DATA").startswith(b"354")
        stream.write(raw + b"\r\n.\r\n")
        stream.flush()
        return [reply() for _ in recipients]


async def test_lmtp_over_tcp_answers_once_per_recipient(starter: Callable[..., Any]) -> None:
    server = await starter(enabled=False, lmtp={"enabled": True, "port": 0})
    host, port = server.address("lmtp")[:2]
    replies = await in_thread(
        lambda: _lmtp_session(
            lambda: socket.create_connection((host, port), timeout=20),
            ["support@example.com", "support+9-x@example.com"],
            make_mail(),
        )
    )
    assert [r[:9] for r in replies] == [b"250 2.0.0", b"250 2.0.0"]
    assert await server.count() == 1


async def test_lmtp_over_unix_socket(starter: Callable[..., Any], tmp_path: Path) -> None:
    path = tmp_path / "run" / "lmtp.sock"
    server = await starter(enabled=False, lmtp={"enabled": True, "socket": str(path)})

    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(20)
        sock.connect(str(path))
        return sock

    replies = await in_thread(lambda: _lmtp_session(connect, ["support@example.com"], make_mail()))
    assert replies[0].startswith(b"250 2.0.0")
    assert await server.count() == 1
    assert path.stat().st_mode & 0o777 == 0o666  # the MTA's user may connect; the dir decides


async def test_graceful_close_finishes_the_transaction_in_flight(server: Server) -> None:
    reader, writer = await begin_data(server.port)
    writer.write(b"Subject: in flight\r\n\r\nhalf")
    await writer.drain()
    closing = asyncio.create_task(server.listeners.close())

    async def refused() -> bool:
        try:
            _, probe = await asyncio.open_connection("127.0.0.1", server.port)
        except OSError:
            return True  # no longer accepting
        probe.close()
        return False

    await eventually(refused, timeout=10)
    writer.write(b" done\r\n.\r\n")
    await writer.drain()
    assert (await reader.readline()).startswith(b"250")
    await asyncio.wait_for(closing, 10)
    assert await server.count() == 1
    writer.close()


@pytest.mark.parametrize(
    ("host", "error", "temporary"),
    [("127.0.0.1", "address already in use", True), ("192.0.2.1", "cannot listen", False)],
    ids=["port-taken", "address-not-ours"],
)
async def test_a_taken_port_is_temporary_and_a_wrong_address_is_configuration(
    make_config: Callable[..., Any], clock: Any, host: str, error: str, temporary: bool
) -> None:
    """A port held by another process may come free (exit 75: the supervisor retries); an
    address this machine does not have will not (exit 78)."""
    from mailgate.app import build_app
    from mailgate.errors import AddressInUse, ConfigError, MailgateError
    from mailgate.intake.listeners import start_listeners

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    config = make_config(smtp={"host": host, "port": holder.getsockname()[1]})
    app = await build_app(config, clock)
    try:
        with pytest.raises(MailgateError) as raised:
            await start_listeners(
                smtp=config.smtp, lmtp=config.lmtp, spool=app.spool, policy=app.policy, clock=clock
            )
        assert raised.value.temporary is temporary
        assert isinstance(raised.value, AddressInUse if temporary else ConfigError)
        assert error in str(raised.value) and "[smtp]" in str(raised.value)
    finally:
        holder.close()
        await app.close()
