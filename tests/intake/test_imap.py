"""The IMAP poller against a real Dovecot started for each test."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from imapclient import IMAPClient
from sqlalchemy import text

from mailgate.app import App, build_app
from mailgate.clock import FrozenClock
from mailgate.config import Config
from mailgate.intake.imap import ImapPoller
from mailgate.intake.spool import Received
from mailgate.store.db import session
from mailgate.store.repos import Repo
from tests.conftest import REQUIRE_SERVERS, SUPPORT, free_port
from tests.mails import make_mail
from tests.waiting import eventually

DOVECOT = Path("/usr/sbin/dovecot")
USER, PASSWORD = "test@example.com", "secret"
NO_IDLE = (
    "imap_capability = IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE SORT "
    "UIDPLUS MOVE NAMESPACE CHILDREN SPECIAL-USE"
)


class Dovecot:
    """A Dovecot master process in its own directory; can be stopped and started again."""

    def __init__(self, extra: str = "") -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="mailgate-dovecot-"))
        os.chmod(self.directory, 0o755)
        self.port = free_port()
        self.tls_port = free_port()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "MAIL_FSYNC": "never", "DOVECOT_EXTRA": self.extra}
        self.process = subprocess.Popen(
            [
                "bash",
                str(SUPPORT / "dovecot.sh"),
                str(self.directory),
                str(self.port),
                str(self.tls_port),
                USER,
                PASSWORD,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"dovecot did not start: {self.log()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)
            if self.process.stderr is not None:
                self.process.stderr.close()
            self.process = None

    def log(self) -> str:
        path = self.directory / "dovecot.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def client(self) -> IMAPClient:
        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=30)
        client.login(USER, PASSWORD)
        return client

    def append(self, mails: list[bytes], folder: str = "INBOX") -> None:
        with self.client() as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            for raw in mails:
                client.append(folder, raw)

    def count(self, folder: str) -> int:
        with self.client() as client:
            if not client.folder_exists(folder):
                return 0
            return int(client.select_folder(folder, readonly=True)[b"EXISTS"])

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def dovecot_factory() -> Iterator[Callable[..., Dovecot]]:
    if not DOVECOT.exists():
        if REQUIRE_SERVERS:
            pytest.fail("Dovecot (dovecot-imapd) is missing and MAILGATE_REQUIRE_SERVERS=1")
        pytest.skip("Dovecot (dovecot-imapd) is missing")
    servers: list[Dovecot] = []

    def make(extra: str = "") -> Dovecot:
        server = Dovecot(extra)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.cleanup()


@pytest.fixture
def dovecot(dovecot_factory: Callable[..., Dovecot]) -> Dovecot:
    return dovecot_factory()


def mailbox(server: Dovecot, **overrides: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "name": "support",
        "host": "127.0.0.1",
        "port": server.port,
        "security": "none",
        "username": USER,
        "password_env": "MAILGATE_TEST_IMAP_PASSWORD",
        "poll_interval": 0.5,
        "timeout": 10.0,
    }
    table.update(overrides)
    return table


@pytest.fixture
def imap_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILGATE_TEST_IMAP_PASSWORD", PASSWORD)
    monkeypatch.setenv("MAILGATE_TEST_IMAP_WRONG", "not-the-password")


class Running:
    """An app with pollers running for some mailboxes."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for config in self.app.config.imap:
            poller = ImapPoller(
                config, spool=self.app.spool, engine=self.app.engine, clock=self.app.clock
            )
            self.tasks.append(asyncio.create_task(poller.run(self.stop)))

    async def halt(self) -> None:
        self.stop.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks), 30)
        self.tasks.clear()
        self.stop = asyncio.Event()

    async def count(self, sql: str = "SELECT count(*) FROM spool") -> int:
        async with session(self.app.engine) as s:
            return int((await s.exec(text(sql))).one()[0])  # type: ignore[call-overload]


@pytest.fixture
async def running(
    make_config: Callable[..., Config], clock: FrozenClock, imap_env: None
) -> AsyncIterator[Callable[..., Any]]:
    started: list[Running] = []

    async def run(*mailboxes: dict[str, Any], start: bool = True) -> Running:
        config = make_config(smtp={"enabled": False}, imap=list(mailboxes))
        app = await build_app(config, clock)
        instance = Running(app)
        if start:
            instance.start()
        started.append(instance)
        return instance

    yield run
    for instance in started:
        if instance.tasks:
            await instance.halt()
        await instance.app.close()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_appended_mails_become_tickets_and_move_to_processed(
    dovecot: Dovecot, running: Callable[..., Any]
) -> None:
    await asyncio.to_thread(dovecot.append, [make_mail(subject=f"imap {i}") for i in range(3)])
    instance = await running(mailbox(dovecot))
    await eventually(lambda: asyncio.to_thread(dovecot.count, "mailgate/processed"), 20)
    await eventually(lambda: asyncio.to_thread(lambda: dovecot.count("mailgate/processed") == 3))
    assert await asyncio.to_thread(dovecot.count, "INBOX") == 0
    outcomes = await instance.app.processor.run_due()
    assert sorted(o.action.value for o in outcomes) == ["created"] * 3
    assert await instance.count("SELECT count(*) FROM tickets") == 3


