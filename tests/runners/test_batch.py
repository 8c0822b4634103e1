"""The worker's batches: a savepoint per mail, one commit per batch, exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import text

from mailgate.app import App, build_app
from mailgate.clock import FrozenClock
from mailgate.config import Config
from mailgate.core.model import Action
from mailgate.intake.spool import Received
from mailgate.runners.batch import batches, lanes
from mailgate.store.db import session
from mailgate.store.repos import Repo, Tx
from mailgate.tickets.arrival import Outcome
from mailgate.tickets.mail import Applier
from mailgate.tickets.prepare import Prepared
from tests.mails import make_mail


class Poisoned:
    """The real application, which fails for one mail after it has written its rows."""

    def __init__(self, real: Applier, poison: int, error: type[BaseException]) -> None:
        self.real = real
        self.poison = poison
        self.error = error

    def apply(self, tx: Tx, item: Prepared, now: datetime) -> Outcome | None:
        outcome = self.real.apply(tx, item, now)
        if item.entry.id == self.poison:
            raise self.error("poisoned after writing")
        return outcome


@pytest.fixture
def config(make_config: Callable[..., Config]) -> Config:
    """Batches bound by count only: on a slow machine the lock-time bound would commit
    the first mails before a batch reaches the one a test poisons."""
    return make_config(worker={"batch_time": 10.0})


async def count(app: App, sql: str) -> int:
    async with session(app.engine) as s:
        return int((await s.exec(text(sql))).one()[0])  # type: ignore[call-overload]


async def store(app: App, n: int, tag: str = "Mail") -> list[int]:
    stored = [
        await app.spool.store(Received(make_mail(subject=f"{tag} {i}"), "t")) for i in range(n)
    ]
    return [s.spool_id for s in stored]


async def test_a_poison_mail_fails_alone_and_leaves_nothing_behind(app: App) -> None:
    ids = await store(app, 5)
    real = app.processor.applier
    app.processor.applier = Poisoned(real, ids[2], RuntimeError)  # type: ignore[assignment]
    outcomes = await app.processor.process_batch(ids)
    app.processor.applier = real
    assert sorted((o.spool_id, o.action) for o in outcomes) == sorted(
        [(i, Action.CREATED) for i in ids if i != ids[2]] + [(ids[2], Action.QUARANTINED)]
    )
    assert await count(app, "SELECT count(*) FROM tickets") == 4
    assert await count(app, "SELECT count(*) FROM messages WHERE subject = 'Mail 2'") == 0
    assert await count(app, "SELECT count(*) FROM outbox") == 8  # ack + team notice, four times
    assert await count(app, "SELECT count(*) FROM tickets WHERE title = 'Mail 2'") == 0
    assert await count(app, "SELECT count(DISTINCT ticket_id) FROM timers") == 4
    async with session(app.engine) as s:
        quarantined = await Repo(s).quarantined()
    assert [e.id for e in quarantined] == [ids[2]]
    assert "poisoned after writing" in (quarantined[0].error or "")


async def test_a_crash_before_the_commit_leaves_the_batch_to_be_processed_once(
    config: Config, clock: FrozenClock
) -> None:
    class Crash(BaseException):
        """The process dies: not an error the worker handles."""

    first = await build_app(config, clock)
    try:
        ids = await store(first, 6)
        real = first.processor.applier
        first.processor.applier = Poisoned(real, ids[-1], Crash)  # type: ignore[assignment]
        with pytest.raises(Crash):
            await first.processor.process_batch(ids)
        assert await count(first, "SELECT count(*) FROM tickets") == 0  # nothing committed
    finally:
        await first.close()
    second = await build_app(config, clock)
    try:
        outcomes = await second.processor.run_due()
        assert sorted(o.spool_id for o in outcomes) == ids
        assert {o.action for o in outcomes} == {Action.CREATED}
        assert await second.processor.run_due() == []
        assert await count(second, "SELECT count(*) FROM tickets") == 6
        assert await count(second, "SELECT count(*) FROM outbox") == 12
    finally:
        await second.close()


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_two_workers_with_overlapping_batches_apply_each_mail_once(
    make_config: Callable[..., Config], clock: FrozenClock
) -> None:
    config = make_config(worker={"batch_size": 8})
    one, two = await build_app(config, clock), await build_app(config, clock)
    try:
        ids = await store(one, 40)
        # Both take the same due mails at once, in overlapping batches.
        done: list[list[Outcome]] = await asyncio.gather(
            one.processor.run_due(), two.processor.run_due()
        )
        for _ in range(5):  # whatever one skipped while the other held it
            done.append(await one.processor.run_due())
        applied = [o.spool_id for outcomes in done for o in outcomes]
        assert sorted(applied) == ids  # each mail once, by one of them
        assert await count(one, "SELECT count(*) FROM tickets") == 40
        assert await count(one, "SELECT count(*) FROM messages WHERE direction = 'in'") == 40
        team = "SELECT count(DISTINCT ticket_id) FROM outbox WHERE kind = 'team_new_ticket'"
        assert await count(one, team) == 40
        assert await count(one, "SELECT count(*) FROM outbox") == 40 + await count(
            one, "SELECT count(*) FROM outbox WHERE kind = 'ack'"
        )
    finally:
        await one.close()
        await two.close()


def test_batches_are_bounded_by_count_and_by_bytes() -> None:
    due = [(1, 10), (2, 10), (3, 10), (4, 100), (5, 10), (6, 10)]
    assert batches(due, 2, 1000) == [[1, 2], [3, 4], [5, 6]]
    assert batches(due, 10, 35) == [[1, 2, 3], [4], [5, 6]]  # a large mail is a batch alone
    assert batches([], 10, 35) == []


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_two_workers_count_the_caps_on_automatic_mail_exactly(
    make_config: Callable[..., Config], clock: FrozenClock
) -> None:
    """Forty new tickets of one customer, applied by two workers at once: exactly as many
    acknowledgments as the hourly cap allows, not one more from either."""
    config = make_config(worker={"batch_size": 20})
    one, two = await build_app(config, clock), await build_app(config, clock)
    try:
        ids = await store(one, 40)
        # Each takes its own batch; both count the same customer's acknowledgments at once.
        await asyncio.gather(
            one.processor.process_batch(ids[:20]), two.processor.process_batch(ids[20:])
        )
        while await one.processor.run_due():  # what waited past its batch's lock time
            pass
        acks = await count(one, "SELECT count(*) FROM outbox WHERE kind = 'ack'")
        assert acks == config.outbound.max_automatic_per_recipient_per_hour
        assert await count(one, "SELECT count(*) FROM tickets") == 40
    finally:
        await one.close()
        await two.close()


def test_lanes_keep_mails_that_share_a_key_together_and_in_order() -> None:
    keys = {
        "a1": {"domain a", "mailbox 1"},
        "b1": {"domain b"},
        "a2": {"domain a"},
        "c1": {"domain c", "ticket 7"},
        "d1": {"ticket 7"},  # a reply to the ticket c1 named: c1's lane
        "e1": {"domain e"},
    }
    found = lanes(list(keys), keys.__getitem__, 2)
    assert sorted(map(sorted, found)) == [["a1", "a2", "b1"], ["c1", "d1", "e1"]]
    assert all(lane == sorted(lane, key=list(keys).index) for lane in found)  # order kept
    assert lanes(list(keys), keys.__getitem__, 1) == [list(keys)]
    assert lanes(["x", "y"], lambda _: {"same"}, 4) == [["x", "y"]]  # empty lanes left out
    assert lanes([], keys.__getitem__, 2) == []


async def test_mails_a_batch_did_not_reach_lead_the_next_without_being_parsed_again(
    make_config: Callable[..., Config], clock: FrozenClock
) -> None:
    # Parsed in this process (processes 0), where the test counts the parsing.
    config = make_config(worker={"batch_size": 20, "batch_time": 0.01, "processes": 0})
    app = await build_app(config, clock)
    try:
        ids = await store(app, 20)
        real = app.processor.applier
        slow = Slow(real)
        app.processor.applier = slow  # type: ignore[assignment]
        parsed: list[int] = []
        prepare = app.processor.preparer.prepare

        def counting(entry: Any, raw: bytes, *, drop_raw: bool) -> Prepared:
            parsed.append(entry.id)
            return prepare(entry, raw, drop_raw=drop_raw)

        object.__setattr__(app.processor, "preparer", Counting(counting))
        outcomes = await app.processor.run_due()
        assert sorted(o.spool_id for o in outcomes) == ids  # all of them, in one round
        assert sorted(parsed) == ids  # each parsed once, though batches ended early
        assert slow.batches > 1
        assert await count(app, "SELECT count(*) FROM tickets") == 20
    finally:
        await app.close()


class Slow:
    """The real application, taking 5 ms a mail: a batch runs out of lock time."""

    def __init__(self, real: Applier) -> None:
        self.real = real
        self.batches = 0
        self.last: Tx | None = None

    def apply(self, tx: Tx, item: Prepared, now: datetime) -> Outcome | None:
        if tx is not self.last:
            self.batches += 1
            self.last = tx
        time.sleep(0.005)
        return self.real.apply(tx, item, now)


class Counting:
    def __init__(self, prepare: Callable[..., Prepared]) -> None:
        self.prepare = prepare


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_lanes_apply_a_batch_side_by_side_each_mail_once(
    make_config: Callable[..., Config], clock: FrozenClock
) -> None:
    config = make_config(worker={"batch_size": 10, "lanes": 2})
    app = await build_app(config, clock)
    try:
        stored = []
        for n in range(48):  # four customers at four organisations, twelve mails each
            sender = f"klant{n % 4}@org{n % 4}.nl"
            raw = make_mail(sender=sender, subject=f"Vraag {n}")
            stored.append((await app.spool.store(Received(raw, "t"))).spool_id)
        outcomes = []
        while found := await app.processor.run_due():  # a batch a round (PostgreSQL)
            outcomes += found
        assert sorted(o.spool_id for o in outcomes) == stored
        assert {o.action for o in outcomes} == {Action.CREATED}
        assert {"lane-0", "lane-1"} <= set(app.blocking._threads)
        assert await count(app, "SELECT count(*) FROM tickets") == 48
        # Each customer's cap held, whichever lanes their mails went to.
        acks = "SELECT count(*) FROM outbox WHERE kind = 'ack'"
        assert await count(app, acks) == 4 * config.outbound.max_automatic_per_recipient_per_hour
    finally:
        await app.close()
