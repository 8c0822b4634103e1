"""Mail loops through real listeners and real outboxes: two gateways, and a naive robot.

Each side is a real process or server on loopback: `mailgate run` with its SMTP
listener and its outbox sending through a relay, which is the other side's
listener. What crosses is counted where it lands.
"""

from __future__ import annotations

import smtplib
import sqlite3
import threading
import time
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.conftest import free_port, write_config_file
from tests.test_daemon import start_daemon, stop_daemon


def _gateway(tmp_path: Path, name: str, port: int, relay_port: int) -> Path:
    base = tmp_path / name
    base.mkdir()
    return write_config_file(
        base / "config.toml",
        f"sqlite:///{base / 'mailgate.db'}",
        general={"data_dir": "var", "log_level": "info", "log_format": "json"},
        agents={"domains": [f"{name}.example"]},
        queues=[
            {
                "name": "support",
                "addresses": [f"support@{name}.example"],
                "team_address": f"team@{name}.example",
            }
        ],
        smtp={"port": port},
        relay={"host": "127.0.0.1", "port": relay_port, "security": "none", "timeout": 5.0},
        outbound={"domain": f"{name}.example", "poll_interval": 0.1, "retry_delay": 0.2},
    )


def _received(config: Path) -> int:
    with sqlite3.connect(config.parent / "mailgate.db") as conn:
        return int(conn.execute("SELECT count(*) FROM spool").fetchone()[0])


def _pending(config: Path) -> int:
    with sqlite3.connect(config.parent / "mailgate.db") as conn:
        spool = conn.execute("SELECT count(*) FROM spool WHERE state = 'pending'").fetchone()[0]
        out = conn.execute(
            "SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending')"
        ).fetchone()[0]
    return int(spool) + int(out)


