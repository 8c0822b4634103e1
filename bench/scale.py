"""Benchmark: more instances on PostgreSQL, and a big database.

Part 1, in one run with the same client (8 connections, ~5 KB mails, spread
round-robin over the instances' SMTP ports): mails/s acknowledged and mails/s
into tickets (until every stored mail is processed) for 1 instance on SQLite
(the baseline) and 1, 2 and 3 `mailgate run` instances on one PostgreSQL; each setup
``--rounds`` times, the setups in turn, and the medians compared. Each instance runs
the config's two worker processes, so that one instance alone keeps two cores busy;
``--processes 1`` gives each instance one. The PostgreSQL instances run twice: sharing
all of the machine's cores, and each on cores of its own (the machine's cores divided
by ``--instances``, at least one; the first again when they run out), as instances on
machines of their own would, PostgreSQL and the client on any: whether a second
instance adds what a second machine brings, or only coordination.

Part 2: the intake path (store + parse + route + persist, in process, as in
bench/ingest.py; half the mails reply by their token to the newest 1,000 tickets, the
same active desk with either history; ``--replies-anywhere``: to tickets of the whole
history, each one whose pages no cache holds) with a history of 1,000 tickets and of
100,000 (SQLite) and 1,000,000 (PostgreSQL), each with 3 messages, 4 timers, 2 sent
outbox mails (the newest month with their bytes), 2 cap records and 3 events
(PostgreSQL sized for it: ``SERVER``). Goal: the big history keeps >= 90 % of the small
one's rate, because every query of the worker is indexed (tests/store/test_repos.py).
Each history is filled once; every run takes a fresh copy of it, and ``--repeat`` pairs
of runs alternate which size goes first (this machine's pace drifts over minutes): the
ratio printed is the median of the pairs', beside the ratio of CPU time per mail. On
SQLite the search index's merges, which the daemon leaves to a quiet moment
(store/search.py), are done after each run and their CPU printed beside it, and in a
second CPU ratio.

    .venv/bin/python bench/scale.py [--mails 1500] [--big 1000000] [--big-sqlite 100000]
                                    [--intake 600] [--repeat 3] [--rounds 3]
                                    [--instances 3] [--processes N]
                                    [--skip-instances] [--skip-history]
                                    [--replies-anywhere]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import Intake, through_intake
from smtp import drive, mail, start_mailgate

from mailgate.app import build_app
from mailgate.cli.progress import Steps
from mailgate.config import Config, parse_config
from mailgate.log import configure
from mailgate.store.search import merge_some
from tests.conftest import SUPPORT, config_document, free_port
from tests.mails import make_mail

SECRET = "bench-secret-0123456789"


# What a server that holds a desk of a million tickets is given; the test suite's
# defaults (tests/support/pg-cluster.sh) are for small databases.
SERVER = {
    "shared_buffers": "1GB",
    "random_page_cost": "1.1",  # data in RAM or on SSD
    "effective_cache_size": "4GB",
    "work_mem": "16MB",
}


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

    async def database(self, name: str, template: str = "") -> str:
        """A new database ``name``: empty, or a copy of the database ``template``."""
        copy = f" TEMPLATE {template} STRATEGY FILE_COPY" if template else ""
        await self.execute(
            f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}{copy}"
        )
        return self.dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + (
            f"/{name}"
        )

    async def drop(self, url: str) -> None:
        """Remove the database (or SQLite file) at ``url``."""
        if url.startswith("sqlite"):
            for path in Path(url.split("///", 1)[1]).parent.glob(f"{url.rsplit('/', 1)[1]}*"):
                path.unlink()
            return
        await self.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")

    async def execute(self, *statements: str) -> None:
        """Run ``statements`` in turn on a connection of the server's own."""
        conn = await asyncpg.connect(self.dsn)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    def cpu_seconds(self) -> float:
        """CPU time the server's processes (the postmaster, its backends and helpers) have
        used so far; a difference of two readings is the server's share of a run."""
        found = next(self.directory.rglob("postmaster.pid"), None)
        if found is None:
            return 0.0
        postmaster = int(found.read_text().split()[0])
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:  # a process that ended meanwhile
                continue
            pid = int(stat.parent.name)
            if pid == postmaster or int(fields[1]) == postmaster:  # fields[1]: the parent
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / tick

    async def settle(self) -> None:
        """Write what the server holds dirty out now (``CHECKPOINT``) and the kernel's dirty
        pages too: else a checkpoint of the part before lands in the runs that follow."""
        await self.execute("CHECKPOINT")
        os.sync()

    async def tune(self) -> None:
        """The settings of a server sized for a big desk (``SERVER``): set, and the server
        restarted for ``shared_buffers``."""
        await self.execute(*(f"ALTER SYSTEM SET {n} = '{v}'" for n, v in SERVER.items()))
        await asyncio.to_thread(self._run, "stop")
        await asyncio.to_thread(self._run, "start")

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
    url: str,
    instances: int,
    mails: int,
    connections: int,
    workers: int | None = None,
    cores: int = 0,
) -> tuple[float, float]:
    """(mails/s acknowledged, mails/s into tickets) for ``instances`` daemons on ``url``,
    each with ``workers`` worker processes (None: the config's); with ``cores``, each
    instance on that many cores of its own (``own_cores``)."""
    shared = Path(tempfile.mkdtemp(prefix="mailgate-scale-"))
    ports = [free_port() for _ in range(instances)]
    processes = []
    try:
        for n, port in enumerate(ports):
            directory = shared / f"i{n}"
            directory.mkdir()
            worker = {} if workers is None else {"worker": {"processes": workers}}
            general = {"data_dir": str(shared / "var")}
            cpus = own_cores(n, cores) if cores else None
            processes.append(start_mailgate(directory, port, url, cpus, general=general, **worker))
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


