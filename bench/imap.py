"""Benchmark: drain a 2,000-mail IMAP backlog from a real Dovecot into tickets.

Starts a throwaway Dovecot (the test suite's own), APPENDs the backlog, then
runs mailgate's IMAP poller and worker in one process on SQLite, as `mailgate
run` does. Printed: mails/s until every mail is stored in the spool (and moved
out of INBOX), mails/s until every mail is a ticket, and peak RSS. The
baseline, measured in the same run, is the spine's intake path alone
(store + parse + route + persist, no IMAP) on the same mails.

    .venv/bin/python bench/imap.py [--mails 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from mailgate.app import build_app  # noqa: E402
from mailgate.config import parse_config  # noqa: E402
from mailgate.intake.imap import ImapPoller  # noqa: E402
from mailgate.intake.spool import Received  # noqa: E402
from mailgate.log import configure  # noqa: E402
from mailgate.runners.loop import run  # noqa: E402
from mailgate.store.db import session  # noqa: E402
from tests.intake.test_imap import PASSWORD, USER, Dovecot  # noqa: E402
from tests.mails import make_mail  # noqa: E402


def config_for(directory: Path, port: int | None):  # type: ignore[no-untyped-def]
    document: dict[str, object] = {
        "general": {"data_dir": "var", "log_level": "error", "log_format": "json"},
        "database": {"url": "sqlite+aiosqlite:///mailgate.db"},
        "smtp": {"enabled": False},
        "queues": [
            {
                "name": "support",
                "addresses": ["support@example.com"],
                "team_address": "team@example.com",
            }
        ],
    }
    if port is not None:
        document["imap"] = [
            {
                "name": "support",
                "host": "127.0.0.1",
                "port": port,
                "security": "none",
                "username": USER,
                "password_env": "BENCH_IMAP_PASSWORD",
                "poll_interval": 1.0,
            }
        ]
    environ = {"MAILGATE_SECRET": "bench-secret-0123456789", "BENCH_IMAP_PASSWORD": PASSWORD}
    return parse_config(document, name="bench.toml", base=directory, environ=environ)


async def count(app, sql: str) -> int:  # type: ignore[no-untyped-def]
    async with session(app.engine) as s:
        return int((await s.exec(text(sql))).one()[0])


async def drain(directory: Path, server: Dovecot, total: int) -> tuple[float, float]:
    app = await build_app(config_for(directory, server.port))
    stop = asyncio.Event()
    worker_stop = asyncio.Event()
    poller = ImapPoller(app.config.imap[0], spool=app.spool, engine=app.engine, clock=app.clock)
    started = time.perf_counter()
    tasks = [
        asyncio.create_task(poller.run(stop)),
        asyncio.create_task(run(app.processor, worker_stop, app.wake, 1.0)),
    ]
    stored_at = 0.0
    try:
        while True:
            await asyncio.sleep(0.2)
            if not stored_at and await count(app, "SELECT count(*) FROM spool") >= total:
                stored_at = time.perf_counter() - started
            if await count(app, "SELECT count(*) FROM tickets") >= total:
                return stored_at, time.perf_counter() - started
    finally:
        stop.set()
        worker_stop.set()
        await asyncio.gather(*tasks)
        await app.close()


async def baseline(directory: Path, mails: list[bytes]) -> float:
    app = await build_app(config_for(directory, None))
    started = time.perf_counter()
    for raw in mails:
        stored = await app.spool.store(Received(raw, "bench"))
        await app.processor.process(stored.spool_id)
    elapsed = time.perf_counter() - started
    await app.close()
    return len(mails) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mails", type=int, default=2000)
    args = parser.parse_args()
    configure("error", "json")
    os.environ["MAIL_FSYNC"] = "never"
    body = "\n".join("printer factuur inloggen rooster export koppeling" for _ in range(80))
    mails = [
        make_mail(subject=f"backlog {i}", body=body, message_id=f"<backlog-{i}@customer.nl>")
        for i in range(args.mails)
    ]
    server = Dovecot()
    server.start()
    try:
        began = time.perf_counter()
        server.append(mails)
        append_rate = len(mails) / (time.perf_counter() - began)
        with tempfile.TemporaryDirectory(prefix="mailgate-bench-") as tmp:
            (Path(tmp) / "imap").mkdir()
            (Path(tmp) / "base").mkdir()
            stored_s, tickets_s = asyncio.run(drain(Path(tmp) / "imap", server, len(mails)))
            base_rate = asyncio.run(baseline(Path(tmp) / "base", mails))
        left = server.count("INBOX")
    finally:
        server.cleanup()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"backlog:                    {len(mails)} mails of ~{len(mails[0]) // 1024} KB "
        f"(APPEND {append_rate:.0f}/s)"
    )
    print(f"IMAP -> spool (stored, moved): {len(mails) / stored_s:8.1f} mails/s ({stored_s:.1f} s)")
    print(
        f"IMAP -> tickets:               {len(mails) / tickets_s:8.1f} mails/s ({tickets_s:.1f} s)"
    )
    print(f"intake path alone (baseline):  {base_rate:8.1f} mails/s")
    print(f"ratio tickets/baseline:        {len(mails) / tickets_s / base_rate:8.3f}")
    print(f"left in INBOX:                 {left}")
    print(f"peak RSS:                      {peak_mb:8.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
