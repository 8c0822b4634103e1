"""Several `mailgate run` processes on one PostgreSQL: nothing lost, nothing doubled.

Three instances share the database and nothing else (each has its own data
directory; raw mails and attachments live in the database, `blobs = "database"`);
mail arrives over all three SMTP ports and in one Dovecot mailbox that all three
are configured to watch; one instance is killed with SIGKILL mid-run and
restarted. A relay sink counts what is delivered.
"""

from __future__ import annotations

import asyncio
import email
import itertools
import json
import os
import signal
import smtplib
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiosmtpd.controller import Controller

from tests.conftest import ThrowawayCluster, free_port, write_config_file
from tests.intake.test_imap import PASSWORD, Dovecot, dovecot, dovecot_factory, mailbox
from tests.mails import make_mail
from tests.test_daemon import start_daemon, stop_daemon

__all__ = ["dovecot", "dovecot_factory"]


class Sink:
    """An SMTP relay that accepts everything and counts Message-IDs."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content)
        with self.lock:
            self.received.append(str(message["Message-ID"]).strip("<>"))
        return "250 2.0.0 OK"


def query(dsn: str, sql: str) -> list[Any]:
    async def run() -> list[Any]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(sql))
        finally:
            await conn.close()

    return asyncio.run(run())


def events(lines: list[bytes], name: str) -> list[dict[str, Any]]:
    found = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == name:
            found.append(record)
    return found


def attached_mail() -> bytes:
    from email.message import EmailMessage
    from email.policy import SMTP

    msg = EmailMessage(policy=SMTP)
    msg["From"] = "Alice <alice@customer.nl>"
    msg["To"] = "support@example.com"
    msg["Subject"] = "imap 199 met bijlage"
    msg["Message-ID"] = "<imap-199@customer.nl>"
    msg.set_content("Zie bijlage.")
    msg.add_attachment(
        b"%PDF-1.4 factuur", maintype="application", subtype="pdf", filename="factuur.pdf"
    )
    return msg.as_bytes()


@pytest.mark.parametrize("backend", ["postgresql"])
def test_three_instances_kill_one_and_every_mail_is_a_ticket_once(
    tmp_path: Path, db_url: str, dovecot: Dovecot
) -> None:
    dsn = db_url.replace("postgresql+asyncpg://", "postgresql://")
    imap_mails = [
        make_mail(subject=f"imap {i}", message_id=f"<imap-{i}@customer.nl>") for i in range(199)
    ]
    imap_mails.append(attached_mail())
    dovecot.append(imap_mails)
    sink = Sink()
    relay = Controller(sink, hostname="127.0.0.1", port=free_port())
    relay.start()
    ports = [free_port() for _ in range(3)]
    configs = [
        write_config_file(
            tmp_path / f"instance{n}.toml",
            db_url,
            general={"data_dir": f"var{n}", "log_format": "json", "blobs": "database"},
            smtp={
                "port": port,
                "messages_per_ip_per_minute": 100000,
                "connections_per_ip_per_minute": 100000,
            },
            relay={"host": "127.0.0.1", "port": relay.port, "security": "none"},
            outbound={"poll_interval": 0.2, "retry_delay": 0.5, "claim_timeout": 5.0},
            imap=[mailbox(dovecot, batch_size=20, poll_interval=0.5)],
        )
        for n, port in enumerate(ports)
    ]
    os.environ["MAILGATE_TEST_IMAP_PASSWORD"] = PASSWORD
    daemons = [start_daemon(c) for c in configs]
    logs = [lines for _, lines in daemons]
    acknowledged: list[str] = []
    lock = threading.Lock()

    def client(worker: int) -> None:
        for i in range(200):
            message_id = f"smtp-{worker}-{i}@customer.nl"
            raw = make_mail(subject=f"smtp {worker} {i}", message_id=f"<{message_id}>")
            for attempt in range(30):  # like an MTA with several MX hosts: the next one
                port = ports[(worker + i + attempt) % 3]
                try:
                    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
                        smtp.sendmail("a@customer.nl", ["support@example.com"], raw)
                    with lock:
                        acknowledged.append(message_id)
                    break
                except (smtplib.SMTPException, OSError):
                    time.sleep(0.1)

    try:
        clients = [threading.Thread(target=client, args=(w,)) for w in range(5)]
        for thread in clients:
            thread.start()
        while len(acknowledged) < 300:
            time.sleep(0.01)
        victim, _ = daemons[0]
        killed_pid = victim.pid
        killed_at = time.time()
        stop_daemon(victim, signal.SIGKILL)
        time.sleep(1.0)
        daemons[0] = start_daemon(configs[0])
        logs.append(daemons[0][1])
        for thread in clients:
            thread.join(timeout=300)
        assert len(acknowledged) == 1000

        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            pending = query(
                dsn,
                "SELECT (SELECT count(*) FROM spool WHERE state = 'pending') + "
                "(SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending'))",
            )[0][0]
            if pending == 0 and dovecot.count("INBOX") == 0:
                break
            time.sleep(0.5)
    finally:
        for daemon, _ in daemons:
            if daemon.poll() is None:
                stop_daemon(daemon)
        relay.stop()
        os.environ.pop("MAILGATE_TEST_IMAP_PASSWORD", None)

    inbound = Counter(
        r["message_id"]
        for r in query(dsn, "SELECT message_id FROM messages WHERE direction = 'in'")
    )
    expected = set(acknowledged) | {f"imap-{i}@customer.nl" for i in range(199)}
    expected.add("imap-199@customer.nl")
    assert {mid for mid in expected if inbound[mid] != 1} == set()
    assert max(inbound.values()) == 1
    assert query(dsn, "SELECT count(*) FROM tickets")[0][0] == len(inbound)
    assert dovecot.count("mailgate/processed") == 200

    sent = {r["message_id"] for r in query(dsn, "SELECT message_id FROM outbox")}
    delivered = Counter(sink.received)
    assert set(delivered) == sent  # every notification reached the relay ...
    # ... once, but for the one the killed instance may have been handing to the relay
    # when it died: SMTP has no two-phase commit, so that one went out again after its
    # claim went stale (docs/decisions/0006: at least once, a one-transaction window).
    twice = {mid for mid, n in delivered.items() if n > 1}
    assert max(delivered.values()) <= 2 and len(twice) <= 1, twice
    resent = {
        r["message_id"] for r in query(dsn, "SELECT message_id FROM outbox WHERE attempts > 1")
    }
    assert twice <= resent
    # The attachment is in the database, readable by every instance; no raw mail on disk.
    (row,) = query(dsn, "SELECT b.data FROM attachments a JOIN blobs b ON b.sha256 = a.sha256")
    assert bytes(row["data"]) == b"%PDF-1.4 factuur"
    assert query(dsn, "SELECT count(*) FROM spool_raw")[0][0] == 1200
    assert not list(tmp_path.glob("var*/spool/**/*.eml"))
    kinds = Counter(r["kind"] for r in query(dsn, "SELECT kind FROM outbox"))
    # A team notice per ticket; acknowledgments to the one sender stop at the hourly cap.
    assert kinds == {"team_new_ticket": len(inbound), "ack": 10}

    # One instance at a time polled the mailbox and ran the timers: each holder's time
    # (from leader.acquired to leader.released, or to its kill) ends before the next begins.
    for job in ("imap:support", "timers"):
        acquired = sorted((stamp(e), e["pid"]) for e in leader_events(logs, "leader.acquired", job))
        released = [(stamp(e), e["pid"]) for e in leader_events(logs, "leader.released", job)]
        spans = []
        for start, pid in acquired:
            ends = [t for t, p in released if p == pid and t >= start]
            end = min(ends) if ends else (killed_at if pid == killed_pid else float("inf"))
            spans.append((start, end, pid))
        for (_, end, _), (start, _, _) in itertools.pairwise(spans):
            assert end <= start, (job, spans)


def stamp(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


def leader_events(logs: list[list[bytes]], name: str, job: str) -> list[dict[str, Any]]:
    return [e for lines in logs for e in events(lines, name) if e["job"] == job]


def test_a_postgresql_restart_gives_451_meanwhile_and_the_daemon_recovers(
    tmp_path: Path, own_cluster: ThrowawayCluster
) -> None:
    smtp_port = free_port()
    config = write_config_file(
        tmp_path / "config.toml",
        own_cluster.url,
        smtp={"port": smtp_port},
        database={"busy_timeout": 2.0},
    )
    daemon, lines = start_daemon(config)

    def send(n: int) -> int:
        raw = make_mail(subject=f"restart {n}", message_id=f"<restart-{n}@customer.nl>")
        try:
            with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as smtp:
                smtp.sendmail("a@customer.nl", ["support@example.com"], raw)
        except smtplib.SMTPResponseException as exc:
            return int(exc.smtp_code)
        except smtplib.SMTPRecipientsRefused as exc:
            return int(next(iter(exc.recipients.values()))[0])
        return 250

    try:
        assert send(1) == 250
        own_cluster.stop()
        assert send(2) == 451  # our failure: the sender keeps the mail and retries
        own_cluster.start()
        deadline = time.monotonic() + 60
        while send(3) != 250:
            assert time.monotonic() < deadline, "the daemon did not recover"
            time.sleep(0.5)
        assert send(2) == 250  # the retried mail
        deadline = time.monotonic() + 60
        while query(own_cluster.dsn, "SELECT count(*) FROM spool WHERE state = 'done'")[0][0] < 3:
            assert time.monotonic() < deadline, "not processed after the restart"
            time.sleep(0.5)
    finally:
        code = stop_daemon(daemon)
    assert code == 0, b"".join(lines).decode()[-3000:]