def _settle(count: object, quiet: float = 3.0, limit: float = 60.0) -> None:
    """Wait until ``count()`` has not changed for ``quiet`` seconds."""
    assert callable(count)
    deadline = time.monotonic() + limit
    last, since = count(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = count()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
    raise AssertionError("mail kept flowing")


def _send(port: int, sender: str, to: str, subject: str, body: str) -> None:
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg.set_content(body)
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.send_message(msg)


def test_two_gateways_whose_addresses_point_at_each_other_exchange_at_most_3_mails(
    tmp_path: Path,
) -> None:
    port_a, port_b = free_port(), free_port()
    config_a = _gateway(tmp_path, "a", port_a, relay_port=port_b)
    config_b = _gateway(tmp_path, "b", port_b, relay_port=port_a)
    daemon_a, log_a = start_daemon(config_a)
    daemon_b, log_b = start_daemon(config_b)
    try:
        # Someone at B's support address writes to A (a forward rule, a misaddressed CC).
        _send(port_a, "support@b.example", "support@a.example", "Vraag", "Hallo A.")
        _settle(lambda: (_received(config_a), _received(config_b), _pending(config_a)))
    finally:
        assert stop_daemon(daemon_a) == 0, b"".join(log_a).decode()
        assert stop_daemon(daemon_b) == 0, b"".join(log_b).decode()
    # The first mail, and A's acknowledgment, which B recognises as automatic and keeps.
    assert (_received(config_a), _received(config_b)) == (1, 1)
    with sqlite3.connect(config_b.parent / "mailgate.db") as conn:
        outcome, reason = conn.execute("SELECT outcome, reason FROM spool").fetchone()
        outbox = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    assert outcome == "system" and "auto_reply" in reason
    assert outbox == 0  # B answered nothing


def _exchange(
    config: Path, robot: NaiveRobot, handler: object, robot_port: int, subject: str, body: str
) -> None:
    """Start the robot's server and `mailgate run`, let the robot write first, and wait
    until no more mail moves either way."""
    controller = Controller(handler, hostname="127.0.0.1", port=robot_port)
    controller.start()
    daemon, log = start_daemon(config)
    try:
        _send(robot.answer_to_port, robot.address, "support@a.example", subject, body)
        _settle(lambda: (_received(config), len(robot.received), _pending(config)))
    finally:
        assert stop_daemon(daemon) == 0, b"".join(log).decode()
        controller.stop()


class NaiveRobot:
    """An autoresponder that answers every mail to its address with a new one: no
    Auto-Submitted, no In-Reply-To, the subject kept with "Re: " before it."""

    def __init__(self, address: str, answer_to_port: int) -> None:
        self.address = address
        self.answer_to_port = answer_to_port
        self.received: list[EmailMessage] = []
        self.other: list[list[str]] = []  # mail for anyone else (the team), only recorded

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = message_from_bytes(envelope.original_content or b"", policy=SMTP_POLICY)
        assert isinstance(message, EmailMessage)
        if self.address not in envelope.rcpt_tos:
            self.other.append(list(envelope.rcpt_tos))
            return "250 OK"
        self.received.append(message)
        threading.Thread(target=self._answer, args=(message,), daemon=True).start()
        return "250 OK"

    def _answer(self, message: EmailMessage) -> None:
        _send(
            self.answer_to_port,
            self.address,
            str(message["From"]),
            f"Re: {message['Subject']}",
            "Thank you for your mail. We will get back to you as soon as possible.",
        )


def test_a_naive_autoresponder_and_mailgate_exchange_at_most_3_mails(tmp_path: Path) -> None:
    port, robot_port = free_port(), free_port()
    config = _gateway(tmp_path, "a", port, relay_port=robot_port)
    robot = NaiveRobot("robot@robot.example", port)
    _exchange(config, robot, robot, robot_port, "Order 123", "Status?")
    # robot → mailgate, the acknowledgment → robot, the robot's answer → mailgate; the
    # answer threads as a reply, which tells the team and nobody else.
    assert _received(config) + len(robot.received) <= 3
    assert len(robot.received) == 1
    assert robot.other and all(to == ["team@a.example"] for to in robot.other)


class HelpdeskRobot(NaiveRobot):
    """Another helpdesk's autoresponder: every mail it receives becomes a ticket of its own,
    answered from a new address (``helpdesk+N@``), no Auto-Submitted, no In-Reply-To, our
    ticket tag stripped and its own added."""

    def _answer(self, message: EmailMessage) -> None:
        import re

        number = len(self.received) + 4710
        local, _, domain = self.address.partition("@")
        subject = re.sub(r"\[#\d+-[0-9A-Z]+\]", "", str(message["Subject"])).strip()
        _send(
            self.answer_to_port,
            f"{local}+{number}@{domain}",
            str(message["From"]),
            f"Re: {subject} [Ticket#{number}]",
            f"Dear customer, we received your request under number {number}.",
        )


def test_an_autoresponder_that_answers_from_a_new_address_each_time_is_stopped(
    tmp_path: Path,
) -> None:
    port, robot_port = free_port(), free_port()
    config = _gateway(tmp_path, "a", port, relay_port=robot_port)
    robot = HelpdeskRobot("helpdesk@other.example", port)
    _exchange(config, robot, _AnyAddress(robot), robot_port, "Storing", "Het werkt niet.")
    # Its first mail and our acknowledgment, its answer from helpdesk+4711@ (a ticket, but an
    # echo of our own mail: not acknowledged). Without the rule: hundreds of rounds.
    assert len(robot.received) <= 2, [str(m["To"]) for m in robot.received]
    assert _received(config) <= 3


class _AnyAddress:
    """Hands the robot every mail to its domain, whatever the +detail."""

    def __init__(self, robot: HelpdeskRobot) -> None:
        self.robot = robot

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        domain = self.robot.address.partition("@")[2]
        if any(r.endswith(f"@{domain}") for r in envelope.rcpt_tos):
            envelope.rcpt_tos = [self.robot.address]
        return await self.robot.handle_DATA(server, session, envelope)


def test_thirty_customers_at_one_free_mail_domain_each_get_an_acknowledgment(
    tmp_path: Path,
) -> None:
    port, sink_port = free_port(), free_port()
    config = _gateway(tmp_path, "a", port, relay_port=sink_port)
    sink = NaiveRobot("nobody@sink.example", port)  # records, answers nothing
    controller = Controller(sink, hostname="127.0.0.1", port=sink_port)
    controller.start()
    daemon, log = start_daemon(config)
    try:
        for n in range(30):
            # The same words from each: a template a customer portal or a newsletter uses.
            _send(port, f"klant{n}@gmail.com", "support@a.example", "Printer", "Hij brandt.")
        _settle(lambda: (_received(config), len(sink.other), _pending(config)))
    finally:
        assert stop_daemon(daemon) == 0, b"".join(log).decode()
        controller.stop()
    acknowledged = {to for batch in sink.other for to in batch if to.endswith("@gmail.com")}
    assert acknowledged == {f"klant{n}@gmail.com" for n in range(30)}
