"""Benchmark: mails per second through the intake path (store + parse + route + persist).

Generates 2,000 mails (half of them replies to earlier ones, by subject token,
References or plus-address), runs each through the same path as `mailgate
ingest` on a fresh SQLite database, and prints throughput and peak RSS. The
baseline, measured in the same run on the same disk, is the floor any durable
intake pays: one fsync'd file write plus one committed SQLite row per mail with
the stdlib sqlite3 module (WAL, synchronous=FULL). The ratio says how much the
whole intake costs on top of that floor.

    .venv/bin/python bench/ingest.py [--mails 2000] [--processes N] [--postgresql]

The worker runs as the daemon runs it: on SQLite in this process, a large batch's
parsing in ``[worker] processes`` processes of their own; with ``--postgresql`` (a
throwaway cluster; the baseline stays the same SQLite floor) in that many worker
processes. ``--processes 0``: everything in this one. The child processes' CPU is
counted with this process's, and the server's CPU per mail is printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import resource
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import WORDS, Intake, through_intake

from mailgate.app import build_app
from mailgate.cli.progress import Steps
from mailgate.config import parse_config


def compose(headers: dict[str, str], body: str) -> bytes:
    """A plain-text mail as a mail client writes one (lines wrapped at 72, 7bit), built as
    bytes: composing with ``EmailMessage`` would cost this process 1.5 ms a mail, which the
    run would count as mailgate's CPU."""
    return head(headers) + text(body)


def head(headers: dict[str, str]) -> bytes:
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode()


def text(body: str) -> bytes:
    """The MIME headers and the body of a mail, its paragraphs wrapped (quotes kept)."""
    lines = "\r\n".join(wrap(p) if p[:1] != ">" else p for p in body.split("\n"))
    return (
        'Content-Type: text/plain; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: 7bit\r\nMIME-Version: 1.0\r\n\r\n"
        f"{lines}\r\n"
    ).encode()


def wrap(paragraph: str, width: int = 72) -> str:
    lines: list[str] = []
    line = ""
    for word in paragraph.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\r\n".join([*lines, line])


def new_mail(rng: random.Random, i: int) -> bytes:
    return compose(
        {
            "From": f"Klant {i} <klant{i}@org{i % 50}.nl>",
            "To": "support@example.com",
            "Subject": f"{rng.choice(WORDS).capitalize()} werkt niet ({i})",
            "Message-ID": f"<new-{i}@bench.example>",
        },
        " ".join(rng.choices(WORDS, k=400)),
    )


def reply_text(rng: random.Random) -> bytes:
    """A reply's body: a few lines of its own above the quoted notice."""
    return text(
        "Dank, " + " ".join(rng.choices(WORDS, k=200)) + "\n\nOp ma 5 jan. schreef Support:\n> "
        "" + "> ".join(WORDS)
    )


def reply_head(i: int, customer: int, tag: str, token: str, ref: str) -> bytes:
    """The customer of mail ``customer`` (its index) replies, as clients do in three ways."""
    style = i % 3
    headers = {
        "From": f"Klant {customer} <klant{customer}@org{customer % 50}.nl>",
        "To": f"support+{token.lower()}@example.com" if style == 2 else "support@example.com",
        "Subject": f"RE: {tag} antwoord" if style == 0 else "RE: antwoord",
    }
    if style == 1:
        headers["References"] = ref
    headers["Message-ID"] = f"<reply-{i}@bench.example>"
    return head(headers)


def premade(count: int, path: Path) -> list[tuple[int, int]]:
    """Before the clock: each new mail whole and each reply's body (its headers name a
    ticket the run has yet to make), written to ``path``; where each one is in it. The
    run reads them back as they arrive: making them (wrapping random words, ~0.1 ms a mail)
    is the benchmark's work, not mailgate's, and holding them would swell the peak RSS."""
    rng = random.Random(42)
    found: list[tuple[int, int]] = []
    with open(path, "wb") as handle:
        for i in range(count):
            data = new_mail(rng, i) if i % 2 == 0 else reply_text(rng)
            found.append((handle.tell(), len(data)))
            handle.write(data)
    return found


