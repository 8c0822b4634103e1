"""Delivery through a real SMTP relay on loopback (aiosmtpd), and into the default maildir."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import text

from mailgate.app import App, build_app
from mailgate.clock import FrozenClock
from mailgate.config import Config
from mailgate.errors import MailgateError
from mailgate.store.db import session
from mailgate.store.repos import Repo, Tx
from tests.conftest import deliver, free_port
from tests.mails import make_mail


@dataclass
class RelayHandler:
    """A relay that records what it accepts and answers DATA with ``reply``."""

    reply: str = "250 2.0.0 Ok: queued"
    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    connections: set[int] = field(default_factory=set)  # the sessions mail came over
    hang_up: bool = False  # close the connection right after each accepted mail
    on_data: Callable[[], Any] | None = None  # awaited as each mail's DATA arrives

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.connections.add(id(session))
        if self.on_data is not None:
            await self.on_data()
        if self.hang_up and server.transport is not None:
            asyncio.get_running_loop().call_later(0.05, server.transport.close)
        if self.reply.startswith("250"):
            self.received.append(
                (str(envelope.mail_from), list(envelope.rcpt_tos), envelope.original_content or b"")
            )
        return self.reply


class Relay:
    def __init__(self, port: int) -> None:
        self.port = port
        self.handler = RelayHandler()
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: SMTP(self.handler, hostname="relay", loop=loop), "127.0.0.1", self.port
        )

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    instance = Relay(free_port())
    yield instance
    await instance.stop()


@pytest.fixture
async def relayed_app(
    make_config: Callable[..., Config], clock: FrozenClock, relay: Relay
) -> AsyncIterator[App]:
    config = make_config(
        relay={"host": "127.0.0.1", "port": relay.port, "security": "none", "timeout": 5.0},
        outbound={"retry_delay": 60.0, "max_attempts": 3},
    )
    app = await build_app(config, clock)
    yield app
    await app.close()


async def _states(app: App) -> list[tuple[str, str, int]]:
    async with session(app.engine) as s:
        return [(i.kind, i.state, i.attempts) for i in await Repo(s).outbox_list()]


async def test_relay_down_then_up_delivers_every_mail_exactly_once(
    relayed_app: App, relay: Relay, clock: FrozenClock
) -> None:
    await deliver(relayed_app, make_mail())
    first = await relayed_app.sender.run_due()
    assert [d.state for d in first] == ["pending", "pending"]  # relay down: deferred
    assert await relayed_app.sender.run_due() == []  # not due yet
    await relay.start()
    clock.advance(timedelta(minutes=5))
    second = await relayed_app.sender.run_due()
    assert [d.state for d in second] == ["sent", "sent"]
    clock.advance(timedelta(hours=2))
    assert await relayed_app.sender.run_due() == []
    assert len(relay.handler.received) == 2
    kinds = sorted(k for k, _, _ in await _states(relayed_app))
    assert kinds == ["ack", "team_new_ticket"]
    envelope_from, recipients, raw = relay.handler.received[0]
    assert envelope_from.startswith("bounces+") and envelope_from.endswith("@example.com")
    assert recipients in (["alice@customer.nl"], ["team@example.com"])
    assert b"Auto-Submitted:" in raw


async def test_each_relayed_mail_is_recorded_sent_before_the_next_goes_out(
    relayed_app: App, relay: Relay
) -> None:
    """A relay's 250 cannot be taken back: so that a crash repeats one mail at most, each
    delivery is committed as sent before the next mail of the round is handed over."""
    seen: list[int] = []

    async def count_sent() -> None:
        async with session(relayed_app.engine) as s:
            seen.append(sum(i.state == "sent" for i in await Repo(s).outbox_list()))

    relay.handler.on_data = count_sent
    await relay.start()
    for n in range(3):
        await deliver(relayed_app, make_mail(subject=f"Storing {n}"))
    results = await relayed_app.sender.run_due()
    assert [d.state for d in results] == ["sent"] * 6
    assert seen == [0, 1, 2, 3, 4, 5]


async def test_a_round_goes_over_one_relay_connection_and_ends_it(
    relayed_app: App, relay: Relay
) -> None:
    await relay.start()
    for n in range(3):
        await deliver(relayed_app, make_mail(subject=f"Storing {n}"))
    results = await relayed_app.sender.run_due()
    assert [d.state for d in results] == ["sent"] * 6
    assert len(relay.handler.received) == 6
    assert len(relay.handler.connections) == 1
    transport = relayed_app.sender.transport
    assert getattr(transport, "_client", None) is None  # QUIT said: nothing kept between rounds


async def test_a_relay_that_hangs_up_between_mails_gets_each_over_a_new_connection(
    relayed_app: App, relay: Relay
) -> None:
    relay.handler.hang_up = True
    await relay.start()
    await deliver(relayed_app, make_mail())
    sent: list[str] = []
    for item in await _outbox(relayed_app):
        await asyncio.sleep(0.2)  # the relay has hung up on the kept connection meanwhile
        results = await relayed_app.sender.send_now([item.id])
        sent += [d.state for d in results]
    assert sent == ["sent", "sent"]
    assert len(relay.handler.connections) == 2


async def test_a_sender_that_stops_mid_round_hands_back_what_it_did_not_try(
    relayed_app: App, relay: Relay
) -> None:
    await relay.start()
    for n in range(3):
        await deliver(relayed_app, make_mail(subject=f"Storing {n}"))
    stop = asyncio.Event()
    transport = relayed_app.sender.transport
    inner_send = transport.send

    async def send_then_stop(*args: Any, **kwargs: Any) -> str:
        stop.set()  # the daemon is told to stop while the first mail goes out
        return await inner_send(*args, **kwargs)

    transport.send = send_then_stop  # type: ignore[method-assign]
    results = await relayed_app.sender.run_due(stop=stop)
    assert [d.state for d in results] == ["sent"]
    states = await _states(relayed_app)
    assert sorted((s, a) for _, s, a in states) == [("pending", 0)] * 5 + [("sent", 1)]
    transport.send = inner_send  # type: ignore[method-assign]
    assert [d.state for d in await relayed_app.sender.run_due()] == ["sent"] * 5  # at once


async def test_two_senders_claim_disjoint_mails(app: App) -> None:
    """Two senders (instances) claiming at the same time each get their own mails: the
    second skips the rows the first holds (PostgreSQL), or waits for its commit (SQLite)."""
    import threading

    for n in range(4):
        await deliver(app, make_mail(subject=f"Storing {n}"))
    now = app.clock.now()
    claimed_first = threading.Event()

    def first(conn: Any) -> list[int]:
        claimed = Tx.on(conn).outbox.claim(now=now, stale_before=now, limit=3)
        claimed_first.set()
        threading.Event().wait(0.3)  # still holding the rows while the second claims
        return [item.id for item, _ in claimed]

    def second(conn: Any) -> list[int]:
        claimed_first.wait(5)
        return [item.id for item, _ in Tx.on(conn).outbox.claim(now=now, stale_before=now, limit=8)]

    a, b = await asyncio.gather(
        app.blocking.write(first, writer="one"), app.blocking.write(second, writer="two")
    )
    assert len(a) == 3 and not set(a) & set(b)
    assert sorted(a + b) == sorted(i.id for i in await _outbox(app))


async def test_relay_550_makes_the_mail_dead_with_its_reply_on_the_ticket(
    relayed_app: App, relay: Relay
) -> None:
    relay.handler.reply = "550 5.7.1 Mailbox of this user is blocked"
    await relay.start()
    outcome = await deliver(relayed_app, make_mail())
    results = await relayed_app.sender.run_due()
    assert [d.state for d in results] == ["dead", "dead"]
    async with session(relayed_app.engine) as s:
        repo = Repo(s)
        dead = await repo.outbox_list("dead")
        view = await repo.ticket_view(outcome.ticket or 0)
    assert "550 5.7.1 Mailbox of this user is blocked" in (dead[0].last_error or "")
    assert view is not None
    failures = [e for e in view.events if e.kind == "delivery_failed"]
    assert len(failures) == 2 and "5.7.1" in (failures[0].detail or "")


async def test_relay_451_is_retried_later_with_backoff(
    relayed_app: App, relay: Relay, clock: FrozenClock
) -> None:
    relay.handler.reply = "451 4.3.0 Try again later"
    await relay.start()
    await deliver(relayed_app, make_mail())
    assert [d.state for d in await relayed_app.sender.run_due()] == ["pending", "pending"]
    assert await relayed_app.sender.run_due() == []
    relay.handler.reply = "250 2.0.0 Ok"
    clock.advance(timedelta(seconds=80))  # 60 s +-20 % jitter
    assert [d.state for d in await relayed_app.sender.run_due()] == ["sent", "sent"]
    assert [a for _, _, a in await _states(relayed_app)] == [2, 2]


async def test_gives_up_after_max_attempts(relayed_app: App, clock: FrozenClock) -> None:
    await deliver(relayed_app, make_mail())
    for _ in range(3):
        await relayed_app.sender.run_due()
        clock.advance(timedelta(hours=2))
    assert [s for _, s, _ in await _states(relayed_app)] == ["dead", "dead"]


async def test_crash_while_sending_is_retried_after_the_claim_goes_stale(
    relayed_app: App, relay: Relay, clock: FrozenClock
) -> None:
    await relay.start()
    await deliver(relayed_app, make_mail())
    await _claim_all(relayed_app, clock)  # a sender that died mid-send
    assert await relayed_app.sender.run_due() == []
    clock.advance(timedelta(minutes=6))
    assert [d.state for d in await relayed_app.sender.run_due()] == ["sent", "sent"]


async def test_dead_mail_can_be_retried(relayed_app: App, relay: Relay) -> None:
    relay.handler.reply = "550 5.1.1 no"
    await relay.start()
    await deliver(relayed_app, make_mail())
    await relayed_app.sender.run_due()
    relay.handler.reply = "250 2.0.0 Ok"
    async with session(relayed_app.engine, write=True) as s:
        ids = await Repo(s).outbox_retry(None, relayed_app.clock.now())
    assert len(ids) == 2
    assert [d.state for d in await relayed_app.sender.run_due()] == ["sent", "sent"]


def test_ingest_with_the_shipped_config_writes_one_acknowledgment_into_the_maildir(
    tmp_path: Any,
) -> None:
    import shutil
    from pathlib import Path

    from tests.cli.test_cli import json_line, mailgate

    shipped = Path(__file__).resolve().parents[2] / "config.toml"
    config = tmp_path / "config.toml"
    shutil.copy(shipped, config)
    result = mailgate(config, "ingest", "--now", stdin=make_mail())
    assert result.returncode == 0, result.stderr.decode()
    assert json_line(result)["action"] == "created"
    files = sorted((tmp_path / "var" / "outbox-maildir" / "new").iterdir())
    acks = [f for f in files if b"Auto-Submitted: auto-replied" in f.read_bytes()]
    assert len(acks) == 1
    assert b"To: alice@customer.nl" in acks[0].read_bytes()
    assert len(files) == 2  # and the team's notice


class LockAfterDelivery:
    """The real maildir transport, after which another process locks the SQLite database
    (as a long backup or a stuck writer would) until ``release``."""

    def __init__(self, inner: Any, database: Any) -> None:
        self.inner = inner
        self.at_most_once = inner.at_most_once
        self.database = database
        self.lock: Any = None
        self.locked_once = False

    async def send(
        self, envelope_from: str, recipients: Any, raw: bytes, *, key: str = "", again: bool = True
    ) -> str:
        import sqlite3

        receipt = str(await self.inner.send(envelope_from, recipients, raw, key=key, again=again))
        if not self.locked_once:
            self.locked_once = True
            self.lock = sqlite3.connect(self.database, isolation_level=None)
            self.lock.execute("BEGIN EXCLUSIVE")
        return receipt

    async def settle(self) -> None:
        await self.inner.settle()

    async def close(self) -> None:
        await self.inner.close()

    def release(self) -> None:
        if self.lock is not None:
            self.lock.execute("ROLLBACK")
            self.lock.close()
            self.lock = None


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_locked_database_between_delivery_and_marking_sends_nothing_twice(
    make_config: Callable[..., Config], clock: FrozenClock, tmp_path: Any
) -> None:
    from mailgate.runners.sender import Sender

    config = make_config(database={"busy_timeout": 0.05}, outbound={"claim_timeout": 60.0})
    app = await build_app(config, clock)
    try:
        await deliver(app, make_mail())
        database = str(config.database.url).split("///", 1)[1]
        locking = LockAfterDelivery(app.sender.transport, database)
        app.sender.transport = locking
        # Both mails of the round delivered, then "sent" could not be recorded.
        first = await app.sender.run_due()
        assert [d.state for d in first] == ["sent", "sent"]
        assert sorted(app.sender.unrecorded) == [d.outbox_id for d in first]
        with pytest.raises(MailgateError):  # still locked: nothing new goes out meanwhile
            await app.sender.run_due()
        locking.release()
        assert await app.sender.run_due() == []  # recorded now, and nothing sent again
        assert [s for _, s, _ in await _states(app)] == ["sent", "sent"]
        files = sorted((config.outbound.maildir / "new").iterdir())
        assert len(files) == 2

        # And a sender that died in that window: its claim goes stale, a new process tries
        # again, finds the file of that outbox mail, and writes nothing.
        await app.blocking.write(
            lambda conn: Tx.on(conn).outbox.finish(
                [d.outbox_id for d in first], state="pending", now=clock.now(), retry_at=clock.now()
            )
        )
        await _claim_all(app, clock)
        clock.advance(timedelta(minutes=5))
        fresh = Sender(
            blocking=app.blocking,
            transport=locking.inner,
            config=config.outbound,
            clock=clock,
            metrics=app.metrics,
            worker_busy=lambda: False,
        )
        again = await fresh.run_due()
        assert [d.state for d in again] == ["sent", "sent"]
        assert all("already there" in d.detail for d in again)
        assert sorted((config.outbound.maildir / "new").iterdir()) == files
    finally:
        await app.close()


async def test_the_outbox_keeps_a_sent_mails_bytes_for_keep_sent_days_and_its_row_for_good(
    make_config: Callable[..., Config], clock: FrozenClock
) -> None:
    app = await build_app(make_config(outbound={"keep_sent_days": 10.0}), clock)
    try:
        outcome = await deliver(app, make_mail())
        assert {d.state for d in await app.sender.run_due()} == {"sent"}

        async def sizes() -> list[int]:
            async with session(app.engine) as s:
                rows = await s.exec(text("SELECT length(raw) FROM outbox ORDER BY id"))  # type: ignore[call-overload]
                return [int(n) for (n,) in rows]

        assert await app.sender.trim() == (0, 0)
        assert all(n > 500 for n in await sizes())
        clock.advance(timedelta(days=9))
        assert await app.sender.trim() == (0, 1)  # the ack's cap record went after a day
        assert all(n > 500 for n in await sizes())
        clock.advance(timedelta(days=2))
        assert await app.sender.trim() == (2, 0)
        assert await sizes() == [0, 0]
        assert await app.sender.trim() == (0, 0)  # at most hourly, and nothing left anyway
        # The rows stay: a late bounce still finds the mail it returns.
        ack = next(i for i in await _outbox(app) if i.kind == "ack")
        dsn = make_mail(
            sender="MAILER-DAEMON@mx.customer.nl",
            subject="Undelivered Mail",
            body="Final-Recipient: rfc822; alice@customer.nl\nAction: failed\nStatus: 5.1.1\n",
        )
        bounce = await deliver(app, dsn, to=(ack.envelope_from,))
        assert (bounce.action.value, bounce.ticket) == ("bounce", outcome.ticket)
    finally:
        await app.close()


async def _claim_all(app: App, clock: FrozenClock) -> list[int]:
    """Claim every due mail as a sender would right before sending (and then die)."""
    now = clock.now()
    claimed = await app.blocking.write(
        lambda conn: Tx.on(conn).outbox.claim(
            now=now, stale_before=now - timedelta(minutes=5), limit=100
        )
    )
    return [item.id for item, _ in claimed]


async def _outbox(app: App) -> list[Any]:
    async with session(app.engine) as s:
        return await Repo(s).outbox_list()


async def test_a_round_gives_way_while_the_worker_has_a_backlog(app: App) -> None:
    """On one database every round's commits queue with the worker's: while the worker
    works through due mail, the sender waits a moment (at most ``GIVE_WAY``), then sends."""
    await deliver(app, make_mail())
    asked: list[bool] = []

    def busy() -> bool:
        asked.append(len(asked) < 3)  # busy for three looks, then done
        return asked[-1]

    app.sender.worker_busy = busy
    done = await app.sender.round(failing=False, stop=asyncio.Event())
    assert done.more and asked == [True, True, True, False]
    assert {s for _, s, _ in await _states(app)} == {"sent"}
    stopping = asyncio.Event()
    stopping.set()  # a stopping daemon does not wait
    app.sender.worker_busy = lambda: True
    await asyncio.wait_for(app.sender.round(failing=False, stop=stopping), 1.0)
