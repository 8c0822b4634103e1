"""The mailgate command as a sysadmin and an MTA use it, on real files and databases.

Each command runs ``main()`` in this process (``tests.cli.run``); where the process is
the subject (the daemon's signals, a held lock and the MTA's exit code, what the pipe
imports, a closed stdout) a real one runs.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailgate.cli.output import EX_USAGE
from tests.cli.run import Ran, run_cli
from tests.conftest import TEST_SECRET, write_config_file
from tests.mails import make_mail


def process(
    config: Path,
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[bytes]:
    environment = {**os.environ, "MAILGATE_SECRET": TEST_SECRET, **(env or {})}
    environment.pop("MAILGATE_DATABASE_URL", None) if "MAILGATE_DATABASE_URL" not in (
        env or {}
    ) else None
    return subprocess.run(
        [sys.executable, "-m", "mailgate", "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        env=environment,
        timeout=timeout,
        check=False,
    )


mailgate = run_cli


def json_line(result: Ran | subprocess.CompletedProcess[bytes]) -> dict[str, object]:
    return dict(json.loads(result.stdout.decode().strip().splitlines()[-1]))


@pytest.fixture
def config_file(tmp_path: Path, db_url: str) -> Path:
    return write_config_file(tmp_path / "config.toml", db_url)


def test_check_reports_every_problem_with_file_key_and_reason(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text(
        '[general]\nlog_level = "loud"\ntypo_key = 1\n[database]\nbusy_timeout = "abc"\n'
        '[[queues]]\nname = "support"\naddresses = ["not-an-address"]\n'
    )
    result = mailgate(bad, "check")
    assert result.returncode == 78
    err = result.stderr.decode()
    assert (
        'config.toml: [general] log_level: expected one of debug, info, warning, error, got "loud"'
        in err
    )
    assert "config.toml: [general] typo_key: unknown key" in err
    assert 'config.toml: [database] busy_timeout: expected a number 0-600, got "abc"' in err
    assert 'config.toml: [[queues]] #1 addresses: invalid value "not-an-address"' in err
    assert "config.toml: [[queues]] #1 team_address: required" in err


def test_shipped_config_checks_ok() -> None:
    shipped = Path(__file__).resolve().parents[2] / "config.toml"
    result = mailgate(shipped, "check")
    assert result.returncode == 0, result.stderr.decode()


def test_ingest_created_then_reply_then_duplicate_and_show(config_file: Path) -> None:
    first = make_mail(message_id="<one@customer.nl>")
    created = mailgate(config_file, "ingest", "--now", "-", stdin=first)
    assert created.returncode == 0, created.stderr.decode()
    line = json_line(created)
    assert line["action"] == "created" and line["ticket"] == "#1"
    shown = mailgate(config_file, "show", "#1", "--json")
    ticket = json.loads(shown.stdout)
    assert ticket["ref"] == "#1" and ticket["subject_tag"] == f"[#{ticket['token']}]"
    reply = make_mail(subject=f"AW: {ticket['subject_tag']} Printer brandt", body="nog steeds")
    appended = json_line(mailgate(config_file, "ingest", "--now", stdin=reply))
    assert appended["action"] == "appended" and appended["ticket"] == "#1"
    duplicate = json_line(mailgate(config_file, "ingest", "--now", stdin=first))
    assert duplicate["action"] == "duplicate" and duplicate["ticket"] == "#1"
    by_token = json.loads(
        mailgate(config_file, "show", str(ticket["token"]).lower(), "--json").stdout
    )
    assert [m["text"] for m in by_token["messages"] if m["direction"] == "in"] == [
        "Hallo, de printer brandt weer.",
        "nog steeds",
    ]
    assert set(by_token["messages"][0]) >= {
        "direction",
        "kind",
        "from",
        "subject",
        "text",
        "attachments",
    }
    listed = json.loads(mailgate(config_file, "tickets", "--json").stdout)
    assert [t["ref"] for t in listed] == ["#1"] and "messages" not in listed[0]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_ingest_exits_75_when_database_locked_and_leaves_nothing(
    config_file: Path, tmp_path: Path
) -> None:
    mail = make_mail()
    assert mailgate(config_file, "init").returncode == 0
    database = tmp_path / "mailgate.db"
    blocker = sqlite3.connect(database, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        result = process(config_file, "ingest", "--now", stdin=mail)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert result.returncode == 75, result.stderr.decode()
    assert json_line(result)["action"] == "failed"
    assert list((tmp_path / "var" / "spool").rglob("*.eml")) == []
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM spool").fetchone() == (0,)
    retried = mailgate(config_file, "ingest", "--now", stdin=mail)
    assert retried.returncode == 0 and json_line(retried)["action"] == "created"
    again = mailgate(config_file, "ingest", "--now", stdin=mail)
    assert json_line(again)["action"] == "duplicate"


def test_ingest_finishes_a_mail_that_a_killed_ingest_had_stored(config_file: Path) -> None:
    """Pipe-only: an earlier ``ingest`` stored the mail and died before processing it; the
    MTA's retry must not answer "duplicate" and leave it unprocessed for good."""
    import asyncio

    from mailgate.app import build_app
    from mailgate.config import load_config
    from mailgate.intake.spool import Received

    mail = make_mail()

    async def store_and_die() -> None:
        app = await build_app(load_config(config_file, {"MAILGATE_SECRET": TEST_SECRET}))
        try:
            await app.spool.store(Received(mail, "pipe"))
        finally:
            await app.close()

    asyncio.run(store_and_die())
    rerun = mailgate(config_file, "ingest", "--now", stdin=mail)
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert json_line(rerun)["action"] == "created"
    assert json_line(mailgate(config_file, "ingest", "--now", stdin=mail))["action"] == "duplicate"


