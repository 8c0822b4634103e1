"""Benchmark: more instances on PostgreSQL, and a big database.

Part 1, in one run with the same client (8 connections, ~5 KB mails, spread
round-robin over the instances' SMTP ports): mails/s acknowledged and mails/s
into tickets (until every stored mail is processed) for 1 instance on SQLite
(the baseline) and 1, 2 and 3 `mailgate run` instances on one PostgreSQL.

Part 2: the intake path (store + parse + route + persist, in process, as in
bench/ingest.py; half the mails reply to existing tickets by their token) on
PostgreSQL with 1,000 and with 1,000,000 tickets already stored. Goal: the big
database keeps >= 90 % of the small one's rate, because every lookup on the hot
path is indexed.

    .venv/bin/python bench/scale.py [--mails 1500] [--big 1000000] [--intake 600]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from smtp import drive, mail, start_mailgate

from mailgate.app import build_app
from mailgate.config import parse_config
from mailgate.intake.spool import Received
from mailgate.log import configure
from mailgate.progress import Steps
from tests.conftest import SUPPORT, config_document, free_port
from tests.mails import make_mail

SECRET = "bench-secret-0123456789"


class Cluster:
    """A throwaway PostgreSQL cluster (tests/support/pg-cluster.sh)."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="mailgate-scale-pg-"))
        self.directory.chmod(0o755)
        self.port = free_port()
        self.dsn = self._run("start").splitlines()[-1]

    def _run(self, command: str) -> str:
        return subprocess.run(
            ["bash", str(SUPPORT / "pg-cluster.sh"), command, str(self.directory / "c"),
             str(self.port)],
            check=True, capture_output=True, text=True, timeout=120,
        ).stdout.strip()  # fmt: skip

    async def database(self, name: str) -> str:
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()
        return self.dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + (
            f"/{name}"
        )

    def stop(self) -> None:
        subprocess.run(
            ["bash", str(SUPPORT / "pg-cluster.sh"), "stop", str(self.directory / "c")],
            check=False, capture_output=True, timeout=60,
        )  # fmt: skip
        shutil.rmtree(self.directory, ignore_errors=True)


async def pending(url: str) -> int:
    if url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(url.split("///", 1)[1]) as conn:
            return int(
                conn.execute("SELECT count(*) FROM spool WHERE state='pending'").fetchone()[0]
            )
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM spool WHERE state='pending'"))
    finally:
        await conn.close()