def own_cores(n: int, cores: int) -> set[int]:
    """The cores instance ``n`` runs on when each has ``cores`` of its own, as on a
    machine of its own: the next ones in turn, the first again when they run out."""
    usable = sorted(os.sched_getaffinity(0))
    return {usable[(n * cores + i) % len(usable)] for i in range(cores)}


# A realistic history per ticket: 3 messages (the customer's, our acknowledgment, an
# agent's answer), the 2 received mails among them in the spool with their raw bytes (a
# mail under [general] files_from stays in the database), a participant, 4 timers
# (2 fired, 2 cancelled), 2 sent outbox mails, 2 cap records and 3 events. The outbox
# keeps the bytes of the newest 3 % of its mails (a month's worth; [outbound]
# keep_sent_days trims the rest). {n} is the number of tickets, {blob} a 3 KB binary
# and {sha} a 64-character text of the dialect; the same SQL runs on both databases.
SERIES = "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < {n})"
WHEN = "'2025-06-01 09:00:00.000000'"
HISTORY = [
    """INSERT INTO tickets (id, queue, title, type, priority, status, requester, organisation,
        created_at, updated_at, updated_by, version, action_by, approval, quote, sla_consumed)
    {series} SELECT x, 'support', 'Oud ticket ' || x, 'question', 'medium', 'closed',
        'klant' || x || '@org' || (x % 5000) || '.nl', 'org' || (x % 5000) || '.nl',
        {when}, {when}, 'bench', 1, 'nobody', 'none', '', 0 FROM g""",
    """INSERT INTO messages (ticket_id, direction, kind, from_addr, to_addrs, cc_addrs,
        subject, visible_text, full_text, message_id, in_reply_to, "references", created_at)
    {series} SELECT x, d, k, f, 'support@example.com', '', 'Oud ticket ' || x,
        'tekst van het bericht', 'tekst van het bericht', m || x || '@bench', '', '', {when}
    FROM g, (SELECT 'in' AS d, 'customer' AS k, 'klant@org.nl' AS f, 'old-' AS m
             UNION ALL SELECT 'out', 'system', 'support@example.com', 'ack-'
             UNION ALL SELECT 'out', 'agent', 'support@example.com', 'answer-') AS kinds""",
    """INSERT INTO participants (ticket_id, address, name, role, organisation)
    {series} SELECT x, 'klant' || x || '@org' || (x % 5000) || '.nl', '', 'requester',
        'org' || (x % 5000) || '.nl' FROM g""",
    """INSERT INTO timers (ticket_id, "trigger", status, due_at, state, armed_at, fired_at)
    {series} SELECT x, t, 'new', {when}, s, {when}, NULL FROM g,
        (SELECT 'sla_answer_warning' AS t, 'cancelled' AS s
         UNION ALL SELECT 'sla_solve_warning', 'cancelled'
         UNION ALL SELECT 'remind', 'fired' UNION ALL SELECT 'archive', 'fired') AS ts""",
    """INSERT INTO outbox (ticket_id, kind, recipients, envelope_from, message_id, raw, state,
        attempts, next_attempt_at, created_at, sent_at)
    {series} SELECT x, k, 'klant' || x || '@org' || (x % 5000) || '.nl', 'bounces@example.com',
        m || x || '@bench', CASE WHEN x > {recent} THEN {blob} ELSE {empty} END, 'sent', 1,
        {when}, {when}, {when} FROM g,
        (SELECT 'ack' AS k, 'ack-' AS m UNION ALL SELECT 'agent_reply', 'answer-') AS ks""",
    """INSERT INTO auto_answers (outbox_id, kind, mailbox, domain, subject, ticket_id, at)
    {series} SELECT x, 'ack', 'klant' || x || '@org' || (x % 5000) || '.nl',
        'org' || (x % 5000) || '.nl', 'oud ticket', x, {when}
    FROM g, (SELECT 1 UNION ALL SELECT 2) AS two""",
    """INSERT INTO spool (id, dedupe_key, raw_sha256, size, message_id, source, envelope_from,
        envelope_to, received_at, state, attempts, next_attempt_at, outcome, ticket_id,
        processed_at)
    {series} SELECT 2 * x - o, 'old-' || (2 * x - o), {sha}, 3000, m || x || '@bench', 'smtp',
        f, 'support@example.com', {when}, 'done', 1, {when}, c, x, {when}
    FROM g, (SELECT 1 AS o, 'old-' AS m, 'klant@org.nl' AS f, 'created' AS c
             UNION ALL SELECT 0, 'agent-', 'agent@example.com', 'appended') AS two""",
    """INSERT INTO spool_raw (spool_id, raw)
    {series} SELECT 2 * x - o, {blob} FROM g, (SELECT 1 AS o UNION ALL SELECT 0) AS two""",
    """INSERT INTO events (ticket_id, at, actor, kind, field, old, new, detail)
    {series} SELECT x, {when}, 'bench', e, NULL, NULL, 'v' || x, NULL FROM g,
        (SELECT 'created' AS e UNION ALL SELECT 'message_added'
         UNION ALL SELECT 'status_changed') AS es""",
]


