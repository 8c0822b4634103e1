"""Benchmark: hostile mail through `mailgate run`'s SMTP listener.

Mutated copies of the corpus's real mails (random splices of NUL, 8-bit bytes,
broken encoded words, stray boundaries and CRLFs, deletions, duplications and
bit flips, mostly in the header block; tests/hostile.py) plus the header classes
that once made the parser raise, sent over 4 connections to a daemon on SQLite.
Printed: mails sent, accepted (250) and refused (with the reply code), what
became of the accepted ones (tickets created, appended, system mail, held,
quarantined by cause), the daemon's peak RSS, the slowest mail's processing time
and the mean CPU time per mail.

    .venv/bin/python bench/hostile.py [--mails 5000] [--connections 4]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import smtplib
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import CORPUS, free_port, write_config_file  # noqa: E402
from tests.hostile import HEADER_CLASSES, as_delivered, corpus_raws, mutations  # noqa: E402
from tests.test_daemon import start_daemon, stop_daemon  # noqa: E402


def _proc(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) // 1024
    return 0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def send_all(port: int, mails: list[bytes], connections: int) -> Counter[str]:
    """Send every mail over ``connections`` reused connections; count the replies."""
    replies: Counter[str] = Counter()
    lock = threading.Lock()
    queue = list(enumerate(mails))

    def worker() -> None:
        client: smtplib.SMTP | None = None
        while True:
            with lock:
                if not queue:
                    break
                _, raw = queue.pop()
            try:
                if client is None:
                    client = smtplib.SMTP("127.0.0.1", port, timeout=60)
                    client.ehlo("fuzzer.example.org")
                client.sendmail("fuzzer@example.org", ["support@example.com"], raw)
                code = "250"
            except smtplib.SMTPResponseException as exc:
                code = str(exc.smtp_code)
            except (smtplib.SMTPException, OSError) as exc:
                code = type(exc).__name__
                client = None
            with lock:
                replies[code] += 1
            if code not in ("250",) and client is not None:
                try:
                    client.rset()
                except (smtplib.SMTPException, OSError):
                    client = None
        if client is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                client.quit()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return replies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    seeds = [as_delivered(raw) for raw in corpus_raws(CORPUS)]
    if not seeds:
        raise SystemExit(f"the corpus is missing at {CORPUS}")
    mails = list(HEADER_CLASSES.values())
    mails += list(mutations(seeds, args.mails - len(mails), seed=2026))
    with tempfile.TemporaryDirectory(prefix="mailgate-hostile-") as directory:
        base = Path(directory)
        port = free_port()
        config = write_config_file(
            base / "config.toml",
            f"sqlite+aiosqlite:///{base / 'mailgate.db'}",
            general={"data_dir": "var", "log_level": "info", "log_format": "json"},
            smtp={
                "port": port,
                "messages_per_ip_per_minute": 10**6,
                "connections_per_ip_per_minute": 10**6,
            },
        )
        daemon, log = start_daemon(config)
        cpu_before = _cpu_seconds(daemon.pid)
        started = time.monotonic()
        try:
            replies = send_all(port, mails, args.connections)
            sent_in = time.monotonic() - started
            while True:
                with sqlite3.connect(base / "mailgate.db") as db:
                    pending = db.execute(
                        "SELECT count(*) FROM spool WHERE state = 'pending'"
                    ).fetchone()[0]
                if not pending:
                    break
                time.sleep(0.5)
            done_in = time.monotonic() - started
            cpu = _cpu_seconds(daemon.pid) - cpu_before
            peak = _proc(daemon.pid, "VmHWM")
        finally:
            code = stop_daemon(daemon)
        with sqlite3.connect(base / "mailgate.db") as db:
            outcomes = Counter(
                dict(db.execute("SELECT coalesce(outcome, state), count(*) FROM spool GROUP BY 1"))
            )
            causes = Counter(
                (error or "").split(":", 1)[0]
                for (error,) in db.execute("SELECT error FROM spool WHERE state = 'quarantined'")
            )
            tickets = db.execute("SELECT count(*) FROM tickets").fetchone()[0]
        times = []
        for line in b"".join(log).splitlines():
            if b'"mail.routed"' in line:
                times.append(float(json.loads(line).get("ms", 0.0)))
    accepted = replies.get("250", 0)
    print(f"mails sent        {len(mails)} in {sent_in:.1f} s over {args.connections} connections")
    print(f"accepted (250)    {accepted}")
    print(f"refused           {dict(sorted((k, v) for k, v in replies.items() if k != '250'))}")
    stored = sum(outcomes.values())
    print(f"duplicates        {accepted - stored} (mutations that left Message-ID and body alone)")
    print(f"outcomes          {dict(sorted(outcomes.items()))}")
    print(f"tickets           {tickets}")
    print(f"quarantined       {sum(causes.values())} by cause {dict(causes)}")
    print(f"peak RSS          {peak} MiB")
    if times:
        print(
            f"processing        slowest {max(times):.0f} ms, median {statistics.median(times):.1f}"
            f" ms, {len(times)} mails routed, all done {done_in:.1f} s after the first"
        )
    print(f"CPU per mail      {cpu * 1000 / max(len(times), 1):.1f} ms (daemon, whole run)")
    print(f"daemon exit       {code}")


if __name__ == "__main__":
    main()
