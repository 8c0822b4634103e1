"""Benchmark: SMTP acceptance of `mailgate run` against a bare aiosmtpd sink, same client.

Server (a) is a bare aiosmtpd server in its own process whose handler discards
the mail and answers 250. Server (b) is `mailgate run` on SQLite with full
processing: every 250 comes after the raw mail is fsync'd and committed, and
the worker parses, routes and persists tickets in the same process meanwhile.
One client (8 concurrent connections, 2,000 mails of about 5 KB) drives both,
once with a new connection per mail and once with connections reused, in
``--repeat`` (3) pairs of runs that alternate which server goes first (the
machine's pace drifts). Printed: mails/s for each run, p50/p99 latency from the
end of DATA to the 250, how long (b) needed to finish processing, and the median
of the pairs' ratios b/a.

    .venv/bin/python bench/smtp.py [--mails 2000] [--connections 8] [--processes N]
                                   [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import WORDS, settle  # noqa: E402

from tests.conftest import free_port, write_config_file  # noqa: E402

SINK = textwrap.dedent(
    """
    import asyncio, sys
    from aiosmtpd.smtp import SMTP

    class Sink:
        async def handle_DATA(self, server, session, envelope):
            return "250 2.0.0 Ok"

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(Sink(), hostname="sink", loop=loop), "127.0.0.1", int(sys.argv[1]))
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())
    """
)


def mail(i: int) -> bytes:
    rng = random.Random(i)
    body = "\r\n".join(
        " ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(60)
    )  # about 5 KB
    return (
        f"From: Klant {i} <klant{i}@org{i % 40}.nl>\r\nTo: support@example.com\r\n"
        f"Subject: Bench {i}\r\nMessage-ID: <bench-{i}-{time.time_ns()}@customer.nl>\r\n"
        f"Date: Mon, 05 Jan 2026 10:00:00 +0000\r\n\r\n{body}\r\n"
    ).encode()


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    line = await reader.readline()
    while line[3:4] == b"-":
        line = await reader.readline()
    if not line:
        raise ConnectionError("closed")
    return line


class Connection:
    def __init__(self, port: int) -> None:
        self.port = port

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        await read_reply(self.reader)
        await self.command(b"EHLO bench.example.org")

    async def command(self, line: bytes) -> bytes:
        self.writer.write(line + b"\r\n")
        return await read_reply(self.reader)

    async def send(self, raw: bytes) -> float:
        assert (await self.command(b"MAIL FROM:<klant@customer.nl>")).startswith(b"250")
        assert (await self.command(b"RCPT TO:<support@example.com>")).startswith(b"250")
        assert (await self.command(b"DATA")).startswith(b"354")
        self.writer.write(raw + b".\r\n")
        started = time.perf_counter()
        reply = await read_reply(self.reader)
        elapsed = time.perf_counter() - started
        if not reply.startswith(b"250"):
            raise RuntimeError(reply.decode())
        return elapsed

    async def close(self) -> None:
        self.writer.write(b"QUIT\r\n")
        self.writer.close()


async def drive(
    port: int, mails: list[bytes], connections: int, reuse: bool
) -> tuple[float, list[float]]:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for raw in mails:
        queue.put_nowait(raw)
    latencies: list[float] = []

    async def worker() -> None:
        conn: Connection | None = None
        while not queue.empty():
            raw = queue.get_nowait()
            if conn is None:
                conn = Connection(port)
                await conn.open()
            latencies.append(await conn.send(raw))
            if not reuse:
                await conn.close()
                conn = None
        if conn is not None:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return len(mails) / (time.perf_counter() - started), latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


def start_sink(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-c", SINK, str(port)], stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline().startswith(b"ready")
    return process


def start_mailgate(
    directory: Path, port: int, url: str = "", cpus: set[int] | None = None, **sections: Any
) -> subprocess.Popen[bytes]:
    """`mailgate run` with its config in ``directory`` (SQLite there unless ``url``), once
    it listens and has started (``settle``: its worker processes too); on the cores
    ``cpus`` only (its processes inherit them) when given."""
    config = write_config_file(
        directory / "config.toml",
        url or f"sqlite+aiosqlite:///{directory / 'mailgate.db'}",
        general={"log_level": "warning", **sections.pop("general", {})},
        smtp={
            "port": port,
            "messages_per_ip_per_minute": 10**6,
            "connections_per_ip_per_minute": 10**6,
            "max_connections": 1000,
        },
        **sections,
    )
    env = {**os.environ, "MAILGATE_SECRET": "bench-secret-0123456789"}
    env.pop("MAILGATE_DATABASE_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "mailgate", "--config", str(config), "run"],
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
        preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with __import__("socket").create_connection(("127.0.0.1", port), timeout=1):
                pass
        except OSError:
            time.sleep(0.1)
            continue
        settle(process.pid)
        return process
    raise RuntimeError("mailgate did not start")


def drained_after(database: Path, timeout: float = 600) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        with sqlite3.connect(database) as conn:
            if conn.execute("SELECT count(*) FROM spool WHERE state='pending'").fetchone() == (0,):
                return time.perf_counter() - started
        time.sleep(0.2)
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--processes", type=int, help="mailgate's [worker] processes (default: the config's)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="pairs of runs in each mode")
    args = parser.parse_args()
    worker = {} if args.processes is None else {"worker": {"processes": args.processes}}
    print(f"{args.mails} mails of ~{len(mail(0)) // 1024} KB, {args.connections} connections")
    print(f"{'mode':<22}{'server':<10}{'mails/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for reuse in (False, True):
        mode = "connection reused" if reuse else "connection per mail"
        ratios = []
        for n in range(args.repeat):  # pairs, alternating which goes first: the pace drifts
            rates = {}
            for name in ("sink", "mailgate") if n % 2 == 0 else ("mailgate", "sink"):
                rates[name] = one_run(name, mode, reuse, args, worker)
            ratios.append(rates["mailgate"] / rates["sink"])
        print(
            f"{mode:<22}ratio mailgate/sink = {statistics.median(ratios):.3f} (the median of "
            f"{', '.join(f'{r:.3f}' for r in ratios)})"
        )
    return 0


def one_run(
    name: str, mode: str, reuse: bool, args: argparse.Namespace, worker: dict[str, Any]
) -> float:
    """One run of the client against the sink or mailgate: its line, and its mails/s."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="mailgate-bench-") as tmp:
        process = start_sink(port) if name == "sink" else start_mailgate(Path(tmp), port, **worker)
        try:
            mails = [mail(i) for i in range(args.mails)]
            rate, latencies = asyncio.run(drive(port, mails, args.connections, reuse))
            drained = drained_after(Path(tmp) / "mailgate.db") if name == "mailgate" else 0
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    print(
        f"{mode:<22}{name:<10}{rate:9.1f}{percentile(latencies, 0.5):9.2f}"
        f"{percentile(latencies, 0.99):9.2f}"
        + (f"   processing finished {drained:.1f} s after the last 250" if drained else "")
    )
    return rate


if __name__ == "__main__":
    raise SystemExit(main())