async def test_idle_takes_a_new_mail_within_seconds(
    dovecot: Dovecot, running: Callable[..., Any]
) -> None:
    with structlog.testing.capture_logs() as logs:
        instance = await running(mailbox(dovecot, poll_interval=3600.0))
        await eventually(lambda: any(e["event"] == "imap.idling" for e in logs))
    assert [e["idle"] for e in logs if e["event"] == "imap.connected"] == [True]
    await asyncio.to_thread(dovecot.append, [make_mail(subject="push")])
    # Within seconds, where the next poll would be an hour away: IDLE told the poller.
    await eventually(instance.count, timeout=10)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_server_without_idle_is_polled(
    dovecot_factory: Callable[..., Dovecot], running: Callable[..., Any]
) -> None:
    server = dovecot_factory(NO_IDLE)
    with structlog.testing.capture_logs() as logs:
        instance = await running(mailbox(server, poll_interval=0.5))
        await asyncio.to_thread(server.append, [make_mail(subject="polled")])
        await eventually(instance.count, timeout=15)
    assert [e["idle"] for e in logs if e["event"] == "imap.connected"] == [False]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_dovecot_restart_during_300_mails_loses_and_doubles_nothing(
    dovecot: Dovecot, running: Callable[..., Any]
) -> None:
    mails = [
        make_mail(subject=f"bulk {i}", message_id=f"<bulk-{i}@customer.nl>") for i in range(300)
    ]
    await asyncio.to_thread(dovecot.append, mails)
    instance = await running(mailbox(dovecot, batch_size=20))
    await eventually(lambda: instance.count(), timeout=20)
    await asyncio.to_thread(dovecot.stop)
    await asyncio.sleep(1.0)  # an outage of a second while the poller is mid-way
    await asyncio.to_thread(dovecot.start)
    await eventually(lambda: asyncio.to_thread(lambda: dovecot.count("INBOX") == 0), 60)
    assert await instance.count() == 300
    assert await asyncio.to_thread(dovecot.count, "mailgate/processed") == 300
    assert await instance.count("SELECT count(DISTINCT message_id) FROM spool") == 300


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_crash_between_commit_and_move_makes_no_second_ticket(
    dovecot: Dovecot, running: Callable[..., Any]
) -> None:
    raw = make_mail(subject="half done", message_id="<half@customer.nl>")
    await asyncio.to_thread(dovecot.append, [raw])
    instance = await running(mailbox(dovecot), start=False)
    # The state a crash leaves: stored and committed, checkpoint written, not moved.
    await instance.app.spool.store(Received(raw, "imap:support"))
    with dovecot.client() as client:
        uidvalidity = int(client.select_folder("INBOX")[b"UIDVALIDITY"])
        (uid,) = client.search(["ALL"])
    async with session(instance.app.engine, write=True) as s:
        await Repo(s).imap_checkpoint_set(
            "support", "INBOX", uidvalidity, uid, instance.app.clock.now()
        )
    await instance.app.processor.run_due()
    instance.start()
    await eventually(lambda: asyncio.to_thread(lambda: dovecot.count("mailgate/processed") == 1))
    await instance.app.processor.run_due()
    assert await instance.count() == 1
    assert await instance.count("SELECT count(*) FROM tickets") == 1


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_crash_before_checkpoint_is_caught_by_dedupe(
    dovecot: Dovecot, running: Callable[..., Any]
) -> None:
    raw = make_mail(subject="stored, no checkpoint", message_id="<nocp@customer.nl>")
    await asyncio.to_thread(dovecot.append, [raw])
    instance = await running(mailbox(dovecot), start=False)
    await instance.app.spool.store(Received(raw, "imap:support"))
    instance.start()
    await eventually(lambda: asyncio.to_thread(lambda: dovecot.count("mailgate/processed") == 1))
    assert await instance.count() == 1


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_wrong_password_on_one_mailbox_does_not_stop_the_other(
    dovecot: Dovecot, running: Callable[..., Any]
) -> None:
    await asyncio.to_thread(dovecot.append, [make_mail(subject="still works")])
    with structlog.testing.capture_logs() as logs:
        instance = await running(
            mailbox(
                dovecot, name="broken", password_env="MAILGATE_TEST_IMAP_WRONG", folder="Elsewhere"
            ),
            mailbox(dovecot, name="support"),
        )
        await eventually(instance.count)
        await eventually(lambda: any(e["event"] == "imap.login_failed" for e in logs))
    failed = [e for e in logs if e["event"] == "imap.login_failed"]
    assert failed[0]["mailbox"] == "broken" and "login" in failed[0]["reason"]
    assert failed[0]["log_level"] == "error"


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_uidvalidity_change_processes_new_mail_and_reprocesses_nothing(
    dovecot: Dovecot, running: Callable[..., Any]
) -> None:
    first = make_mail(subject="before", message_id="<before@customer.nl>")
    await asyncio.to_thread(dovecot.append, [first], "Support")
    instance = await running(mailbox(dovecot, folder="Support"))
    await eventually(lambda: asyncio.to_thread(lambda: dovecot.count("mailgate/processed") == 1))
    await instance.halt()

    def recreate() -> None:
        with dovecot.client() as client:
            client.delete_folder("Support")
            client.create_folder("Support")
            client.append("Support", make_mail(subject="after", message_id="<after@customer.nl>"))
            client.append("Support", first)  # an old mail put back must not be a new intake

    await asyncio.to_thread(recreate)
    with structlog.testing.capture_logs() as logs:
        instance.start()
        await eventually(lambda: asyncio.to_thread(lambda: dovecot.count("Support") == 0))
    assert any(e["event"] == "imap.uidvalidity_changed" for e in logs)
    assert await instance.count() == 2
    assert await asyncio.to_thread(dovecot.count, "mailgate/processed") == 3


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_too_large_mail_goes_to_the_failed_folder(
    dovecot: Dovecot, running: Callable[..., Any]
) -> None:
    await asyncio.to_thread(
        dovecot.append, [make_mail(body="x" * 5000), make_mail(subject="small")]
    )
    with structlog.testing.capture_logs() as logs:
        instance = await running(mailbox(dovecot, max_message_size=2048))
        await eventually(lambda: asyncio.to_thread(lambda: dovecot.count("mailgate/failed") == 1))
        await eventually(
            lambda: asyncio.to_thread(lambda: dovecot.count("mailgate/processed") == 1)
        )
    assert await instance.count() == 1
    assert any(e["event"] == "imap.too_large" for e in logs)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_implicit_tls_with_a_trusted_certificate(
    dovecot: Dovecot, running: Callable[..., Any]
) -> None:
    await asyncio.to_thread(dovecot.append, [make_mail(subject="over tls")])
    instance = await running(
        mailbox(
            dovecot,
            security="tls",
            port=dovecot.tls_port,
            ca_file=str(dovecot.directory / "cert.pem"),
        )
    )
    await eventually(instance.count)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_check_logs_in_and_reports_each_mailbox(
    dovecot: Dovecot, tmp_path: Path, db_url: str, imap_env: None
) -> None:
    from tests.cli.test_cli import mailgate
    from tests.conftest import write_config_file

    dovecot.append([make_mail(), make_mail()])
    good = write_config_file(tmp_path / "good.toml", db_url, imap=[mailbox(dovecot)])
    result = mailgate(good, "check", env={"MAILGATE_TEST_IMAP_PASSWORD": PASSWORD})
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert "imap support: ok, 2 mail(s) waiting in INBOX" in result.stdout.decode()
    bad = write_config_file(
        tmp_path / "bad.toml",
        db_url,
        imap=[mailbox(dovecot, password_env="MAILGATE_TEST_IMAP_WRONG")],
    )
    refused = mailgate(bad, "check", env={"MAILGATE_TEST_IMAP_WRONG": "nope"})
    assert refused.returncode == 78
    assert "imap support: login failed" in refused.stdout.decode()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_daemon_killed_mid_backlog_then_restarted_makes_each_ticket_once(
    dovecot: Dovecot, tmp_path: Path, db_url: str
) -> None:
    import signal
    import sqlite3

    from tests.conftest import inbound_per_message_id, write_config_file
    from tests.test_daemon import start_daemon, stop_daemon, wait_until_processed

    mails = [
        make_mail(subject=f"kill {i}", message_id=f"<kill-{i}@customer.nl>") for i in range(200)
    ]
    dovecot.append(mails)
    config = write_config_file(
        tmp_path / "config.toml",
        db_url,
        smtp={"port": free_port()},
        imap=[mailbox(dovecot, batch_size=10)],
    )
    os.environ["MAILGATE_TEST_IMAP_PASSWORD"] = PASSWORD
    try:
        daemon, _ = start_daemon(config)
        database = tmp_path / "mailgate.db"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with sqlite3.connect(database) as conn:
                if conn.execute("SELECT count(*) FROM spool").fetchone()[0] >= 40:
                    break
            time.sleep(0.02)
        stop_daemon(daemon, signal.SIGKILL)
        daemon, lines = start_daemon(config)
        try:
            deadline = time.monotonic() + 90
            while dovecot.count("INBOX") and time.monotonic() < deadline:
                time.sleep(0.2)
            wait_until_processed(database)
        finally:
            assert stop_daemon(daemon) == 0, b"".join(lines).decode()
    finally:
        os.environ.pop("MAILGATE_TEST_IMAP_PASSWORD", None)
    assert dovecot.count("INBOX") == 0
    assert dovecot.count("mailgate/processed") == 200
    per_id = inbound_per_message_id(tmp_path / "mailgate.db")
    assert len(per_id) == 200 and set(per_id.values()) == {1}
