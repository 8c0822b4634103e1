"""Waiting in tests for a condition, never for a time: poll until it holds, or fail."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def eventually(check: Callable[[], Any], timeout: float = 20.0) -> None:  # noqa: ASYNC109
    """Return once ``check()`` (or the coroutine it returns) is true; fail after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def eventually_sync(check: Callable[[], Any], timeout: float = 30.0) -> None:
    """``eventually`` for a test without an event loop."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)
