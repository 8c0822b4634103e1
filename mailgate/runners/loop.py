"""The daemon's loops, one shape: a round of work, then wait for a wake-up or the interval.

The worker, the sender, the timers and retention are each a ``Runner``: ``round`` does
what is due and says whether more may be due at once or storage is failing. ``run``
owns the rest, once for all of them: waiting (a wake-up cuts it short), backing off
while storage fails (the wait doubles each round, up to a minute, and a wake-up —
new work — tries again at once), logging, and stopping. An error that is not
mailgate's (a bug) is not caught here: the loop's task ends with it. The worker's or
the sender's stops the daemon with its traceback, so that the supervisor (systemd)
restarts it; a led loop's (timers, retention) is logged by its leadership
(``leader.job_failed``), which starts it again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import structlog

from mailgate.errors import MailgateError

log = structlog.get_logger("mailgate.runners")
MAX_FAILING_WAIT = 60.0  # seconds between rounds while storage keeps failing


@dataclass(frozen=True, slots=True)
class Round:
    """What one round did."""

    more: bool = False  # more may be due right away: no wait
    failing: bool = False  # storage failed: back off


class Runner(Protocol):
    """One of the daemon's loops."""

    @property
    def name(self) -> str:
        """In its log events: "<name>.started", "<name>.storage_unavailable", ..."""
        ...

    async def round(self, *, failing: bool, stop: asyncio.Event) -> Round:
        """Do what is due. ``failing``: the rounds before failed (try a little, to find out
        whether storage is back); ``stop``: set when the daemon stops (end the round soon)."""
        ...


async def run(runner: Runner, stop: asyncio.Event, wake: asyncio.Event, interval: float) -> None:
    """Rounds of ``runner`` until ``stop``; between them, wait ``interval`` or for ``wake``."""
    log.info(f"{runner.name}.started")
    failing = 0  # rounds in a row that storage failed: the wait doubles with each
    while not stop.is_set():
        wake.clear()
        try:
            done = await runner.round(failing=failing > 0, stop=stop)
        except MailgateError as exc:
            log.warning(f"{runner.name}.storage_unavailable", error=str(exc))
            done = Round(failing=True)
        if done.failing:
            failing += 1
            await wait_for_work(stop, wake, max(min(interval * 2**failing, MAX_FAILING_WAIT), 0.05))
            continue
        failing = 0
        if not done.more:
            await wait_for_work(stop, wake, interval)
    log.info(f"{runner.name}.stopped")


async def wait_for_work(stop: asyncio.Event, wake: asyncio.Event, interval: float) -> None:
    """Return when ``stop`` or ``wake`` is set, or after ``interval`` seconds."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
