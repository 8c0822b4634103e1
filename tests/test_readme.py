"""The README's walkthrough runs as written, in a fresh directory with the shipped config."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_SERVERS, free_port

ROOT = Path(__file__).resolve().parents[1]


def walkthrough() -> str:
    return block("walkthrough")


def block(name: str) -> str:
    text = (ROOT / "README.md").read_text()
    found = re.search(rf"<!-- {name} -->\n```sh\n(.*?)```\n<!-- /{name} -->", text, re.S)
    assert found is not None, f"the README lost its {name} block"
    return found.group(1)


def test_the_sysadmins_day_runs_as_written_on_the_shipped_config(tmp_path: Path) -> None:
    """check, tickets sorted and searched, show, sla, trace, and outbox cut short by head:
    each as the README writes it, each saying what the README says."""
    (tmp_path / "config.toml").write_text((ROOT / "config.toml").read_text())
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    first = "printf 'From: a@customer.nl\\nSubject: Vraag\\n\\nHoe werkt dit?\\n' | "
    first += ".venv/bin/mailgate ingest --now\n"
    script = "set -e -o pipefail\n" + first + block("sysadmin-day")
    result = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert '"ticket": "#2"' in out and "config.toml: ok" in out
    listing = out[out.index("config.toml: ok") :]
    header = listing.splitlines()[1]
    assert header.split()[0].lower() in ("ref", "ticket", "#")  # a header row
    assert listing.splitlines()[2].lstrip().startswith("#2")  # critical first
    assert "Niemand kan inloggen" in listing and "sent '" in out  # notices one line each
    assert "Sinds vanochtend" in out
    assert "answer" in out and ("CET" in out or "CEST" in out)  # sla, zone named
    assert "subject token" in out or "evidence" in out  # trace
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_the_walkthrough_runs_in_a_fresh_directory(tmp_path: Path) -> None:
    if shutil.which("swaks") is None:
        if REQUIRE_SERVERS:
            pytest.fail("swaks is missing and MAILGATE_REQUIRE_SERVERS=1")
        pytest.skip("swaks is missing")
    port = str(free_port())
    # The shipped config, with the one change a shared test machine needs: a free port.
    config = (ROOT / "config.toml").read_text().replace("port = 2525", f"port = {port}", 1)
    (tmp_path / "config.toml").write_text(config)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    script = "set -e\n" + walkthrough().replace("127.0.0.1:2525", f"127.0.0.1:{port}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    result = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Printer brandt" in result.stdout
    assert "waiting_customer" in result.stdout
    sent = list((tmp_path / "var" / "outbox-maildir" / "new").iterdir())
    assert len(sent) == 3  # acknowledgment, team notice, the answer
    assert (tmp_path / "var" / "mailgate.db").exists()


def test_the_walkthrough_with_its_port_taken_ends_saying_why(tmp_path: Path) -> None:
    """Another daemon (here: any process) holds the port: the daemon exits 75 before it
    serves or leads anything, and the walkthrough stops within seconds with the reason."""
    import socket
    import time

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = str(holder.getsockname()[1])
    config = (ROOT / "config.toml").read_text().replace("port = 2525", f"port = {port}", 1)
    (tmp_path / "config.toml").write_text(config)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    script = "set -e\n" + walkthrough().replace("127.0.0.1:2525", f"127.0.0.1:{port}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    started = time.monotonic()
    try:
        result = subprocess.run(
            ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60,
            env=env,
        )  # fmt: skip
        daemon = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "mailgate"), "run"], cwd=tmp_path, capture_output=True,
            text=True, timeout=60, env=env,
        )  # fmt: skip
    finally:
        holder.close()
    assert daemon.returncode == 75, daemon.stderr  # systemd's unit retries (78 would not)
    assert time.monotonic() - started < 30
    assert result.returncode != 0
    assert "address already in use" in result.stdout, result.stdout + result.stderr
    log = (tmp_path / "var" / "daemon.log").read_text()
    assert "leader.acquired" not in log and "http.listening" not in log
    assert not (tmp_path / "var" / "outbox-maildir").exists()


def test_the_quick_start_runs_the_daemon_on_the_shipped_config(tmp_path: Path) -> None:
    import hashlib
    import signal
    import smtplib
    import time

    # The copy shares this checkout's venv; were that venv stamped for another
    # pyproject.toml, `contrib/dev run` would reinstall it from the copy, whose
    # directory is gone after the test, and break it for everything after.
    stamp = ROOT / ".venv" / ".mailgate-stamp"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or not stamp.read_text().startswith(wanted):
        message = "the venv is not installed for this pyproject.toml: run ./contrib/dev test"
        if REQUIRE_SERVERS:
            pytest.fail(message)
        pytest.skip(message)
    checkout = tmp_path / "mailgate"
    shutil.copytree(
        ROOT, checkout, ignore=shutil.ignore_patterns(".venv", "var", ".git", "__pycache__")
    )
    (checkout / ".venv").symlink_to(ROOT / ".venv")
    port = free_port()
    config = checkout / "config.toml"
    config.write_text(config.read_text().replace("port = 2525", f"port = {port}", 1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    daemon = subprocess.Popen(
        ["./contrib/dev", "run"], cwd=checkout, env=env, stderr=subprocess.PIPE
    )
    try:
        assert daemon.stderr is not None
        seen = b""
        while b"smtp.listening" not in seen:
            line = daemon.stderr.readline()
            assert line, seen.decode()
            seen += line
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.sendmail(
                "alice@customer.nl",
                ["support@example.com"],
                b"Subject: Printer brandt\r\nFrom: alice@customer.nl\r\n\r\nHij doet het niet.\r\n",
            )
        maildir = checkout / "var" / "outbox-maildir" / "new"
        deadline = time.monotonic() + 60
        while len(list(maildir.glob("*"))) < 2:  # the acknowledgment and the team's notice
            assert time.monotonic() < deadline, "nothing delivered into the maildir"
            time.sleep(0.2)
        assert (checkout / "var" / "mailgate.db").exists()
        assert (checkout / "var" / "secret").stat().st_mode & 0o777 == 0o600
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
        if daemon.stderr is not None:
            daemon.stderr.close()
