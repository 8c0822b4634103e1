"""Waiting between rounds of the daemon's long-running loops (worker, sender)."""

from __future__ import annotations

import asyncio


async def wait_for_work(stop: asyncio.Event, wake: asyncio.Event, interval: float) -> None:
    """Return when ``stop`` or ``wake`` is set, or after ``interval`` seconds."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