async def run_instances(
    url: str, instances: int, mails: int, connections: int
) -> tuple[float, float]:
    """(mails/s acknowledged, mails/s into tickets) for ``instances`` daemons on ``url``."""
    shared = Path(tempfile.mkdtemp(prefix="mailgate-scale-"))
    ports = [free_port() for _ in range(instances)]
    processes = []
    try:
        for n, port in enumerate(ports):
            directory = shared / f"i{n}"
            directory.mkdir()
            processes.append(
                start_mailgate(directory, port, url, general={"data_dir": str(shared / "var")})
            )
        batch = [mail(i) for i in range(mails)]
        started = time.perf_counter()
        shares = [batch[n::instances] for n in range(instances)]
        await asyncio.gather(
            *(
                drive(port, share, max(1, connections // instances), reuse=True)
                for port, share in zip(ports, shares, strict=True)
            )
        )
        accepted = time.perf_counter() - started
        while await pending(url):  # noqa: ASYNC110 - another process's database
            await asyncio.sleep(0.2)
        finished = time.perf_counter() - started
        return mails / accepted, mails / finished
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=120)
        shutil.rmtree(shared, ignore_errors=True)


FILL = """
INSERT INTO tickets (id, queue, title, type, priority, status, requester, organisation,
    created_at, updated_at, updated_by, version, action_by, approval, quote, sla_consumed)
SELECT g, 'support', 'Oud ticket ' || g, 'question', 'medium', 'closed',
    'klant' || g || '@org' || (g % 5000) || '.nl', 'org' || (g % 5000) || '.nl',
    now(), now(), 'bench', 1, 'nobody', 'none', '', 0
FROM generate_series(1, $1) AS g;
"""
FILL_MESSAGES = """
INSERT INTO messages (ticket_id, direction, kind, from_addr, to_addrs, cc_addrs, subject,
    visible_text, full_text, message_id, in_reply_to, "references", created_at)
SELECT g, 'in', 'customer', 'klant' || g || '@org' || (g % 5000) || '.nl',
    'support@example.com', '', 'Oud ticket ' || g, 'tekst', 'tekst', 'old-' || g || '@bench',
    '', '', now()
FROM generate_series(1, $1) AS g;
"""
FILL_PEOPLE = """
INSERT INTO participants (ticket_id, address, name, role, organisation)
SELECT g, 'klant' || g || '@org' || (g % 5000) || '.nl', '', 'requester',
    'org' || (g % 5000) || '.nl'
FROM generate_series(1, $1) AS g;
"""


async def intake_rate(url: str, existing: int, count: int) -> float:
    """Mails/s through store + process with ``existing`` tickets stored before."""
    directory = Path(tempfile.mkdtemp(prefix="mailgate-scale-intake-"))
    config = parse_config(
        config_document(url, general={"data_dir": "var", "log_level": "error"}),
        name="config.toml",
        base=directory,
        environ={"MAILGATE_SECRET": SECRET},
    )
    app = await build_app(config)
    try:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            for sql in (FILL, FILL_MESSAGES, FILL_PEOPLE):
                await conn.execute(sql, existing)
            await conn.execute(f"SELECT setval('tickets_id_seq', {existing})")
            await conn.execute("ANALYZE")
        finally:
            await conn.close()
        rng = random.Random(7)
        mails = []
        for i in range(count):
            if i % 2:
                number = rng.randint(1, existing)
                mails.append(
                    make_mail(
                        subject=f"RE: {app.codec.subject_tag(number)} Oud ticket",
                        sender=f"klant{number}@org{number % 5000}.nl",
                        message_id=f"<scale-{i}@bench>",
                        references=f"<old-{number}@bench>",
                    )
                )
            else:
                mails.append(
                    make_mail(
                        subject=f"Nieuw {i}",
                        sender=f"nieuw{i}@klant{i % 97}.nl",
                        message_id=f"<scale-{i}@bench>",
                    )
                )
        started = time.perf_counter()
        with Steps(f"intake with {existing:,} tickets stored", count) as steps:
            for raw in mails:
                stored = await app.spool.store(Received(raw, "bench"))
                await app.processor.process(stored.spool_id)
                steps.advance()
        return count / (time.perf_counter() - started)
    finally:
        await app.close()
        shutil.rmtree(directory, ignore_errors=True)


async def main_async(args: argparse.Namespace) -> None:
    configure("error", "console")
    cluster = Cluster()
    try:
        print(f"Part 1: {args.mails} mails of ~5 KB, {args.connections} connections in all")
        print(f"{'setup':<28}{'acknowledged/s':>16}{'into tickets/s':>16}{'vs SQLite':>11}")
        sqlite_dir = Path(tempfile.mkdtemp(prefix="mailgate-scale-sqlite-"))
        try:
            base = await run_instances(
                f"sqlite+aiosqlite:///{sqlite_dir / 'm.db'}", 1, args.mails, args.connections
            )
        finally:
            shutil.rmtree(sqlite_dir, ignore_errors=True)
        print(f"{'SQLite, 1 instance':<28}{base[0]:16.1f}{base[1]:16.1f}{1.0:11.2f}")
        for instances in (1, 2, 3):
            url = await cluster.database(f"scale{instances}")
            rates = await run_instances(url, instances, args.mails, args.connections)
            label = f"PostgreSQL, {instances} instance{'s' if instances > 1 else ''}"
            print(f"{label:<28}{rates[0]:16.1f}{rates[1]:16.1f}{rates[1] / base[1]:11.2f}")
        print(f"\nPart 2: intake of {args.intake} mails (half replies) on PostgreSQL")
        small = await intake_rate(await cluster.database("small"), 1000, args.intake)
        print(f"{'1,000 tickets stored':<28}{small:10.1f} mails/s")
        big = await intake_rate(await cluster.database("big"), args.big, args.intake)
        print(f"{f'{args.big:,} tickets stored':<28}{big:10.1f} mails/s")
        print(f"ratio big/small = {big / small:.2f} (goal >= 0.90)")
    finally:
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mails", type=int, default=1500)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--intake", type=int, default=600)
    asyncio.run(main_async(parser.parse_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