@pytest.mark.parametrize("backend", ["postgresql"])
def test_ingest_exits_75_when_postgresql_is_unreachable(tmp_path: Path, db_url: str) -> None:
    from tests.conftest import free_port

    down = write_config_file(
        tmp_path / "down.toml", f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x"
    )
    result = mailgate(down, "ingest", "--now", stdin=make_mail())
    assert result.returncode == 75, result.stderr.decode()
    assert list((tmp_path / "var").rglob("*.eml")) == []
    up = write_config_file(tmp_path / "up.toml", db_url)
    assert (
        json_line(mailgate(up, "ingest", "--now", stdin=make_mail(message_id="<x@y>")))["action"]
        == "created"
    )


def test_ingest_rejects_an_empty_mail_permanently(config_file: Path) -> None:
    result = mailgate(config_file, "ingest", "--now", stdin=b"")
    assert result.returncode == 65
    assert json_line(result)["action"] == "rejected"


def test_show_unknown_ticket_fails(config_file: Path) -> None:
    assert mailgate(config_file, "show", "#999").returncode == 1
    assert mailgate(config_file, "show", "1-AAAAAAAA").returncode == 1


@pytest.mark.parametrize("backend", ["sqlite"])
def test_daemon_processes_stored_mail_on_start_and_stops_on_sigterm(
    config_file: Path, tmp_path: Path
) -> None:
    # A mail stored by a process that died before processing it: a spool row, pending.
    import asyncio

    from mailgate.app import build_app
    from mailgate.config import load_config
    from mailgate.intake.spool import Received

    async def store_only() -> None:
        app = await build_app(load_config(config_file, {"MAILGATE_SECRET": TEST_SECRET}))
        await app.spool.store(Received(make_mail(subject="opgeslagen"), "test"))
        await app.close()

    asyncio.run(store_only())
    env = {**os.environ, "MAILGATE_SECRET": TEST_SECRET}
    for _ in range(2):  # the second start must not process the mail again
        daemon = subprocess.Popen(
            [sys.executable, "-m", "mailgate", "--config", str(config_file), "run"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            assert daemon.stderr is not None
            started: list[bytes] = []
            while not started or b"worker.started" not in started[-1]:
                line = daemon.stderr.readline()
                assert line, b"".join(started).decode()  # EOF: the daemon died
                started.append(line)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with sqlite3.connect(tmp_path / "mailgate.db") as conn:
                    if conn.execute("SELECT count(*) FROM spool WHERE state='done'").fetchone()[0]:
                        break
                time.sleep(0.1)
            time.sleep(0.3)
        finally:
            daemon.send_signal(signal.SIGTERM)
            _, rest = daemon.communicate(timeout=30)
        err = b"".join(started) + rest
        assert daemon.returncode == 0, err.decode()
        assert b"daemon.stopped" in err
    with sqlite3.connect(tmp_path / "mailgate.db") as conn:
        assert conn.execute("SELECT count(*) FROM tickets").fetchone() == (1,)
        inbound = "SELECT count(*) FROM messages WHERE direction = 'in'"
        assert conn.execute(inbound).fetchone() == (1,)


def test_quarantine_lists_nothing_on_a_fresh_install(config_file: Path) -> None:
    result = mailgate(config_file, "quarantine", "--json")
    assert result.returncode == 0 and json.loads(result.stdout) == []
    assert mailgate(config_file, "quarantine", "retry", "5").returncode == 1


def test_outbox_and_preview_commands(config_file: Path) -> None:
    assert mailgate(config_file, "ingest", "--now", stdin=make_mail()).returncode == 0
    listed = json.loads(mailgate(config_file, "outbox", "--json").stdout)
    assert [(i["kind"], i["state"], i["ticket"]) for i in listed] == [
        ("ack", "sent", "#1"),
        ("team_new_ticket", "sent", "#1"),
    ]
    assert listed[0]["envelope_from"].startswith(f"bounces+{listed[0]['id']}-")
    assert json.loads(mailgate(config_file, "outbox", "--json", "--state", "dead").stdout) == []
    preview = mailgate(config_file, "preview", "resolved", "--ticket", "#1", "--lang", "en")
    assert preview.returncode == 0, preview.stderr.decode()
    text = preview.stdout.decode()
    assert "Subject: Resolved: Printer brandt [#1-" in text
    assert "Auto-Submitted: auto-generated" in text
    assert mailgate(config_file, "outbox", "retry", "99").returncode == 1


def test_the_team_works_from_the_command_line(config_file: Path) -> None:
    created = json_line(mailgate(config_file, "ingest", "--now", stdin=make_mail()))
    assert created["action"] == "created"
    ref = str(created["ticket"])

    changed = mailgate(config_file, "set", ref, "priority=hoog", "status=in_progress")
    assert changed.returncode == 0, changed.stderr
    assert b"priority: medium -> high" in changed.stdout
    assert b"status: new -> in_progress" in changed.stdout
    refused = mailgate(config_file, "set", ref, "status=nergens")
    assert refused.returncode == 1 and b"unknown status" in refused.stderr

    replied = mailgate(
        config_file, "reply", ref, "--from", "bob@example.com", stdin=b"Werkt het nu?\n"
    )
    assert replied.returncode == 0, replied.stderr
    assert replied.stderr == b""  # the result on stdout; no log lines beside it at a terminal
    assert json_line(replied)["action"] == "appended"
    note = mailgate(config_file, "note", ref, "--from", "bob@example.com", stdin=b"Intern.\n")
    assert json_line(note)["action"] == "appended"
    stranger = mailgate(config_file, "reply", ref, "--from", "x@evil.org", stdin=b"Hoi\n")
    assert stranger.returncode == 1

    shown = json.loads(mailgate(config_file, "show", ref, "--json").stdout)
    assert (shown["status"], shown["priority"], shown["action_by"]) == (
        "waiting_customer",
        "high",
        "customer",
    )
    kinds = [m["kind"] for m in shown["messages"] if m["direction"] == "in"]
    assert kinds == ["customer", "agent", "note"]
    relayed = [m for m in shown["messages"] if m["direction"] == "out" and m["kind"] == "agent"]
    assert relayed and "Werkt het nu?" in relayed[-1]["text"]

    waiting = json.loads(
        mailgate(config_file, "tickets", "--action-by", "customer", "--json").stdout
    )
    assert [t["ref"] for t in waiting] == [ref]
    assert json.loads(mailgate(config_file, "tickets", "--status", "new", "--json").stdout) == []
    mine = mailgate(config_file, "set", ref, "assignee=bob@example.com")
    assert mine.returncode == 0, mine.stderr
    assigned = mailgate(config_file, "tickets", "--assignee", "bob@example.com")
    assert ref.encode() in assigned.stdout


def test_migrate_upgrades_once_and_prints_sql(config_file: Path) -> None:
    first = mailgate(config_file, "migrate")
    assert first.returncode == 0, first.stderr
    assert first.stdout.decode().startswith("schema upgraded from nothing to ")
    again = mailgate(config_file, "migrate")
    assert again.stdout.decode().startswith("schema already at ")
    current = mailgate(config_file, "migrate", "--sql")
    assert current.returncode == 0, current.stderr
    assert current.stdout.decode().startswith("-- schema already at ")
    assert b"CREATE TABLE" not in current.stdout
    fresh = mailgate(config_file, "migrate", "--sql", "--from", "base")
    assert b"CREATE TABLE tickets" in fresh.stdout
    step = mailgate(config_file, "migrate", "--sql", "--from", "0004").stdout.decode()
    assert "CREATE TABLE tickets" not in step and "CREATE INDEX" in step
    assert "UPDATE alembic_version SET version_num='0005'" in step
    unknown = mailgate(config_file, "migrate", "--sql", "--from", "9999")
    assert unknown.returncode != 0 and b"unknown schema revision" in unknown.stderr


# Configuration and the installation row behave alike on both databases (every test that
# builds an app on PostgreSQL reads and writes the secret's fingerprint): one backend here.
@pytest.mark.parametrize("backend", ["sqlite"])
def test_another_token_secret_is_refused_at_the_start_of_every_command(
    config_file: Path,
) -> None:
    """A command run with a secret other than the one the tickets were made with (the
    walkthrough's variable forgotten, or set where var/secret was used) is refused before
    it mints a token; ``init --adopt-secret`` makes a deliberate change."""
    made = mailgate(config_file, "ingest", "--now", stdin=make_mail())
    assert json_line(made)["action"] == "created"
    other = {"MAILGATE_SECRET": "another-secret-0123456789"}
    for command in (["tickets"], ["show", "#1"], ["ingest", "--now"], ["run"]):
        run = process if command == ["run"] else mailgate  # a daemon that starts never ends
        refused = run(config_file, *command, env=other, stdin=make_mail())
        assert refused.returncode == 78, (command, refused.stderr)
        err = refused.stderr.decode()
        assert "MAILGATE_SECRET (set in this environment)" in err
        assert "init --adopt-secret" in err
    assert mailgate(config_file, "tickets").returncode == 0  # the tickets' own secret
    adopted = mailgate(config_file, "init", "--adopt-secret", env=other)
    assert adopted.returncode == 0 and b"adopted" in adopted.stdout
    assert mailgate(config_file, "tickets", env=other).returncode == 0
    assert mailgate(config_file, "tickets").returncode == 78


def test_trace_names_the_header_that_matched_and_what_followed(config_file: Path) -> None:
    mailgate(config_file, "ingest", "--now", stdin=make_mail(message_id="<first@customer.nl>"))
    reply = make_mail(
        subject="Re: Printer brandt",
        message_id="<second@customer.nl>",
        in_reply_to="<first@customer.nl>",
        headers={"X-Autoreply": "yes"},
    )
    assert json_line(mailgate(config_file, "ingest", "--now", stdin=reply))["action"] == "appended"
    traced = mailgate(config_file, "trace", "<second@customer.nl>", "--json")
    assert traced.returncode == 0, traced.stderr
    steps = {s["step"]: s["detail"] for s in json.loads(traced.stdout)}
    assert steps["evidence"] == "In-Reply-To <first@customer.nl>"
    assert steps["outcome"].startswith("appended #1: matched by in-reply-to <first@customer.nl>")
    assert (
        steps["classified"].startswith("auto_reply: ") and "be answered no" in steps["classified"]
    )
    first = json.loads(mailgate(config_file, "trace", "1", "--json").stdout)
    assert {s["step"]: s["detail"] for s in first}["created"].startswith("-> new")
    notices = [s["detail"] for s in first if s["step"] == "notification"]
    assert notices == [
        "ack to alice@customer.nl (sent)",
        "team_new_ticket to team@example.com (sent)",
    ]
    assert mailgate(config_file, "trace", "<nothing@x>").returncode == 1


def test_output_cut_short_by_its_reader_ends_quietly(config_file: Path) -> None:
    """``mailgate outbox | head``: no BrokenPipeError traceback, exit 0."""
    for _ in range(3):
        assert mailgate(config_file, "ingest", "--now", stdin=make_mail()).returncode == 0
    # A reader that is gone before the first line: every write meets a closed pipe.
    command = f"set -o pipefail; {sys.executable} -m mailgate --config {config_file} outbox | true"
    result = subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        env={**os.environ, "MAILGATE_SECRET": TEST_SECRET},
        timeout=60,
    )
    assert result.returncode == 0
    assert b"Traceback" not in result.stderr and b"BrokenPipe" not in result.stderr


def test_check_fails_on_a_template_with_a_syntax_error(tmp_path: Path, db_url: str) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "ack.nl.txt").write_text(
        '{% extends "layout.nl.txt" %}{% block subject %}Ontvangen: {{ ticket.title }'
        "{% endblock %}{% block body %}x{% endblock %}"
    )
    config = write_config_file(
        tmp_path / "config.toml", db_url, outbound={"template_dir": "templates"}
    )
    result = mailgate(config, "check")
    assert result.returncode == 78, result.stdout
    assert b"ack.nl.txt" in result.stderr


