"""Shared by the benchmarks: the words generated mails are made of, and the intake as the
daemon runs it (mails stored in groups, the worker taking what is due in batches)."""

from __future__ import annotations

import asyncio
import itertools
import resource
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
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
    cpu_seconds: float  # all threads of this process
    counts: dict[str, int] = field(default_factory=dict)
    system_seconds: float = 0.0  # of cpu_seconds, in the kernel (sockets, files, fsync)

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
    cpu_start = time.process_time()
    system_start = resource.getrusage(resource.RUSAGE_SELF).ru_stime
    start = time.perf_counter()
    total = 0
    source = iter(mails)
    while arriving := list(itertools.islice(source, ARRIVING)):
        stored = await asyncio.gather(*(app.spool.store(Received(r, "bench")) for r in arriving))
        index = {receipt.spool_id: total + n for n, receipt in enumerate(stored)}
        total += len(arriving)
        begun = time.perf_counter()
        while outcomes := await app.processor.run_due():
            for outcome in outcomes:
                counts[outcome.action.value] = counts.get(outcome.action.value, 0) + 1
                if on_ticket is not None and outcome.ticket is not None:
                    on_ticket(index[outcome.spool_id], outcome.ticket)
            steps.advance(len(outcomes))
        worker += time.perf_counter() - begun
    return Intake(
        total,
        time.perf_counter() - start,
        worker,
        time.process_time() - cpu_start,
        counts,
        resource.getrusage(resource.RUSAGE_SELF).ru_stime - system_start,
    )
