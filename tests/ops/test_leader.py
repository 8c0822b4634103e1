"""One instance at a time: advisory locks on PostgreSQL, file locks on SQLite."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailgate.ops.leader import FileLock, Leadership, PgAdvisoryLock, lock_key
from tests.waiting import eventually


class Journal:
    """Records when each contender's job ran, to prove the runs never overlap."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, float, float]] = []
        self.running: set[str] = set()

    def job(self, who: str):  # type: ignore[no-untyped-def]
        async def run(stop: asyncio.Event) -> None:
            assert not self.running, f"{who} started while {self.running} ran"
            self.running.add(who)
            start = time.monotonic()
            try:
                await stop.wait()
            finally:
                self.running.discard(who)
                self.runs.append((who, start, time.monotonic()))

        return run


def test_lock_keys_are_stable_and_distinct() -> None:
    assert lock_key("imap:support") == lock_key("imap:support")
    assert lock_key("imap:support") != lock_key("timers")


async def test_only_one_contender_runs_and_another_takes_over(db_url: str, tmp_path: Path) -> None:
    journal = Journal()
    first = Leadership(db_url, tmp_path / "locks", retry=0.2, heartbeat=0.2)
    second = Leadership(db_url, tmp_path / "locks", retry=0.2, heartbeat=0.2)
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    a = asyncio.create_task(first.run("timers", journal.job("first"), stop_first))
    await eventually(lambda: journal.running == {"first"})
    b = asyncio.create_task(second.run("timers", journal.job("second"), stop_second))
    await eventually(lambda: second.refused >= 3)
    assert journal.running == {"first"}  # the second tried, and waits
    stop_first.set()
    await a
    await eventually(lambda: journal.running == {"second"}, timeout=5)
    stop_second.set()
    await b
    assert [who for who, _, _ in journal.runs] == ["first", "second"]


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_holder_whose_connection_dies_stops_and_the_other_takes_over(
    db_url: str, tmp_path: Path
) -> None:
    import asyncpg

    journal = Journal()
    first = Leadership(db_url, tmp_path, retry=0.2, heartbeat=0.2)
    second = Leadership(db_url, tmp_path, retry=0.2, heartbeat=0.2)
    stop = asyncio.Event()
    a = asyncio.create_task(first.run("imap:support", journal.job("first"), stop))
    await eventually(lambda: journal.running == {"first"})
    b = asyncio.create_task(second.run("imap:support", journal.job("second"), stop))
    await eventually(lambda: second.refused >= 1)
    # The first instance's database session dies (a crash, a network cut).
    probe = PgAdvisoryLock(db_url, "probe")
    admin = await asyncpg.connect(probe.dsn)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks "
            "WHERE locktype = 'advisory' AND granted"
        )
        assert killed == 1
    finally:
        await admin.close()
    await eventually(lambda: any(who == "second" for who in journal.running), timeout=5)
    assert [who for who, _, _ in journal.runs] == ["first"]
    stop.set()
    await asyncio.gather(a, b)
    (_, _, first_end), (_, second_start, _) = journal.runs[0], journal.runs[1]
    assert first_end <= second_start


def test_a_file_lock_dies_with_its_process(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
            str(tmp_path / "timers.lock"),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        lock = FileLock(tmp_path, "timers")
        assert not asyncio.run(lock.acquire())
        holder.kill()  # kill -9: no chance to clean up
        holder.wait()
        assert asyncio.run(lock.acquire())
        asyncio.run(lock.release())
    finally:
        if holder.poll() is None:
            holder.kill()
        if holder.stdout is not None:
            holder.stdout.close()
