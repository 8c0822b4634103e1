"""Shared by the benchmarks: the words generated mails are made of, and the intake as the
daemon runs it (mails stored in groups, the worker taking what is due in batches)."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import resource
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WORDS = [
    *("printer", "factuur", "inloggen", "rooster", "export"),
    *("koppeling", "wachtwoord", "rapport", "agenda"),
]
ARRIVING = 50  # mails stored between two looks of the worker


@dataclass
class Intake:
    """How a run through the intake went."""

    mails: int
    seconds: float  # store and worker
    worker_seconds: float  # the worker alone
    cpu_seconds: float  # all threads of this process (worker processes: below)
    counts: dict[str, int] = field(default_factory=dict)
    system_seconds: float = 0.0  # of cpu_seconds, in the kernel (sockets, files, fsync)
    processes: int = 0  # child processes (worker or parsing processes), their CPU counted
    processes_peak_mb: float = 0.0  # the largest peak RSS among them
    # CPU of the work the run left for a quiet moment (SQLite's search index's merges,
    # store/search.py), done after it; not in cpu_seconds
    deferred_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.mails / self.seconds

    @property
    def worker_rate(self) -> float:
        return self.mails / self.worker_seconds

    @property
    def cpu_ms(self) -> float:
        return self.cpu_seconds * 1000 / self.mails

    @property
    def deferred_ms(self) -> float:
        return self.deferred_seconds * 1000 / self.mails

    @property
    def system_ms(self) -> float:
        return self.system_seconds * 1000 / self.mails


async def through_intake(
    app: Any,
    mails: Iterable[bytes],
    steps: Any,
    on_ticket: Callable[[int, int], None] | None = None,
) -> Intake:
    """Store ``mails`` in groups, as a listener's sessions do side by side, and let the
    worker take what is due after each group, as the daemon's does. ``mails`` may be a
    generator: then only a group of them is in memory at a time, and the peak RSS is
    mailgate's, not the benchmark's. ``on_ticket(i, number)`` hears which ticket the
    ``i``-th mail went to (the generator's replies can then answer tickets that exist:
    on PostgreSQL the lanes number tickets out of arrival order)."""
    from mailgate.intake.spool import Received

    counts: dict[str, int] = {}
    worker = 0.0
    # Worker processes start (and import) before the clock does: a daemon's run once.
    await asyncio.gather(*(w.run_due(0) for w in app.workers))
    await app.processor.parsers.warm()  # SQLite's parsing processes, likewise
    children_start = children_cpu()  # worker processes (PostgreSQL), parsing ones (SQLite)
    cpu_start = time.process_time()
    system_start = resource.getrusage(resource.RUSAGE_SELF).ru_stime
    start = time.perf_counter()
    total = 0
    source = iter(mails)
    while arriving := list(itertools.islice(source, ARRIVING)):
        stored = await asyncio.gather(
            *(app.spool.store(Received(r, "bench", envelope_from=sender(r))) for r in arriving)
        )
        index = {receipt.spool_id: total + n for n, receipt in enumerate(stored)}
        total += len(arriving)
        begun = time.perf_counter()
        # The daemon's workers (its own process, or on PostgreSQL worker processes, each
        # claiming its own batches), side by side, until none finds more.
        while outcomes := [
            o for done in await asyncio.gather(*(w.run_due() for w in app.workers)) for o in done
        ]:
            for outcome in outcomes:
                counts[outcome.action.value] = counts.get(outcome.action.value, 0) + 1
                if on_ticket is not None and outcome.ticket is not None:
                    on_ticket(index[outcome.spool_id], outcome.ticket)
            steps.advance(len(outcomes))
        worker += time.perf_counter() - begun
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    system = resource.getrusage(resource.RUSAGE_SELF).ru_stime - system_start
    children_end = children_cpu()
    children = [
        (u - children_start.get(pid, (0.0, 0.0))[0], s - children_start.get(pid, (0.0, 0.0))[1])
        for pid, (u, s) in children_end.items()
    ]
    return Intake(
        total,
        seconds,
        worker,
        cpu + sum(c[0] + c[1] for c in children),
        counts,
        system + sum(c[1] for c in children),
        len(children_end),
        max((peak_mb(pid) for pid in children_end), default=0.0),
    )


def peak_mb(pid: int) -> float:
    """A process's peak RSS so far in MB (Linux: VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sender(raw: bytes) -> str | None:
    """The address of the From: line, as the envelope sender a listener records (MAIL FROM)."""
    found = _FROM.search(raw, 0, 4096)
    return found.group(1).decode() if found else None


_FROM = re.compile(rb"^From:[^\r\n<]*<([^>\r\n]+)>", re.MULTILINE | re.IGNORECASE)


def children_cpu(parent: int | str = "self") -> dict[int, tuple[float, float]]:
    """(user, system) CPU seconds each child process of ``parent`` (this one) has used so
    far (Linux /proc): mailgate's worker processes (PostgreSQL) or parsing processes
    (SQLite)."""
    found = {}
    for task in Path(f"/proc/{parent}/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                if b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    continue  # multiprocessing's own helper, idle
                found[int(pid)] = process_cpu(pid)
            except OSError:  # ended meanwhile
                continue
    return found


def process_cpu(pid: int | str = "self") -> tuple[float, float]:
    """(user, system) CPU seconds the process ``pid`` has used so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) / tick, int(fields[12]) / tick


def settle(pid: int, quiet: float = 0.05, timeout: float = 60.0) -> None:
    """Return once the process ``pid`` and its children have started: half a second in
    which they use less than ``quiet`` seconds of CPU. A daemon's worker processes import
    and load their models once; the benchmarks measure a daemon at work, as bench/ingest.py
    starts its worker processes before its clock."""

    def used() -> float:
        return sum(sum(cpu) for cpu in (process_cpu(pid), *children_cpu(pid).values()))

    deadline = time.monotonic() + timeout
    before = used()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = used()
        if now - before < quiet:
            return
        before = now
