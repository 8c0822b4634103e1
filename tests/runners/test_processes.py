"""The worker in processes of its own (PostgreSQL): real processes, a real cluster."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from mailgate.app import App, build_app
from mailgate.config import Config
from mailgate.core.model import Action
from mailgate.errors import StorageUnavailable, TicketBusy
from mailgate.intake.spool import Received
from mailgate.runners.processes import WorkerProcess
from mailgate.store.repos import Tx
from mailgate.store.repos.spool import SpoolRepo
from mailgate.tickets.arrival import Outcome
from tests.mails import make_mail
from tests.runners.test_batch import count
from tests.store.test_repos import recorded

pytestmark = pytest.mark.parametrize("backend", ["postgresql"])


async def store_from(app: App, senders: int, each: int) -> list[int]:
    """``each`` mails from each of ``senders`` customers, as a listener records them."""
    ids = []
    for n in range(each):
        for s in range(senders):
            address = f"klant{s}@org{s}.nl"
            raw = make_mail(sender=f"Klant <{address}>", subject=f"Vraag {s}-{n}")
            ids.append(
                (await app.spool.store(Received(raw, "smtp", envelope_from=address))).spool_id
            )
    return ids


async def started(app: App) -> WorkerProcess:
    """The first worker process, started (a round of nothing)."""
    worker = app.workers[0]
    assert isinstance(worker, WorkerProcess)
    await worker.run_due(0)
    return worker


async def drain(app: App) -> list[Outcome]:
    """Rounds of every worker side by side until none finds more."""
    done: list[Outcome] = []
    while True:
        try:
            rounds = await asyncio.gather(*(w.run_due() for w in app.workers))
        except StorageUnavailable:  # a process died: its successor takes its share
            continue
        found = [outcome for outcomes in rounds for outcome in outcomes]
        if not found:
            return done
        done += found


async def test_worker_processes_share_the_spool_and_apply_each_mail_once(
    make_config: Callable[..., Config],
) -> None:
    app = await build_app(make_config(worker={"processes": 2, "batch_size": 8}))
    try:
        workers = app.workers
        assert len(workers) == 2 and all(isinstance(w, WorkerProcess) for w in workers)
        ids = await store_from(app, senders=6, each=5)
        outcomes = await drain(app)
        assert sorted(o.spool_id for o in outcomes) == sorted(ids)  # each once
        assert await count(app, "SELECT count(*) FROM tickets") == 30
        pids = {w.pid for w in workers}
        assert None not in pids and os.getpid() not in pids and len(pids) == 2
        # The processes' counts reach the daemon's metrics.
        counted = app.metrics.mails.labels(source="smtp", outcome="created")._value.get()
        assert counted == 30
    finally:
        await app.close()
    assert all(w.pid is None for w in workers)  # stopped with the app


async def test_a_worker_process_killed_mid_batch_leaves_its_mails_to_its_successor(
    make_config: Callable[..., Config],
) -> None:
    app = await build_app(make_config(worker={"processes": 2, "batch_size": 4}))
    try:
        ids = await store_from(app, senders=4, each=30)
        first = await started(app)
        victim = first.pid
        assert victim is not None
        rounds = asyncio.ensure_future(asyncio.gather(*(w.run_due() for w in app.workers)))
        await asyncio.sleep(0.3)  # in the middle of its batches
        os.kill(victim, signal.SIGKILL)
        with contextlib.suppress(StorageUnavailable):  # the victim's round
            await rounds
        pending = "SELECT count(*) FROM spool WHERE state = 'pending'"
        for _ in range(100):  # the server ends the victim's transaction once it sees it gone;
            await drain(app)  # until then its claimed mails are skipped, not lost
            if await count(app, pending) == 0:
                break
            await asyncio.sleep(0.1)
        assert first.pid not in (None, victim)  # a successor took over
        assert await count(app, "SELECT count(*) FROM spool WHERE state = 'done'") == len(ids)
        assert await count(app, "SELECT count(*) FROM tickets") == len(ids)  # none twice
        inbound = "SELECT count(*) FROM messages WHERE direction = 'in'"
        assert await count(app, inbound) == len(ids)
    finally:
        await app.close()


async def test_rounds_asked_of_one_process_at_once_each_get_their_own_answer(
    make_config: Callable[..., Config],
) -> None:
    """One pipe, one question at a time: rounds asked at once wait their turn, and the
    answer of a round whose asker gave up is read (and counted) before the next."""
    app = await build_app(make_config(worker={"processes": 2, "batch_size": 4}))
    try:
        ids = await store_from(app, senders=4, each=30)
        worker = await started(app)
        given_up = asyncio.ensure_future(worker.run_due(8))
        await asyncio.sleep(0)  # asked
        given_up.cancel()
        rounds = await asyncio.gather(*(worker.run_due(8) for _ in range(6)))
        assert [len(outcomes) for outcomes in rounds] == [4] * 6  # a batch each
        while await worker.run_due(8):
            pass
        assert await count(app, "SELECT count(*) FROM spool WHERE state = 'done'") == len(ids)
        assert await count(app, "SELECT count(*) FROM tickets") == len(ids)
        counted = app.metrics.mails.labels(source="smtp", outcome="created")._value.get()
        assert counted == len(ids)  # the given-up round's mails too
    finally:
        await app.close()


async def test_a_senders_mails_are_claimed_by_one_worker_at_a_time(
    make_config: Callable[..., Config],
) -> None:
    """Three people at each of four organisations and four people at a public provider
    write twice. Two workers claim at once: each mail once, all mails of an organisation
    (their answers count against one domain) with one worker, a public provider's
    mailboxes apart; a mail stored before the spool knew its sender goes by its thread."""
    config = make_config(worker={"processes": 0})
    one, two = await build_app(config), await build_app(config)
    try:
        key_of: dict[int, str] = {}
        for n in range(2):
            for org in range(4):
                for person in range(3):
                    raw = make_mail(sender=f"Klant <k{person}@org{org}.nl>", subject=f"V{n}")
                    stored = await one.spool.store(Received(raw, "smtp", envelope_from="x@y.nl"))
                    key_of[stored.spool_id] = f"org{org}"
            for person in range(4):
                raw = make_mail(sender=f"Klant <Klant.{person}@GMail.com>", subject=f"V{n}")
                stored = await one.spool.store(Received(raw, "smtp", envelope_from="x@y.nl"))
                key_of[stored.spool_id] = f"gmail {person}"
        older = make_mail(sender="Klant <k0@org0.nl>", message_id="<old@org0.nl>")
        stored = await one.spool.store(Received(older, "smtp", envelope_from="k0@org0.nl"))
        key_of[stored.spool_id] = "thread"
        forget = f"UPDATE spool SET sender_key = NULL WHERE id = {stored.spool_id}"
        await one.blocking.write(lambda conn: conn.exec_driver_sql(forget))
        now = one.clock.now()

        async def claim(app: App, limit: int) -> list[int]:
            listed = await app.blocking.in_session(
                lambda conn: SpoolRepo(conn).claim_due(now, limit), "claims"
            )
            return [i for i, _ in listed]

        first = await claim(one, 10)
        # A sender's mails together, the senders in the order of their oldest mail: all
        # six of org0 and the four oldest of org1.
        of = {key: sorted(i for i in key_of if key_of[i] == key) for key in key_of.values()}
        assert first == sorted([*of["org0"], *of["org1"][:4]])
        second = await claim(two, 100)
        held = {key_of[i] for i in first}
        assert held == {"org0", "org1"}
        # The other has the rest but for the first's organisations' later mails: its own
        # mailboxes at the public provider, and the older mail of org0 (by its thread).
        assert {key_of[i] for i in second} == {
            "org2", "org3", "gmail 0", "gmail 1", "gmail 2", "gmail 3", "thread"
        }  # fmt: skip
        waiting = set(key_of) - set(first) - set(second)
        assert not set(first) & set(second) and {key_of[i] for i in waiting} <= held
        await one.blocking.in_session(lambda conn: SpoolRepo(conn).release_claims(), "claims")
        assert sorted(await claim(one, 100)) == sorted([*first, *waiting])  # all but the other's
    finally:
        await one.close()
        await two.close()


async def test_a_later_mail_of_a_batch_never_waits_for_a_ticket_another_batch_holds(
    make_config: Callable[..., Config],
) -> None:
    app = await build_app(make_config(worker={"processes": 0}))
    try:
        opened = await app.processor.process((await store_from(app, 1, 1))[0])
        ticket = opened.ticket if opened is not None else None
        assert ticket is not None
        engine = app.blocking.sync_engine
        assert engine is not None
        with engine.begin() as holder:
            Tx.on(holder).tickets.state(ticket, lock=True)  # another batch holds it

            def later_mail() -> None:
                with engine.begin() as conn:
                    tx = Tx.on(conn)
                    tx.tickets.wait_for_rows = False
                    with tx.savepoint():
                        tx.tickets.state(ticket, lock=True)

            with pytest.raises(TicketBusy):
                await asyncio.to_thread(later_mail)
    finally:
        await app.close()


async def test_workers_claim_senders_and_a_threads_first_mail_so_that_none_waits_for_another(
    make_config: Callable[..., Config],
) -> None:
    """Two instances list the spool at once: each mail is listed by one, a sender's mails
    by one at a time, a thread's later mails (a colleague's, from another organisation:
    another share) not while its first waits, and a worker's round lets go of what it
    claimed (so does a session that ends)."""
    config = make_config(worker={"processes": 0})
    one, two = await build_app(config), await build_app(config)
    try:
        thread_of: dict[int, int] = {}
        for step in range(3):  # eight threads, their first mails first, then the replies
            for t in range(8):
                root = f"<root-{t}@org.nl>"
                raw = [
                    make_mail(sender=f"<k@org{t}.nl>", subject=f"Vraag {t}", message_id=root),
                    make_mail(sender=f"<c@other{t}.nl>", subject=f"Re: {t}", in_reply_to=root),
                    make_mail(sender=f"<k@org{t}.nl>", references=f"{root} <r-{t}@org.nl>"),
                ][step]
                stored = await one.spool.store(Received(raw, "smtp", envelope_from="k@org.nl"))
                thread_of[stored.spool_id] = t
        again = make_mail(sender="<k@org0.nl>", subject="Nog een vraag")  # org0's 2nd thread
        stored = await one.spool.store(Received(again, "smtp", envelope_from="k@org.nl"))
        thread_of[stored.spool_id] = 8
        now = one.clock.now()

        async def claim(app: App, limit: int) -> list[int]:
            listed = await app.blocking.in_session(
                lambda conn: SpoolRepo(conn).claim_due(now, limit), "claims"
            )
            return [i for i, _ in listed]

        async def release(app: App) -> None:
            await app.blocking.in_session(lambda conn: SpoolRepo(conn).release_claims(), "claims")

        firsts = sorted(thread_of)[:8]  # each thread's first mail; no reply before it
        # org0's two threads together, then the next organisations' first mails
        assert await claim(one, 4) == [*firsts[:3], stored.spool_id]
        assert await claim(two, 100) == firsts[3:]
        await release(one)
        assert await claim(one, 100) == [*firsts[:3], stored.spool_id]  # 3-7: the other's
        await release(one)
        # A session that ends (its instance died) lets go of its claims with it; the next
        # claim of its instance connects again.
        pid = await two.blocking.in_session(
            lambda conn: conn.exec_driver_sql("SELECT pg_backend_pid()").scalar(), "claims"
        )
        await count(one, f"SELECT count(pg_terminate_backend({int(pid)}))")
        gone = f"SELECT count(*) FROM pg_stat_activity WHERE pid = {int(pid)}"
        while await count(one, gone):  # noqa: ASYNC110 - another process ends
            await asyncio.sleep(0.01)
        assert await claim(one, 100) == [*firsts, stored.spool_id]
        await release(one)
        assert await claim(two, 100) == [*firsts, stored.spool_id]
        await release(two)
        # The workers of both, round after round: each mail applied once, a thread's in
        # its order (the replies threaded); after their rounds nothing is held.
        done: list[Outcome] = []
        while found := await asyncio.gather(one.processor.run_due(), two.processor.run_due()):
            if not any(found):
                break
            done += [o for outcomes in found for o in outcomes]
        assert sorted(o.spool_id for o in done) == sorted(thread_of)
        created = sorted(o.spool_id for o in done if o.action is Action.CREATED)
        assert created == [*firsts, stored.spool_id]
        assert await count(one, "SELECT count(*) FROM tickets") == 9  # replies threaded
        held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        assert await count(one, held) == 0
    finally:
        await one.close()
        await two.close()


def rows_read(plan: dict[str, Any], table: str) -> int:
    """The rows a plan (``EXPLAIN (ANALYZE, FORMAT JSON)``) read from ``table``: those its
    scans of it returned and those their filters removed, over every loop."""
    node_rows = 0
    if plan.get("Relation Name") == table:
        each = plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0)
        node_rows = each * plan["Actual Loops"]
    return node_rows + sum(rows_read(child, table) for child in plan.get("Plans", []))


async def test_a_claim_reads_the_backlog_once_whatever_the_statistics_say(
    make_config: Callable[..., Config],
) -> None:
    """With statistics from when the spool was empty (a new installation, a burst after a
    quiet night), a claim must still read each pending mail a bounded number of times,
    not walk the whole backlog again for each mail it lists (it did: 160,160 rows read to
    claim 32 of these 1,000)."""
    app = await build_app(make_config(worker={"processes": 0}))
    try:
        await app.blocking.write(lambda conn: conn.exec_driver_sql("ANALYZE spool"))
        backlog = 1000  # each its own thread, from 40 organisations
        await app.blocking.write(
            lambda conn: conn.exec_driver_sql(
                "INSERT INTO spool (dedupe_key, raw_sha256, size, source, envelope_to, thread,"
                " sender_key, received_at, state, attempts, next_attempt_at)"
                " SELECT 'k' || x, 'sha', 100, 'smtp', '', '<t' || x || '@org.nl>',"
                f" 'org' || mod(x, 40) || '.nl', now(), 'pending', 0, now()"
                f" FROM generate_series(1, {backlog}) AS x"
            )
        )
        now = app.clock.now()
        other = await build_app(make_config(worker={"processes": 0}))
        try:  # another worker holds the senders of the oldest 32
            held = await other.blocking.in_session(
                lambda conn: SpoolRepo(conn).claim_due(now, 32), "claims"
            )
            with recorded(app) as statements:
                listed = await app.blocking.in_session(
                    lambda conn: SpoolRepo(conn).claim_due(now, 32), "claims"
                )
            assert len(held) == len(listed) == 32 and not {*held} & {*listed}
            (sql, params), *_ = (s for s in statements if "pg_try_advisory_lock" in s[0])
            await app.blocking.in_session(lambda conn: SpoolRepo(conn).release_claims(), "claims")
            analyzed = await app.blocking.in_session(
                lambda conn: conn.exec_driver_sql(
                    f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params
                ).scalar_one(),
                "claims",
            )
            await app.blocking.in_session(lambda conn: SpoolRepo(conn).release_claims(), "claims")
        finally:
            await other.close()
        assert rows_read(analyzed[0]["Plan"], "spool") <= 2 * backlog
    finally:
        await app.close()