def test_the_pipe_stores_and_the_worker_applies(config_file: Path) -> None:
    """``ingest`` without ``--now`` answers once the mail is committed; the daemon's worker
    applies it, and the MTA's retry of an applied mail is a duplicate with its ticket."""
    import asyncio

    from mailgate.app import build_app
    from mailgate.config import load_config

    mail = make_mail(message_id="<piped@customer.nl>")
    stored = mailgate(config_file, "ingest", stdin=mail)
    assert stored.returncode == 0, stored.stderr.decode()
    line = json_line(stored)
    assert (line["action"], line["ticket"]) == ("stored", None)
    # The MTA tries again before the worker came by: still only stored, and only once.
    assert json_line(mailgate(config_file, "ingest", stdin=mail))["spool_id"] == line["spool_id"]

    async def worker() -> list[str]:
        app = await build_app(load_config(config_file))
        try:
            return [o.action.value for o in await app.processor.run_due()]
        finally:
            await app.close()

    assert asyncio.run(worker()) == ["created"]
    again = json_line(mailgate(config_file, "ingest", stdin=mail))
    assert (again["action"], again["ticket"]) == ("duplicate", "#1")


def test_the_pipe_and_help_import_only_what_they_need(config_file: Path, tmp_path: Path) -> None:
    """An MTA runs ``ingest`` once per mail: it loads no parser, templates, holiday
    calendar, metrics, web or IMAP code; ``--help`` not even the database's."""
    probe = (
        "import json, sys\n"
        "from mailgate.cli import main\n"
        "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as exit:\n    code = exit.code\n"
        "print(json.dumps(sorted(sys.modules)))\n"
        "sys.exit(code)\n"
    )
    environment = {**os.environ, "MAILGATE_SECRET": TEST_SECRET}
    environment.pop("MAILGATE_DATABASE_URL", None)

    def modules(*args: str, stdin: bytes = b"") -> set[str]:
        done = subprocess.run(
            [sys.executable, "-c", probe, *args], input=stdin, capture_output=True,
            env=environment, timeout=60, check=True,
        )  # fmt: skip
        return set(json.loads(done.stdout.decode().strip().splitlines()[-1]))

    heavy = {
        "holidays", "imapclient", "jinja2", "mailparser", "prometheus_client", "alembic",
        "aiohttp", "rich", "pygments", "mailgate.ops.http", "mailgate.intake.mailbox",
        "aiosmtpd", "aiosmtplib", "mailgate.app", "mailgate.intake.imap", "mailgate.ops.metrics",
        "mailgate.outbound.notifier", "mailgate.tickets.mail",
    }  # fmt: skip
    assert mailgate(config_file, "init").returncode == 0  # the desk exists: no schema to make
    piped = modules("--config", str(config_file), "ingest", stdin=make_mail())
    assert "mailgate.intake.spool" in piped  # the probe saw the pipe at work
    assert piped & heavy == set()
    helped = modules("ingest", "--help")
    assert "mailgate.cli.parser" in helped
    assert {m for m in helped if m.split(".")[0] in {"sqlalchemy", "structlog"}} == set()


