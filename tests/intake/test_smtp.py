"""The SMTP and LMTP listeners, driven by real clients over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import smtplib
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
import structlog
from sqlalchemy import text

from mailgate.app import App, build_app
from mailgate.clock import FrozenClock
from mailgate.config import Config
from mailgate.intake.listeners import Listeners, start_listeners
from mailgate.store.db import session
from mailgate.store.repos import Repo
from tests.conftest import REQUIRE_SERVERS
from tests.mails import make_mail
from tests.waiting import eventually


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


async def test_rcpt_policy_refuses_foreign_and_unknown_accepts_ours(server: Server) -> None:
    def talk() -> list[tuple[int, bytes]]:
        with smtp_client(server.port) as client:
            client.mail("alice@customer.nl")
            return [
                client.rcpt("someone@foreign.org"),
                client.rcpt("nobody@example.com"),
                client.rcpt("support+1-abc@example.com"),
                client.rcpt("SUPPORT@Example.COM"),
                client.rcpt("bounces+12-abcdefgh@example.com"),  # our VERP address
            ]

    with structlog.testing.capture_logs() as logs:
        replies = await in_thread(talk)
    assert [code for code, _ in replies] == [550, 550, 250, 250, 250]
    assert replies[0][1].startswith(b"5.1.1")
    assert await server.count() == 0
    rejected = [e for e in logs if e["event"] == "smtp.rejected"]
    assert [(e["code"], e["recipient"], e["peer"]) for e in rejected] == [
        ("550", "someone@foreign.org", "127.0.0.1"),
        ("550", "nobody@example.com", "127.0.0.1"),
    ]


async def test_greetings_and_extensions(server: Server) -> None:
    def talk() -> tuple[dict[str, str], int]:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=20) as client:
            client.ehlo("client.example.org")
            features = dict(client.esmtp_features)
            helo = smtplib.SMTP("127.0.0.1", server.port, timeout=20)
            code = helo.helo("old.example.org")[0]
            helo.quit()
            return features, code

    features, helo_code = await in_thread(talk)
    assert {"pipelining", "enhancedstatuscodes", "8bitmime", "smtputf8", "size"} <= set(features)
    assert helo_code == 250


async def test_accepted_mail_is_logged_with_peer(server: Server) -> None:
    with structlog.testing.capture_logs() as logs:
        assert await send(server.port, ["support@example.com"], make_mail()) == {}
    accepted = [e for e in logs if e["event"] == "smtp.accepted"]
    assert len(accepted) == 1 and accepted[0]["peer"] == "127.0.0.1"
    assert accepted[0]["spool_id"] == 1


async def test_250_only_after_the_mail_is_stored(server: Server) -> None:
    raw = make_mail(subject="Via SMTP")

    assert await send(server.port, ["support@example.com"], raw) == {}
    assert await server.count() == 1
    outcomes = await server.app.processor.run_due()
    assert [o.action.value for o in outcomes] == ["created"]
    stored = server.app.processor.raw.path
    async with session(server.app.engine) as s:
        sha = (await s.exec(text("SELECT raw_sha256 FROM spool"))).one()[0]  # type: ignore[call-overload]
    content = stored(sha).read_bytes()
    assert content.startswith(b"Received: from client.example.org ([127.0.0.1])")
    assert b"by mx.example.com (mailgate) with ESMTP;" in content
    assert content.endswith(raw)


async def test_one_transaction_to_two_of_our_addresses_is_one_intake(server: Server) -> None:
    assert await send(server.port, ["support@example.com"], make_mail()) == {}
    (created,) = await server.app.processor.run_due()
    plus = server.app.policy.plus_address(
        "support@example.com", server.app.codec.token(created.ticket or 0)
    )
    assert await send(server.port, ["support@example.com", plus], make_mail(subject="ook")) == {}
    assert await server.count() == 2
    (reply,) = await server.app.processor.run_due()
    assert (reply.action.value, reply.ticket) == ("appended", created.ticket)
    assert await server.count("tickets") == 1


async def test_storage_failure_answers_451_not_250_or_5xx(server: Server) -> None:
    # The table the raw bytes go into is gone (a broken database): every insert fails.
    async with session(server.app.engine, write=True) as s:
        await s.exec(text("ALTER TABLE spool_raw RENAME TO spool_raw_away"))  # type: ignore[call-overload]

    def send() -> None:
        with smtp_client(server.port) as client:
            client.sendmail("alice@customer.nl", ["support@example.com"], make_mail())

    with pytest.raises(smtplib.SMTPDataError) as raised:
        await in_thread(send)
    assert raised.value.smtp_code == 451
    assert raised.value.smtp_error.startswith(b"4.3.0")
    assert await server.count() == 0
    async with session(server.app.engine, write=True) as s:
        await s.exec(text("ALTER TABLE spool_raw_away RENAME TO spool_raw"))  # type: ignore[call-overload]


async def test_oversize_is_552_and_size_is_announced(starter: Callable[..., Any]) -> None:
    server = await starter(max_message_size=4096)

    def talk() -> tuple[bool, tuple[int, bytes], tuple[int, bytes]]:
        with smtp_client(server.port) as client:
            announced = client.has_extn("size") and client.esmtp_features["size"] == "4096"
            declared = client.mail("a@customer.nl", ["SIZE=100000"])
            client.rset()
            # A client that does not declare the size is stopped at the end of DATA.
            client.mail("a@customer.nl")
            client.rcpt("support@example.com")
            sent = client.data(make_mail(body="x" * 8000))
            return announced, declared, sent

    announced, declared, sent = await in_thread(talk)
    assert announced
    assert declared[0] == 552 and declared[1].startswith(b"5.3.4")
    assert sent[0] == 552 and sent[1].startswith(b"5.3.4")
    assert await server.count() == 0


async def test_too_many_recipients_is_452(starter: Callable[..., Any]) -> None:
    server = await starter(max_recipients=2)

    def talk() -> list[int]:
        with smtp_client(server.port) as client:
            client.mail("a@customer.nl")
            return [client.rcpt(f"support+{i}-x@example.com")[0] for i in range(3)]

    assert await in_thread(talk) == [250, 250, 452]


async def test_concurrent_connection_limit_is_421(starter: Callable[..., Any]) -> None:
    server = await starter(max_connections=2)
    first, second = await in_thread(lambda: (smtp_client(server.port), smtp_client(server.port)))
    try:
        with pytest.raises(smtplib.SMTPConnectError) as raised:
            await in_thread(lambda: smtplib.SMTP("127.0.0.1", server.port, timeout=10))
        assert raised.value.smtp_code == 421
    finally:
        first.close()
        second.close()


async def test_one_address_holding_100_idle_connections_locks_nobody_else_out(
    starter: Callable[..., Any],
) -> None:
    server = await starter()  # the shipped limits: 100 in all, 20 from one address
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    greetings: list[bytes] = []
    try:
        for _ in range(100):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            held.append((reader, writer))
            greetings.append((await reader.readline())[:3])
        for _, writer in held:  # the idle ones keep themselves alive
            if not writer.is_closing():
                writer.write(b"NOOP\r\n")
        assert greetings.count(b"220") == 20 and greetings.count(b"421") == 80

        def another_client() -> dict[str, Any]:
            with smtplib.SMTP(
                "127.0.0.1", server.port, timeout=20, source_address=("127.0.0.2", 0)
            ) as client:
                client.ehlo("other.example.org")
                return dict(client.sendmail("bob@other.nl", ["support@example.com"], make_mail()))

        assert await in_thread(another_client) == {}  # 250: accepted
    finally:
        for _, writer in held:
            writer.close()


async def test_a_trickling_data_is_cut_off_at_the_deadline(starter: Callable[..., Any]) -> None:
    server = await starter(data_timeout=1.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        await reader.readline()
        for line in (
            b"EHLO slow.example.org",
            b"MAIL FROM:<a@b.nl>",
            b"RCPT TO:<support@example.com>",
        ):
            writer.write(line + b"\r\n")
        writer.write(b"DATA\r\n")
        replies = b""
        while b"354" not in replies:
            replies += await reader.readline()
        started = asyncio.get_running_loop().time()
        answer = b""
        while not answer and asyncio.get_running_loop().time() - started < 15:
            writer.write(b"x")  # a byte at a time, never idle long enough for the timeout
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                answer = await asyncio.wait_for(reader.readline(), 0.2)
        assert answer.startswith(b"421 4.4.2"), answer
        assert await asyncio.wait_for(reader.read(), 5) == b""  # and it hung up
    finally:
        writer.close()
    assert server.app.spool is not None
    async with session(server.app.engine) as s:
        assert await Repo(s).spool_due(server.app.clock.now(), 10) == []


async def test_per_ip_connection_and_message_rates(starter: Callable[..., Any]) -> None:
    server = await starter(connections_per_ip_per_minute=3, messages_per_ip_per_minute=2)

    def talk() -> tuple[list[int], int]:
        with smtp_client(server.port) as client:
            codes = []
            for _ in range(3):
                codes.append(client.mail("a@customer.nl")[0])
                client.rset()
        smtp_client(server.port).close()
        smtp_client(server.port).close()
        try:  # the fourth connection within the minute
            smtplib.SMTP("127.0.0.1", server.port, timeout=10).close()
        except smtplib.SMTPConnectError as exc:
            return codes, exc.smtp_code
        return codes, 0

    codes, refused = await in_thread(talk)
    assert codes == [250, 250, 450]
    assert refused == 421


async def test_idle_client_is_dropped(starter: Callable[..., Any]) -> None:
    server = await starter(timeout=1.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    greeting = await reader.readline()
    assert greeting.startswith(b"220")
    closed = await asyncio.wait_for(reader.read(), timeout=10)
    assert closed == b""
    writer.close()


async def test_overlong_line_is_refused(starter: Callable[..., Any]) -> None:
    server = await starter(max_line_length=200)

    def send() -> None:
        with smtp_client(server.port) as client:
            client.sendmail(
                "a@customer.nl",
                ["support@example.com"],
                make_mail(body="word " * 10).replace(b"word word", b"w" * 500, 1),
            )

    with structlog.testing.capture_logs() as logs, pytest.raises(smtplib.SMTPDataError) as raised:
        await in_thread(send)
    assert raised.value.smtp_code == 500 and raised.value.smtp_error.startswith(b"5.5.2")
    assert await server.count() == 0
    refused = [e for e in logs if e["event"] == "smtp.rejected"]
    assert [(e["code"], e["peer"]) for e in refused] == [("500", "127.0.0.1")]


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


async def test_600_mails_from_8_concurrent_clients_are_600_intakes(server: Server) -> None:
    async def client(worker: int) -> int:
        sent = 0
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, timeout=60)
        await smtp.connect()
        for i in range(75):
            raw = make_mail(
                subject=f"load {worker}-{i}", message_id=f"<load-{worker}-{i}@customer.nl>"
            )
            errors, _ = await smtp.sendmail("a@customer.nl", ["support@example.com"], raw)
            sent += 0 if errors else 1
        await smtp.quit()
        return sent

    results = await asyncio.gather(*(client(w) for w in range(8)))
    assert sum(results) == 600
    assert await server.count() == 600


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


async def test_slow_client_does_not_stall_others(server: Server) -> None:
    reader, writer = await begin_data(server.port)
    writer.write(b"Subject: slow\r\n\r\n")

    async def dribble() -> bytes:
        for _ in range(10):
            writer.write(b"a few bytes\r\n")
            await writer.drain()
            await asyncio.sleep(0.2)
        writer.write(b".\r\n")
        await writer.drain()
        return await reader.readline()

    slow = asyncio.create_task(dribble())
    fast = aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, timeout=30)
    await fast.connect()
    for i in range(5):
        await fast.sendmail(
            "a@customer.nl", ["support@example.com"], make_mail(subject=f"fast {i}")
        )
    await fast.quit()
    assert not slow.done(), "the fast client had to wait for the slow one"
    assert (await slow).startswith(b"250")
    writer.close()


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


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_swaks_delivers(server: Server) -> None:
    if shutil.which("swaks") is None:
        if REQUIRE_SERVERS:
            pytest.fail("swaks is missing and MAILGATE_REQUIRE_SERVERS=1")
        pytest.skip("swaks missing")

    async def swaks(*args: str) -> tuple[int | None, bytes]:
        process = await asyncio.create_subprocess_exec(
            "swaks",
            "--server",
            "127.0.0.1",
            "--port",
            str(server.port),
            "--from",
            "a@customer.nl",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), 60)
        return process.returncode, output

    code, output = await swaks(
        "--to", "support@example.com", "--header", "Subject: via swaks", "--body", "hallo"
    )
    assert code == 0, output.decode()
    assert b"<-  250 2.0.0 Ok: stored as" in output
    _, refused_output = await swaks("--to", "victim@elsewhere.org")
    assert b"<** 550 5.1.1" in refused_output
    assert await server.count() == 1
