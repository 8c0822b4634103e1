"""Parsing processes (SQLite): a batch parsed there is what the daemon would have made of
it; a mail whose parsing fails there is quarantined with its traceback; a process that
dies costs no mail. Real spawned processes, real corpus mails."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from mailgate.app import App
from mailgate.config import Config
from mailgate.core.model import Action, SpoolEntry
from mailgate.intake.spool import Received
from mailgate.runners.batch import prepare_all, with_raw
from mailgate.runners.parsing import AWAY_FROM, Parsers
from mailgate.store.db import session
from mailgate.store.repos.spool import SpoolRepo
from mailgate.tickets.prepare import Prepared, Preparer
from tests.conftest import CORPUS, corpus_mails
from tests.mails import make_mail


@pytest.fixture
def backend() -> str:
    return "sqlite"  # PostgreSQL runs whole workers in processes (tests/runners/test_processes)


@pytest.fixture
def config(make_config: Callable[..., Config]) -> Config:
    return make_config(worker={"processes": 2, "batch_time": 10.0})


@dataclass(frozen=True, slots=True)
class Failing(Preparer):
    """The real preparer, but a mail whose subject has ``poison`` fails; ``die``: instead,
    the parsing process it runs in ends at once (the daemon itself parses it fine)."""

    poison: str = "Poison"
    die: bool = False

    def prepare(self, entry: SpoolEntry, raw: bytes, *, drop_raw: bool) -> Prepared:
        if self.poison.encode() in raw:
            if not self.die:
                raise ValueError(f"cannot parse spool item {entry.id}")
            if multiprocessing.parent_process() is not None:
                os._exit(3)
        return Preparer.prepare(self, entry, raw, drop_raw=drop_raw)


def failing(app: App, *, die: bool = False) -> Failing:
    real = app.processor.preparer
    return Failing(real.codec, real.policy, real.intake, real.own_prefixes, die=die)


async def test_a_batch_parsed_in_processes_is_what_the_daemon_makes_of_it(app: App) -> None:
    raws = [(CORPUS / str(e["path"])).read_bytes() for e in corpus_mails()][:40]
    assert len(raws) == 40, f"corpus missing at {CORPUS}"
    ids = [(await app.spool.store(Received(raw, "corpus"))).spool_id for raw in raws]
    async with session(app.engine) as s:
        loaded = await s.run_sync(lambda sync: SpoolRepo(sync.connection()).load(ids))
    items, _ = with_raw(loaded, app.processor.raw)
    parsers = app.processor.parsers
    assert parsers.wanted(len(items))
    away = await parsers.prepare(items, app.processor.preparer)
    here = prepare_all(items, app.processor.preparer)
    assert [p.entry.id for p in away.ready] == [p.entry.id for p in here.ready]
    assert away.ready == here.ready  # every field: parsed mail, evidence, verdict, language
    assert [f.entry.id for f in away.failed] == [f.entry.id for f in here.failed]


async def test_a_mail_that_fails_in_a_parsing_process_is_quarantined_with_its_traceback(
    app: App,
) -> None:
    app.processor.preparer = failing(app)
    subjects = [f"Printer {n}" for n in range(AWAY_FROM + 2)]
    subjects[2] = "Poison pill"
    for subject in subjects:
        await app.spool.store(Received(make_mail(subject=subject), "t"))
    outcomes = await app.processor.run_due()
    assert [o.action for o in outcomes].count(Action.CREATED) == len(subjects) - 1
    (bad,) = [o for o in outcomes if o.action is Action.QUARANTINED]
    assert "ValueError: cannot parse spool item" in (bad.reason or "")
    async with session(app.engine) as s:
        trace = (
            await s.exec(text(f"SELECT traceback FROM spool WHERE id = {bad.spool_id}"))  # type: ignore[call-overload]
        ).one()[0]
    assert "in prepare" in trace  # the traceback from the process it failed in


async def test_a_parsing_process_that_dies_costs_no_mail(app: App) -> None:
    app.processor.preparer = failing(app, die=True)
    subjects = [f"Printer {n}" for n in range(AWAY_FROM * 2)]
    subjects[3] = "Poison pill"  # ends its parsing process; the daemon parses it itself
    for subject in subjects:
        await app.spool.store(Received(make_mail(subject=subject), "t"))
    outcomes = await app.processor.run_due()
    assert sorted(o.action.value for o in outcomes) == ["created"] * len(subjects)
    assert len({o.ticket for o in outcomes}) == len(subjects)  # each mail once
    app.processor.preparer = failing(app)  # a new pool serves the next batch
    for n in range(AWAY_FROM):
        await app.spool.store(Received(make_mail(subject=f"Later {n}"), "t"))
    assert [o.action for o in await app.processor.run_due()] == [Action.CREATED] * AWAY_FROM


ORPHAN = """
import asyncio, sys
from mailgate.log import configure
from mailgate.runners.parsing import Parsers
from tests.runners.test_parsing import orphan_round

configure("error", "json")
parsers = Parsers(2, "error", "json")
pids = asyncio.run(orphan_round(parsers))
print(" ".join(map(str, pids)), flush=True)
sys.stdin.read()  # until killed
"""


async def orphan_round(parsers: Parsers) -> list[int]:
    """Start ``parsers``' processes with a round of work; their pids."""
    pool = parsers._started()
    done = await asyncio.gather(*(asyncio.wrap_future(pool.submit(_pid)) for _ in range(16)))
    return sorted(set(done))


def _pid() -> int:
    time.sleep(0.05)  # long enough for every process to take a part
    return os.getpid()


def test_parsing_processes_end_when_the_daemon_is_killed() -> None:
    """SIGKILL leaves the daemon no time to stop its pool: the processes notice and end
    (they would otherwise wait forever, holding its log pipe and memory)."""
    with subprocess.Popen(
        [sys.executable, "-c", ORPHAN],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # the resource tracker's complaint about the kill
        cwd=Path(__file__).resolve().parents[2],
    ) as daemon:
        assert daemon.stdout is not None
        pids = [int(p) for p in daemon.stdout.readline().split()]
        assert len(pids) == 2
        daemon.kill()
        daemon.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_warming_starts_every_process_ready_before_the_first_batch() -> None:
    parsers = Parsers(2, "error", "json")
    before = {p.pid for p in multiprocessing.active_children()}
    try:
        await parsers.warm()
        started = [p for p in multiprocessing.active_children() if p.pid not in before]
        assert len(started) == 2 and all(p.is_alive() for p in started)
    finally:
        await parsers.close()
    assert not [p for p in multiprocessing.active_children() if p.pid not in before]
    await Parsers(0, "error", "json").warm()  # none to start: nothing happens


async def test_processes_that_cannot_start_leave_the_daemon_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The daemon starts them as it starts: a fork refused (limits, memory) is logged and
    tried again at the first large batch, not a daemon that does not start."""
    parsers = Parsers(2, "error", "json")

    def refused(*args: object, **kwargs: object) -> None:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    with monkeypatch.context() as patched:
        patched.setattr("concurrent.futures.ProcessPoolExecutor.submit", refused)
        assert parsers.start() == []
    try:
        await parsers.warm()  # the next try starts them
        assert len(parsers._started()._processes) == 2
    finally:
        await parsers.close()