def test_tickets_filters_searches_and_sorts_in_the_teams_words(config_file: Path) -> None:
    for subject, sender in (
        ("Vraag over facturen", "alice@customer.nl"),
        ("URGENT: app crasht bij inloggen", "bob@other.nl"),
        ("Idee voor het rapport", "carol@customer.nl"),
    ):
        made = mailgate(
            config_file, "ingest", "--now", stdin=make_mail(subject=subject, sender=sender)
        )
        assert made.returncode == 0, made.stderr
    listed = json.loads(mailgate(config_file, "tickets", "--json").stdout)
    refs = {t["title"]: t["ref"] for t in listed}
    crash = refs["URGENT: app crasht bij inloggen"]
    assert mailgate(config_file, "set", crash, "prioriteit=kritiek", "soort=bug").returncode == 0
    events = json.loads(mailgate(config_file, "show", crash, "--json").stdout)["events"]
    changed = [e for e in events if e["field"] == "priority"]
    assert changed and changed[-1]["actor"].endswith("(command line)")  # who, not "cli"

    def tickets(*args: str) -> list[str]:
        done = mailgate(config_file, "tickets", "--json", *args)
        assert done.returncode == 0, done.stderr
        return [t["ref"] for t in json.loads(done.stdout)]

    assert tickets("--sort", "priority")[0] == crash  # incidents first
    assert tickets("--priority", "kritiek") == [crash]
    assert tickets("--type", "bug") == [crash]
    assert tickets("--search", "FACTUREN") == [refs["Vraag over facturen"]]
    assert tickets("--organisation", "customer.nl") == [
        refs["Vraag over facturen"], refs["Idee voor het rapport"]
    ]  # fmt: skip
    assert tickets("--requester", "bob@other.nl") == [crash]
    assert len(tickets("--status", "Nieuw")) == 3  # the label the team uses
    unknown = mailgate(config_file, "tickets", "--status", "zoek")
    assert unknown.returncode == EX_USAGE and b"known:" in unknown.stderr
    table = mailgate(config_file, "tickets", "--sort", "priority").stdout.decode().splitlines()
    assert table[0].split()[:3] == ["TICKET", "STATUS", "ACTS"] and crash in table[1]
    empty = mailgate(config_file, "tickets", "--search", "niets van dit alles")
    assert empty.stdout.decode().strip() == "no tickets"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_read_only_commands_need_no_daemon_password(tmp_path: Path, db_url: str) -> None:
    """An ``[[imap]]`` mailbox and a relay whose passwords only the daemon's environment
    holds: listing and showing work in the sysadmin's shell; ``check`` and ``run`` still
    say what is missing; a command that sends needs the relay's password only."""
    config = write_config_file(
        tmp_path / "config.toml",
        db_url,
        imap=[
            {"name": "hosted", "host": "imap.example.com", "username": "support",
             "password_env": "MAILGATE_TEST_IMAP_PASSWORD"}
        ],
        relay={"host": "smtp.example.com", "username": "support",
               "password_env": "MAILGATE_TEST_RELAY_PASSWORD"},
    )  # fmt: skip
    for command in (["tickets"], ["sla"], ["outbox"], ["quarantine"], ["init"]):
        listed = mailgate(config, *command)
        assert listed.returncode == 0, (command, listed.stderr)
    assert b"no tickets" in mailgate(config, "tickets").stdout
    assert b"no open deadlines" in mailgate(config, "sla").stdout
    assert b"no outgoing mail in the outbox" in mailgate(config, "outbox").stdout
    assert b"no mail in quarantine" in mailgate(config, "quarantine").stdout
    for command in (["check"], ["run"]):
        # (a daemon that started would never end: ``run`` as a process, with a timeout)
        refused = (
            process(config, *command, timeout=30)
            if command == ["run"]
            else mailgate(config, *command)
        )
        assert refused.returncode == 78
        assert b"MAILGATE_TEST_IMAP_PASSWORD is not set" in refused.stderr
        assert b"MAILGATE_TEST_RELAY_PASSWORD is not set" in refused.stderr
    sending = mailgate(config, "reply", "#1", "--from", "bob@example.com", stdin=b"Hallo")
    assert sending.returncode == 78
    assert b"MAILGATE_TEST_RELAY_PASSWORD is not set" in sending.stderr
    assert b"IMAP_PASSWORD" not in sending.stderr
    piped = mailgate(config, "ingest", stdin=make_mail())  # the MTA's pipe only stores
    assert piped.returncode == 0, piped.stderr
    now = mailgate(config, "ingest", "--now", stdin=make_mail(subject="Nu"))  # it may send
    assert now.returncode == 78 and b"MAILGATE_TEST_RELAY_PASSWORD" in now.stderr


