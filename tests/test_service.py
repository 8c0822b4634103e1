"""The systemd unit and the daemon's reload signal."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, write_config_file
from tests.mails import make_mail
from tests.test_daemon import start_daemon, stop_daemon

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd here")
def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = (ROOT / "contrib" / "mailgate.service").read_text()
    local = unit.replace("/opt/mailgate/.venv", str(ROOT / ".venv"))
    path = tmp_path / "mailgate.service"
    path.write_text(local)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sighup_reloads_templates_and_keeps_them_when_broken(tmp_path: Path, db_url: str) -> None:
    import smtplib

    overrides = tmp_path / "templates"
    overrides.mkdir()
    port = free_port()
    config = write_config_file(
        tmp_path / "config.toml",
        db_url,
        smtp={"port": port},
        outbound={"template_dir": str(overrides)},
    )
    daemon, lines = start_daemon(config)
    try:
        (overrides / "ack.nl.txt").write_text(
            '{% extends "layout.nl.txt" %}{% block subject %}Herladen: {{ ticket.title }}'
            "{% endblock %}{% block body %}Nieuw sjabloon.{% endblock %}"
        )
        daemon.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not any(b"templates.reloaded" in line for line in lines):
            assert time.monotonic() < deadline, b"".join(lines).decode()[-2000:]
            time.sleep(0.1)
        (overrides / "ack.en.txt").write_text("{% block subject %}{{ broken {% endblock %}")
        daemon.send_signal(signal.SIGHUP)
        while not any(b"templates.reload_failed" in line for line in lines):
            assert time.monotonic() < deadline, b"".join(lines).decode()[-2000:]
            time.sleep(0.1)
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.sendmail("a@customer.nl", ["support@example.com"], make_mail())
        maildir = tmp_path / "var" / "outbox-maildir" / "new"
        while not any(b"Herladen" in p.read_bytes() for p in maildir.glob("*")):
            assert time.monotonic() < deadline + 20, "the reloaded template was not used"
            time.sleep(0.2)
    finally:
        assert stop_daemon(daemon) == 0
