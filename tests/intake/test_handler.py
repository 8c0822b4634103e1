"""The SMTP transaction: recipients refused at RCPT, 250 only after the spool has the mail."""

from __future__ import annotations

import smtplib
from collections.abc import Callable
from typing import Any

import pytest
import structlog
from sqlalchemy import text

from mailgate.service import raw_mail
from mailgate.store.db import session
from mailgate.store.repos import Repo
from tests.intake.smtp_support import Server, in_thread, send, smtp_client
from tests.mails import make_mail


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
    async with session(server.app.engine) as s:
        entry = await Repo(s).spool_get(outcomes[0].spool_id)
    assert entry is not None
    content = await raw_mail(server.app, entry) or b""  # in the database, or a file
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


async def test_too_many_recipients_is_452(starter: Callable[..., Any]) -> None:
    server = await starter(max_recipients=2)

    def talk() -> list[int]:
        with smtp_client(server.port) as client:
            client.mail("a@customer.nl")
            return [client.rcpt(f"support+{i}-x@example.com")[0] for i in range(3)]

    assert await in_thread(talk) == [250, 250, 452]