@pytest.mark.parametrize("backend", ["sqlite"])
def test_read_only_commands_never_wait_for_the_write_lock(tmp_path: Path, db_url: str) -> None:
    """The daemon holds SQLite's write lock (draining a mailbox): listing, showing and
    tracing read from WAL at once; none waits out ``busy_timeout`` or exits 75."""
    import sqlite3
    import time

    config = write_config_file(tmp_path / "config.toml", db_url, database={"busy_timeout": 3.0})
    made = mailgate(config, "ingest", "--now", stdin=make_mail(message_id="<held@customer.nl>"))
    assert json_line(made)["action"] == "created"
    database = db_url.split("///", 1)[1]
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE installation SET created_at = created_at")
    try:
        for command in (
            ["tickets", "--json"], ["show", "#1"], ["sla"], ["trace", "<held@customer.nl>"],
            ["outbox"], ["quarantine"],
        ):  # fmt: skip
            started = time.monotonic()
            result = mailgate(config, *command)
            assert result.returncode == 0, (command, result.stderr)
            assert time.monotonic() - started < 3.0, command
    finally:
        writer.execute("ROLLBACK")
        writer.close()


@pytest.mark.parametrize("backend", ["sqlite"])  # the passwords' SQL: tests/web/test_auth.py
def test_agents_get_web_desk_passwords_from_the_command_line(config_file: Path) -> None:
    added = mailgate(config_file, "agent", "add", "Anna@example.com", stdin=b"correct horse 1\n")
    assert added.returncode == 0, added.stderr
    assert added.stdout.decode().strip() == "anna@example.com: password set"
    stranger = mailgate(config_file, "agent", "add", "alice@customer.nl", stdin=b"long enough 1\n")
    assert stranger.returncode == 1
    assert "not an agent" in stranger.stderr.decode()
    short = mailgate(config_file, "agent", "passwd", "anna@example.com", stdin=b"short\n")
    assert short.returncode == 1
    assert "at least 10 characters" in short.stderr.decode()
    listed = mailgate(config_file, "agent", "list")
    assert listed.stdout.decode().startswith("anna@example.com  password set")
    removed = mailgate(config_file, "agent", "remove", "anna@example.com")
    assert removed.stdout.decode().strip() == "anna@example.com: password removed"
    assert "no agent has" in mailgate(config_file, "agent", "list").stdout.decode()