# {blob}, {empty} and {sha} in each dialect
DIALECT = {
    "sqlite": ("zeroblob(3000)", "zeroblob(0)", "printf('%064d', 2 * x - o)"),
    "postgresql": (
        "convert_to(repeat('x', 3000), 'UTF8')",
        "convert_to('', 'UTF8')",
        "lpad((2 * x - o)::text, 64, '0')",
    ),
}


def history_sql(existing: int, dialect: str) -> list[str]:
    """``HISTORY``'s statements for ``existing`` tickets in ``dialect``."""
    blob, empty, sha = DIALECT[dialect]
    series = SERIES.format(n=existing)
    recent = int(existing * 0.97)
    return [
        sql.format(series=series, when=WHEN, blob=blob, empty=empty, sha=sha, recent=recent)
        for sql in HISTORY
    ]


async def fill(url: str, existing: int) -> None:
    """Write ``existing`` tickets of history (``HISTORY``) straight into the database."""
    if url.startswith("sqlite"):
        # In a process of its own: a daemon meets its history on disk, not in the heap of
        # the process that has just written it (pages the kernel would zero again when the
        # intake reuses them, counted as the intake's CPU).
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            await asyncio.wrap_future(pool.submit(fill_sqlite, url.split("///", 1)[1], existing))
        return
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        for sql in history_sql(existing, "postgresql"):
            await conn.execute(sql)
        for table in ("tickets", "outbox", "spool"):
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def fill_sqlite(path: str, existing: int) -> None:
    """``fill`` on SQLite."""
    import sqlite3

    with sqlite3.connect(path) as conn:
        for sql in history_sql(existing, "sqlite"):
            conn.execute(sql)
        conn.execute(f"UPDATE sqlite_sequence SET seq = {existing} WHERE name = 'tickets'")
        conn.execute(f"UPDATE sqlite_sequence SET seq = {2 * existing} WHERE name = 'spool'")
        conn.execute("ANALYZE")


async def template(url: str, existing: int) -> None:
    """A database at ``url`` as mailgate leaves it at its first start, with ``existing``
    tickets of history; runs take copies of it (``copy_of``)."""
    directory = Path(tempfile.mkdtemp(prefix="mailgate-scale-template-"))
    try:
        await (await build_app(bench_config(url, directory))).close()
        await fill(url, existing)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def copy_of(cluster: Cluster, url: str, name: str) -> str:
    """A fresh copy of the template database at ``url``, named ``name``, on disk: the
    kernel is not left writing a copy's pages back during the run that follows (its
    fsyncs would wait for them, and the big history's copy is a hundred times the small
    one's). PostgreSQL's ``FILE_COPY`` syncs the files it copies itself."""
    if url.startswith("sqlite"):
        source = Path(url.split("///", 1)[1])
        copy = source.with_name(f"{name}.db")
        shutil.copyfile(source, copy)
        with copy.open("rb") as written:
            os.fsync(written.fileno())
        return f"sqlite+aiosqlite:///{copy}"
    return await cluster.database(name, template=url.rsplit("/", 1)[1])


