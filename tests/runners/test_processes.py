"""The worker in processes of its own (PostgreSQL): real processes, a real cluster."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable

import pytest

from mailgate.app import App, build_app
from mailgate.config import Config
from mailgate.errors import StorageUnavailable, TicketBusy
from mailgate.intake.spool import Received
from mailgate.runners.processes import WorkerProcess
from mailgate.store.repos import Tx
from mailgate.store.repos.spool import SpoolRepo
from mailgate.tickets.arrival import Outcome
from tests.mails import make_mail
from tests.runners.test_batch import count

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
        first = app.workers[0]
        assert isinstance(first, WorkerProcess)
        await first.run_due(0)  # started
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


async def test_shares_split_the_due_mail_and_keep_a_threads_mails_together(
    make_config: Callable[..., Config],
) -> None:
    """One customer opens eight threads; each gets a reply (In-Reply-To) and a reply to
    that (References): the shares hold each mail once, a thread's mails in one share, and
    one sender's threads spread over the shares."""
    app = await build_app(make_config(worker={"processes": 0}))
    try:
        thread_of: dict[int, int] = {}
        for t in range(8):
            root = f"<root-{t}@org.nl>"
            for raw in (
                make_mail(subject=f"Vraag {t}", message_id=root),
                make_mail(subject=f"Re: Vraag {t}", in_reply_to=root),
                make_mail(subject=f"Re: Vraag {t}", references=f"{root} <reply-{t}@org.nl>"),
            ):
                stored = await app.spool.store(Received(raw, "smtp", envelope_from="klant@org.nl"))
                thread_of[stored.spool_id] = t
        now = app.clock.now()

        async def listed(share: tuple[int, int] | None) -> list[int]:
            return await app.blocking.read(
                lambda conn: [i for i, _ in SpoolRepo(conn).due_sizes(now, 100, share)]
            )

        everything = await listed(None)
        shares = [await listed((i, 3)) for i in range(3)]
        assert sorted(everything) == sorted(thread_of)
        assert sorted(i for share in shares for i in share) == sorted(thread_of)  # each once
        assert sum(1 for share in shares if share) >= 2  # one sender's threads spread
        for share in shares:  # a thread's three mails are in one share
            threads = {thread_of[i] for i in share}
            assert len(share) == 3 * len(threads)
    finally:
        await app.close()


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


async def test_workers_claim_whole_threads_so_that_none_gathers_what_another_holds(
    make_config: Callable[..., Config],
) -> None:
    """Two instances list the spool at once: each mail is listed by one, a thread's later
    mails are passed over while another worker holds its first, and a worker's round lets
    go of what it claimed (so does a session that ends)."""
    config = make_config(worker={"processes": 0})
    one, two = await build_app(config), await build_app(config)
    try:
        thread_of: dict[int, int] = {}
        for step in range(3):  # eight threads, their first mails first, then the replies
            for t in range(8):
                root = f"<root-{t}@org.nl>"
                raw = [
                    make_mail(subject=f"Vraag {t}", message_id=root),
                    make_mail(subject=f"Re: Vraag {t}", in_reply_to=root),
                    make_mail(subject=f"Re: Vraag {t}", references=f"{root} <r-{t}@org.nl>"),
                ][step]
                stored = await one.spool.store(Received(raw, "smtp", envelope_from="k@org.nl"))
                thread_of[stored.spool_id] = t
        now = one.clock.now()

        async def claim(app: App, limit: int) -> set[int]:
            listed = await app.blocking.in_session(
                lambda conn: SpoolRepo(conn).claim_due(now, limit, None), "claims"
            )
            return {thread_of[i] for i, _ in listed}

        async def release(app: App) -> None:
            await app.blocking.in_session(lambda conn: SpoolRepo(conn).release_claims(), "claims")

        assert await claim(one, 4) == {0, 1, 2, 3}  # the four oldest mails' threads
        assert await claim(two, 100) == {4, 5, 6, 7}  # not the replies in 0-3
        await release(one)
        assert await claim(one, 100) == {0, 1, 2, 3}  # 4-7 are still the other's
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
        assert await claim(one, 100) == set(range(8))
        await release(one)
        assert await claim(two, 100) == set(range(8))
        await release(two)
        # The workers of both: each mail applied once; after their rounds nothing is held.
        done = await asyncio.gather(one.processor.run_due(), two.processor.run_due())
        done += await asyncio.gather(one.processor.run_due(), two.processor.run_due())
        assert sorted(o.spool_id for outcomes in done for o in outcomes) == sorted(thread_of)
        assert await count(one, "SELECT count(*) FROM tickets") == 8  # replies threaded
        held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        assert await count(one, held) == 0
    finally:
        await one.close()
        await two.close()
