"""Benchmark: how fast the command line starts, and how much memory a command takes.

Runs each command 10 times as a fresh process and prints the median wall time and
the median peak RSS (that process's own, from wait4), beside ``python -c pass`` on the
same interpreter, measured in the same run:

- ``mailgate --help``: the parser alone;
- ``mailgate check``: the configuration, the templates;
- ``mailgate ingest``: one mail into a SQLite desk made for the run (the MTA pipe:
  a process per mail), each run a different mail.

Goals (on a quiet machine): ``--help`` <= 0.3 s; ``ingest`` <= 0.8 s and <= 60 MB.

    .venv/bin/python bench/startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.mails import make_mail  # noqa: E402

MAILGATE = [sys.executable, "-m", "mailgate"]


def measure(
    argv: list[str], *, stdin: bytes = b"", cwd: Path, env: dict[str, str]
) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one run of ``argv``; fails loudly when it fails."""
    started = time.perf_counter()
    process = subprocess.Popen(
        argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(stdin)
    process.stdin.close()
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    assert process.stderr is not None
    errors = process.stderr.read()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {process.returncode}\n{output!r}\n{errors!r}")
    return seconds, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailgate-startup-") as tmp:
        desk = Path(tmp)
        (desk / "config.toml").write_text((ROOT / "config.toml").read_text())
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
        env["MAILGATE_SECRET"] = "startup-bench-secret-0123456789"
        measure([*MAILGATE, "init"], cwd=desk, env=env)  # the desk: schema, secret
        cases: list[tuple[str, list[str], object]] = [
            ("python -c pass", [sys.executable, "-c", "pass"], None),
            ("mailgate --help", [*MAILGATE, "--help"], None),
            ("mailgate check", [*MAILGATE, "check"], None),
            ("mailgate ingest", [*MAILGATE, "ingest"], "mail"),
        ]
        print(
            f"{'command':<20} {'median s':>9} {'min s':>7} {'median MB':>10}   ({args.runs} runs)"
        )
        for label, argv, stdin in cases:
            runs = []
            for n in range(args.runs):
                data = make_mail(subject=f"Startup {n}") if stdin else b""
                runs.append(measure(argv, stdin=data, cwd=desk, env=env))
            seconds = [s for s, _ in runs]
            memory = [m for _, m in runs]
            print(
                f"{label:<20} {statistics.median(seconds):9.3f} {min(seconds):7.3f} "
                f"{statistics.median(memory):10.1f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