def bench_config(url: str, directory: Path) -> Config:
    return parse_config(
        config_document(url, general={"data_dir": "var", "log_level": "error"}),
        name="config.toml",
        base=directory,
        environ={"MAILGATE_SECRET": SECRET},
    )


# The replies go to the newest this many tickets of either history: the same active desk,
# with 1,000 tickets or a million behind it, so that the ratio weighs the history itself.
ACTIVE = 1000


async def intake_rate(url: str, existing: int, count: int, anywhere: bool = False) -> Intake:
    """The intake (as bench/ingest.py runs it) on a copy of a history of ``existing``
    tickets (``template``); ``anywhere``: the replies to tickets of the whole history."""
    directory = Path(tempfile.mkdtemp(prefix="mailgate-scale-intake-"))
    app = await build_app(bench_config(url, directory))
    try:
        # Each reply to a ticket of its own, with either history: a second reply to a ticket
        # another reply has reopened already is cheaper work (with 1,000 tickets, one in
        # seven of 300 replies would be one).
        first = 1 if anywhere else max(1, existing - ACTIVE + 1)
        replies = random.Random(7).sample(range(first, existing + 1), min(count // 2, existing))
        mails = []
        for i in range(count):
            if i % 2:
                number = replies[(i // 2) % len(replies)]
                mails.append(
                    make_mail(
                        subject=f"RE: {app.codec.subject_tag(number)} Oud ticket",
                        sender=f"klant{number}@org{number % 5000}.nl",
                        message_id=f"<scale-{i}@bench>",
                        references=f"<ack-{number}@bench>",
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
        with Steps(f"intake with {existing:,} tickets stored", count) as steps:
            run = await through_intake(app, mails, steps)
    finally:
        await app.close()
        shutil.rmtree(directory, ignore_errors=True)
    if url.startswith("sqlite"):
        run.deferred_seconds = merge_all(url.split("///", 1)[1])
    return run


def merge_all(path: str) -> float:
    """Merge SQLite's search index as the daemon does in a quiet moment; its CPU seconds."""
    started = time.process_time()
    with sqlite3.connect(path, isolation_level=None) as conn:
        while merge_some(conn):
            pass
    return time.process_time() - started


def history(label: str, runs: list[tuple[Intake, Intake]], existing: int) -> None:
    """Each pair of runs (1,000 tickets, ``existing``), and the median of their ratios."""
    for small, big in runs:
        for name, run in (("1,000 tickets of history", small), (f"{existing:,} tickets", big)):
            actions = ", ".join(f"{k} {v}" for k, v in sorted(run.counts.items()))
            later = f" + {run.deferred_ms:.2f} in a quiet moment" if run.deferred_seconds else ""
            print(
                f"  {label}, {name:<26}{run.rate:8.1f} mails/s{run.cpu_ms:7.2f} ms CPU/mail"
                f"{later} ({actions})"
            )
    ratios = [big.rate / small.rate for small, big in runs]
    by_cpu = [small.cpu_ms / big.cpu_ms for small, big in runs]
    print(
        f"  ratio = {statistics.median(ratios):.2f} (goal >= 0.90; the median of "
        f"{', '.join(f'{r:.2f}' for r in ratios)}); by CPU per mail "
        f"{statistics.median(by_cpu):.2f}"
    )
    if any(big.deferred_seconds for _, big in runs):
        total = [
            (small.cpu_ms + small.deferred_ms) / (big.cpu_ms + big.deferred_ms)
            for small, big in runs
        ]
        print(f"  by CPU per mail with the quiet moment's merges {statistics.median(total):.2f}")


async def compare(
    cluster: Cluster, label: str, templates: tuple[str, str], big: int, args: argparse.Namespace
) -> None:
    """``args.repeat`` pairs of runs on fresh copies of the two histories, alternating
    which goes first (the machine's pace drifts): the pairs' ratios and their median."""
    runs: list[tuple[Intake, Intake]] = []
    for n in range(args.repeat):
        measured: dict[int, Intake] = {}
        for size in (1000, big) if n % 2 == 0 else (big, 1000):
            url = await copy_of(cluster, templates[size != 1000], f"run{n}_{size}")
            measured[size] = await intake_rate(url, size, args.intake, args.replies_anywhere)
            await cluster.drop(url)
        runs.append((measured[1000], measured[big]))
    history(label, runs, big)


async def instances_part(cluster: Cluster, args: argparse.Namespace) -> None:
    """Each setup ``--rounds`` times, the setups in turn (the machine's pace drifts over
    minutes): the runs' rates and, compared, their medians."""
    each = "the config's" if args.processes is None else str(args.processes)
    print(
        f"Part 1: {args.mails} mails of ~5 KB, {args.connections} connections in all; "
        f"worker processes an instance: {each}"
    )
    # (instances, cores of its own each): 0 instances is SQLite, one instance; 0 cores, the
    # instances share all of the machine's; then each instance on cores of its own.
    cores = max(1, len(os.sched_getaffinity(0)) // args.instances)
    counts = range(1, args.instances + 1)
    setups = [(0, 0), *((n, 0) for n in counts), *((n, cores) for n in counts)]
    runs: dict[tuple[int, int], list[tuple[float, float]]] = {s: [] for s in setups}
    for r in range(args.rounds):
        for n, own in setups:
            if n == 0:
                work = Path(tempfile.mkdtemp(prefix="mailgate-scale-sqlite-"))
                url = f"sqlite+aiosqlite:///{work / 'm.db'}"
            else:
                url = await cluster.database(f"scale{n}_{own}_{r}")
            try:
                runs[n, own].append(
                    await run_instances(
                        url, max(n, 1), args.mails, args.connections, args.processes, own
                    )
                )
            finally:
                if n == 0:
                    shutil.rmtree(work, ignore_errors=True)
                else:
                    await cluster.drop(url)
    print(f"{'setup':<40}{'acknowledged/s':>16}{'into tickets/s':>16}{'vs SQLite':>11}  runs")
    base = statistics.median(t for _, t in runs[0, 0])
    for n, own in setups:
        label = "SQLite, 1 instance" if n == 0 else f"PostgreSQL, {n} instance{'s' * (n > 1)}"
        if own:
            label += f", {own} core{'s' * (own > 1)} each"
        acked = statistics.median(a for a, _ in runs[n, own])
        into = statistics.median(t for _, t in runs[n, own])
        each = ", ".join(f"{t:.1f}" for _, t in runs[n, own])
        print(f"{label:<40}{acked:16.1f}{into:16.1f}{into / base:11.2f}  {each}")


async def history_part(cluster: Cluster, args: argparse.Namespace) -> None:
    to = "tickets of the whole history" if args.replies_anywhere else f"the newest {ACTIVE:,}"
    print(f"\nPart 2: intake of {args.intake} mails (half replies, to {to}) with a history")
    work = Path(tempfile.mkdtemp(prefix="mailgate-scale-sqlite-"))
    try:
        small, big = (f"sqlite+aiosqlite:///{work / name}" for name in ("s.db", "b.db"))
        await template(small, 1000)
        await template(big, args.big_sqlite)
        await compare(cluster, "SQLite", (small, big), args.big_sqlite, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    await cluster.tune()  # a server sized for the big history, as bench/web.py's
    small, big = await cluster.database("small"), await cluster.database("big")
    await template(small, 1000)
    await template(big, args.big)
    await compare(cluster, "PostgreSQL", (small, big), args.big, args)


async def main_async(args: argparse.Namespace) -> None:
    configure("error", "console")
    cluster = Cluster()
    try:
        if not args.skip_instances:
            await instances_part(cluster, args)
        if not args.skip_history:
            await cluster.settle()  # the instances' writes out before the history's runs
            await history_part(cluster, args)
    finally:
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mails", type=int, default=1500)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--big-sqlite", type=int, default=100_000)
    parser.add_argument("--skip-instances", action="store_true")
    parser.add_argument("--skip-history", action="store_true")
    parser.add_argument("--intake", type=int, default=600)
    parser.add_argument(
        "--replies-anywhere",
        action="store_true",
        help="the history's replies to tickets of the whole history, not the newest 1,000: "
        "each to a ticket whose pages no cache holds",
    )
    parser.add_argument("--repeat", type=int, default=3, help="pairs of history runs")
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs of each instances setup (median printed)"
    )
    parser.add_argument("--instances", type=int, default=3, help="the most instances run")
    parser.add_argument(
        "--processes",
        type=int,
        help="[worker] processes of each instance (default: the config's, 2): with 1, "
        "one instance leaves a core to a second",
    )
    asyncio.run(main_async(parser.parse_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
