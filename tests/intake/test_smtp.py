"""The SMTP protocol and its limits, driven by real clients over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import smtplib
from collections.abc import Callable
from typing import Any

import aiosmtplib
import pytest
import structlog

from mailgate.store.db import session
from mailgate.store.repos import Repo
from tests.conftest import REQUIRE_SERVERS
from tests.intake.smtp_support import Server, begin_data, in_thread, smtp_client
from tests.mails import make_mail


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


async def test_a_long_line_with_bare_lf_endings_is_taken_in(server: Server) -> None:
    body = b"<html><body><p>" + b"x" * 1200 + b"</p></body></html>\n" + b"tweede regel\n" * 20
    raw = b"From: a@customer.nl\nTo: support@example.com\nSubject: Lang\n\n" + body
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    await reader.readline()
    for command in (b"EHLO c.example\r\n", b"MAIL FROM:<a@customer.nl>\r\n",
                    b"RCPT TO:<support@example.com>\r\n", b"DATA\r\n"):  # fmt: skip
        writer.write(command)
        await writer.drain()
        reply = await reader.readline()
        while reply[3:4] == b"-":
            reply = await reader.readline()
    assert reply.startswith(b"354")
    writer.write(raw + b"\r\n.\r\n")
    await writer.drain()
    assert (await reader.readline()).startswith(b"250")
    writer.close()
    assert await server.count() == 1


@pytest.mark.parametrize("lmtp", [False, True])
async def test_the_protocol_finds_what_aiosmtpd_finds_and_reads_addresses_as_it_does(
    lmtp: bool,
) -> None:
    """The shortcuts of a connection's set-up (``MailgateSMTP.__dir__``, ``_getaddr``,
    the handler's EHLO signature) give aiosmtpd exactly what its own way gives it."""
    from aiosmtpd.lmtp import LMTP
    from aiosmtpd.smtp import SMTP

    from mailgate.core.limits import SlidingWindow
    from mailgate.intake.handler import IntakeHandler
    from mailgate.intake.smtp import Gate, MailgateLMTP, MailgateSMTP

    class Handler:
        handle_EHLO = IntakeHandler.handle_EHLO

        async def handle_DATA(self, *_: object) -> str:
            return "250 OK"

    window = SlidingWindow(10)
    gate = Gate(max_connections=1, max_per_ip=1, connections_per_ip=window, messages_per_ip=window)
    ours_class, theirs_class = (MailgateLMTP, LMTP) if lmtp else (MailgateSMTP, SMTP)
    ours = ours_class(Handler(), gate, max_line_length=998, data_timeout=60, hostname="mx")
    theirs = theirs_class(Handler(), hostname="mx")
    assert set(ours._smtp_methods) == set(theirs._smtp_methods) >= {"EHLO", "MAIL", "DATA"}
    assert set(ours._auth_methods) == set(theirs._auth_methods)
    assert ours._ehlo_hook_ver == theirs._ehlo_hook_ver == "new"
    ours.local_part_limit = theirs.local_part_limit = 64
    for argument in [
        "<anna@example.com>",
        "<anna@example.com> SIZE=100",
        "anna@example.com",
        "<>",
        "",
        "<Anna Smit <anna@example.com>>",
        "<not an address",
        f"<{'x' * 65}@example.com>",
        '<"quoted local"@example.com> BODY=8BITMIME',
    ]:
        assert ours._getaddr(argument) == SMTP._getaddr(theirs, argument), argument