def reset_peak_rss() -> bool:
    """Forget the peak RSS so far (Linux), so that the one printed is mailgate's run's,
    not the baseline's sample mails'."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def baseline(mails: list[bytes], directory: Path) -> float:
    """Durable floor: fsync'd file + committed row per mail, stdlib sqlite3."""
    conn = sqlite3.connect(directory / "baseline.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE spool (id INTEGER PRIMARY KEY, sha TEXT UNIQUE, size INT)")
    start = time.perf_counter()
    for raw in mails:
        sha = hashlib.sha256(raw).hexdigest()
        path = directory / f"{sha}.eml"
        with open(path, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO spool (sha, size) VALUES (?, ?)", (sha, len(raw)))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(mails) / elapsed


async def mailgate_run(
    count: int,
    directory: Path,
    url: str,
    server: Callable[[], float] | None = None,
    processes: int | None = None,
) -> tuple[Intake, float]:
    """The run, and the CPU seconds the database server spent meanwhile (``server``)."""
    config = parse_config(
        {
            "general": {"data_dir": "var", "log_level": "error", "log_format": "json"},
            "database": {"url": url},
            "worker": {} if processes is None else {"processes": processes},
            "queues": [
                {
                    "name": "support",
                    "addresses": ["support@example.com"],
                    "team_address": "team@example.com",
                }
            ],
        },
        name="bench.toml",
        base=directory,
        environ={"MAILGATE_SECRET": "bench-secret-0123456789"},
    )
    from mailgate.log import configure

    configure("error", "json")
    app = await build_app(config)

    opened: list[int] = []  # index of the mail that opened each ticket known so far
    numbers: dict[int, int] = {}  # that mail's index -> its ticket's number

    where = premade(count, directory / "mails")
    fd = os.open(directory / "mails", os.O_RDONLY)

    def mails() -> Iterator[bytes]:
        """The mails in order of arrival, read as they are needed (not held in memory); a
        reply answers a ticket already opened, by the number the intake gave it."""
        pick = random.Random(43)
        for i, (offset, size) in enumerate(where):
            made = os.pread(fd, size, offset)
            if i % 2 == 0:
                yield made
                continue
            if not opened:  # none opened yet: a new mail after all
                yield new_mail(pick, i)
                continue
            first = opened[pick.randrange(len(opened))]
            ticket = numbers[first]
            tag, token = app.codec.subject_tag(ticket), app.codec.token(ticket)
            yield reply_head(i, first, tag, token, f"<new-{first}@bench.example>") + made

    def on_ticket(i: int, number: int) -> None:
        if i % 2 == 0 and i not in numbers:
            numbers[i] = number
            opened.append(i)

    before = server() if server else 0.0
    try:
        with Steps("mails through the intake", count) as steps:
            run = await through_intake(app, mails(), steps, on_ticket)
        return run, (server() - before if server else 0.0)
    finally:
        os.close(fd)
        await app.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="[worker] processes (default: the config's); 0: all in this process",
    )
    parser.add_argument(
        "--postgresql", action="store_true", help="mailgate on a throwaway PostgreSQL cluster"
    )
    args = parser.parse_args()
    cluster = None
    url = "sqlite+aiosqlite:///mailgate.db"
    if args.postgresql:
        from scale import Cluster

        cluster = Cluster()
        url = asyncio.run(cluster.database("ingest"))
    with tempfile.TemporaryDirectory(prefix="mailgate-bench-") as tmp:
        directory = Path(tmp)
        rng = random.Random(7)
        sample = [new_mail(rng, i) for i in range(args.mails)]
        (directory / "base").mkdir()
        base_cpu = time.process_time()
        base_rate = baseline(sample, directory / "base")
        base_cpu = (time.process_time() - base_cpu) * 1000 / args.mails
        del sample
        peak_reset = reset_peak_rss()
        (directory / "mg").mkdir()
        try:
            server = cluster.cpu_seconds if cluster is not None else None
            run, server_seconds = asyncio.run(
                mailgate_run(args.mails, directory / "mg", url, server, args.processes)
            )
        finally:
            if cluster is not None:
                cluster.stop()
    peak_mb = (
        peak_rss_mb() if peak_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    actions = ", ".join(f"{k} {v}" for k, v in sorted(run.counts.items()))
    print(f"mails:                 {args.mails} ({actions})")
    kind = "worker" if cluster is not None else "parsing"
    print(f"{kind} processes:      {run.processes or 'none, the worker in this process'}")
    print(f"mailgate intake:       {run.rate:8.1f} mails/s into tickets (store + parse + route + ")
    print("                                      persist + notifications rendered and queued)")
    print(f"  the worker alone:    {run.worker_rate:8.1f} mails/s")
    print(f"  CPU per mail:        {run.cpu_ms:8.2f} ms (all threads, store and worker)")
    print(f"    of it the kernel's:{run.system_ms:8.2f} ms (sockets, files, fsync)")
    if cluster is not None:
        server_ms = server_seconds * 1000 / args.mails
        print(f"  PostgreSQL's CPU:    {server_ms:8.2f} ms a mail (its backends and helpers)")
    print(f"  baseline CPU/mail:   {base_cpu:8.2f} ms")
    print(f"baseline (file+row):   {base_rate:8.1f} mails/s (fsync'd file + committed sqlite3 row)")
    print(f"ratio mailgate/base:   {run.rate / base_rate:8.3f}")
    print(f"peak RSS:              {peak_mb:8.1f} MB (mailgate's run, mails read as they arrive)")
    if run.processes:
        print(f"  a {kind} process's: {run.processes_peak_mb:8.1f} MB (the largest)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
