"""Every benchmark under ``bench/`` runs to its end on a few mails: a benchmark that no
longer runs measures nothing (the suite asserts no timing; the figures are printed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_SERVERS, _pg_available
from tests.intake.test_imap import DOVECOT

BENCH = Path(__file__).resolve().parents[1] / "bench"

# (script and small arguments, a line its output must have, the server it needs)
RUNS = [
    (["ingest.py", "--mails", "60"], "mails/s into tickets", None),
    (["ingest.py", "--mails", "60", "--processes", "0"], "mails/s into tickets", None),
    (["ingest.py", "--mails", "60", "--postgresql"], "PostgreSQL's CPU", "postgresql"),
    (["imap.py", "--mails", "30"], "IMAP -> tickets", "dovecot"),
    (
        ["smtp.py", "--mails", "40", "--connections", "2", "--repeat", "1"],
        "ratio mailgate/sink",
        None,
    ),
    (["hostile.py", "--mails", "50", "--connections", "2"], "daemon exit", None),
    (["hygiene.py"], "visible texts", None),
    (["startup.py", "--runs", "1"], "mailgate ingest", None),
    (["web.py", "--tickets", "500", "--sqlite"], "every page", None),
    (
        ["scale.py", "--mails", "30", "--skip-history", "--rounds", "1", "--instances", "1"],
        "PostgreSQL, 1 instance, ",  # and on cores of its own
        "postgresql",
    ),
    (
        [
            "scale.py",
            "--mails",
            "60",
            "--big",
            "2000",
            "--big-sqlite",
            "2000",
            "--intake",
            "40",
            "--connections",
            "2",
            "--skip-instances",
            "--repeat",
            "1",
        ],
        "goal >= 0.90",
        "postgresql",
    ),
]


@pytest.mark.parametrize(("args", "expected", "server"), RUNS, ids=lambda v: None)
def test_the_benchmark_runs_to_its_end(args: list[str], expected: str, server: str | None) -> None:
    missing = {
        "postgresql": not _pg_available(),
        "dovecot": not DOVECOT.exists(),
    }.get(server or "", False)
    if missing:
        if REQUIRE_SERVERS:
            pytest.fail(f"{server} is missing and MAILGATE_REQUIRE_SERVERS=1")
        pytest.skip(f"{server} is missing")
    done = subprocess.run(
        [sys.executable, str(BENCH / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert expected in done.stdout, done.stdout[-2000:]
