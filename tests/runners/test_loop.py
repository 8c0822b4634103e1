"""The one shape of the daemon's loops: rounds, waits, back-off, stop, and bugs not hidden."""

from __future__ import annotations

import asyncio

import pytest
import structlog

from mailgate.errors import StorageUnavailable
from mailgate.runners.loop import Round, run

HOUR = 3600.0  # an interval no test waits out: a round that waited would time the test out


class Scripted:
    """A runner whose rounds return (or raise) what the script says, then stop the loop."""

    name = "scripted"

    def __init__(self, script: list[Round | BaseException], stop: asyncio.Event) -> None:
        self.script = script
        self.stop = stop
        self.failing: list[bool] = []
        self.turned = asyncio.Event()  # set by every round

    async def round(self, *, failing: bool, stop: asyncio.Event) -> Round:
        self.failing.append(failing)
        self.turned.set()
        step = self.script.pop(0)
        if not self.script:
            self.stop.set()
        if isinstance(step, BaseException):
            raise step
        return step


async def test_a_round_that_left_more_is_followed_at_once() -> None:
    stop = asyncio.Event()
    runner = Scripted([Round(more=True)] * 3 + [Round()], stop)
    await asyncio.wait_for(run(runner, stop, asyncio.Event(), HOUR), 5)
    assert runner.failing == [False] * 4


async def test_a_wake_up_cuts_the_wait_short() -> None:
    stop, wake = asyncio.Event(), asyncio.Event()
    runner = Scripted([Round(), Round()], stop)
    loop = asyncio.create_task(run(runner, stop, wake, HOUR))
    await runner.turned.wait()
    wake.set()  # new work arrived
    await asyncio.wait_for(loop, 5)
    assert len(runner.failing) == 2


async def test_storage_failing_is_logged_and_the_next_rounds_know_it() -> None:
    stop, wake = asyncio.Event(), asyncio.Event()
    runner = Scripted([StorageUnavailable("locked"), Round(failing=True), Round()], stop)
    with structlog.testing.capture_logs() as logs:
        loop = asyncio.create_task(run(runner, stop, wake, HOUR))
        for _ in range(2):
            await runner.turned.wait()
            runner.turned.clear()
            wake.set()  # no need to wait out the back-off: new work tries again at once
        await asyncio.wait_for(loop, 5)
    assert runner.failing == [False, True, True]
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
        "scripted.storage_unavailable"
    ]
    assert logs[-1]["event"] == "scripted.stopped"


async def test_a_bug_ends_the_loop_with_its_error() -> None:
    """Not caught here: the daemon stops with the traceback and its supervisor restarts it."""
    stop = asyncio.Event()
    runner = Scripted([Round(more=True), RuntimeError("a bug of ours"), Round()], stop)
    with pytest.raises(RuntimeError, match="a bug of ours"):
        await asyncio.wait_for(run(runner, stop, asyncio.Event(), HOUR), 5)


async def test_a_stopped_loop_starts_no_round() -> None:
    stop = asyncio.Event()
    stop.set()
    runner = Scripted([Round()], stop)
    await asyncio.wait_for(run(runner, stop, asyncio.Event(), HOUR), 5)
    assert runner.failing == []
