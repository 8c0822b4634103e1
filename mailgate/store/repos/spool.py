"""The spool aggregate: received mails and how far their processing got.

With their raw bytes until the worker moved them to the blob store. Blocking, on one
``Connection`` (or the SQLite driver itself on the path of every SMTP 250)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Text,
    bindparam,
    cast,
    delete,
    func,
    select,
    update,
)

from mailgate.core.model import SpoolEntry
from mailgate.store.driver import run
from mailgate.store.tables import PENDING_ROWS, table

SPOOL = table("spool")
SPOOL_RAW = table("spool_raw")
PENDING = "pending"
DONE = "done"
QUARANTINED = "quarantined"


def spool_entry(row: Any) -> SpoolEntry:
    return SpoolEntry(
        id=row.id,
        dedupe_key=row.dedupe_key,
        raw_sha256=row.raw_sha256,
        size=row.size,
        message_id=row.message_id,
        source=row.source,
        envelope_from=row.envelope_from,
        envelope_to=tuple(a for a in row.envelope_to.split("\n") if a),
        received_at=row.received_at,
        state=row.state,
        attempts=row.attempts,
        outcome=row.outcome,
        ticket=row.ticket_id,
        reason=row.reason,
        error=row.error,
        traceback_id=row.traceback_id,
        processed_at=row.processed_at,
    )


# The first key of a claimed sender's advisory lock (the two-key form: apart from the
# one-key locks of leadership, the caps and migrations) and how many of the oldest due
# mails one listing looks through for senders no other worker holds.
CLAIM_CLASS = 0x6D67  # "mg"
CLAIM_WINDOW = 2048
# What a worker claims a mail by: what an automatic answer to it would count against (its
# sender's organisation domain or mailbox), else (a mail stored before the spool knew it,
# one without a sender) its thread or id.
_CLAIMED_BY = func.coalesce(SPOOL.c.sender_key, SPOOL.c.thread, cast(SPOOL.c.id, Text))


def _due(now: datetime, *, key: bool = False) -> Any:
    """The pending mails due at ``now``, oldest first: ``PENDING_ROWS``, as the partial
    index ``ix_spool_pending`` names them, read in their order through it, never by a
    scan of the done mails (of years)."""
    columns = [SPOOL.c.id, SPOOL.c.size] + ([_CLAIMED_BY.label("key")] if key else [])
    query = select(*columns).where(PENDING_ROWS, SPOOL.c.next_attempt_at <= now)
    return query.order_by(SPOOL.c.id)


def _claimable(now: datetime) -> Any:
    """What a worker may claim among the ``CLAIM_WINDOW`` oldest due mails: each thread's
    first (a follow-up waits until the mail it answers is applied, whichever worker has
    it), a sender's mails together, the senders in the order of their oldest mail.

    An earlier due mail of a thread in the window is in the window too (it is the oldest
    mails), so the window alone tells which mail comes first: read once through
    ``ix_spool_pending`` whatever the planner's statistics say. (A join with the earlier
    mails of each thread was planned, while the statistics still said the spool was
    small, as a walk through every pending mail for each one listed: 13 ms a claim with
    1,500 pending, growing with the backlog.) A sender's mails together: a claim of the
    oldest mails one by one held a sender for each, and with a backlog from fewer senders
    than two batches one worker held them all, round after round, while the other had
    nothing to claim."""
    window = _due(now, key=True).add_columns(SPOOL.c.thread).limit(CLAIM_WINDOW).subquery()
    thread = func.coalesce(window.c.thread, cast(window.c.id, Text))
    first = func.min(window.c.id).over(partition_by=thread)
    senders_first = func.min(window.c.id).over(partition_by=window.c.key)
    ranked = select(
        window.c.id,
        window.c.size,
        window.c.key,
        first.label("first"),
        senders_first.label("senders_first"),
    ).subquery()
    return (
        select(ranked.c.id, ranked.c.size, ranked.c.key)
        .where(ranked.c.id == ranked.c.first)
        .order_by(ranked.c.senders_first, ranked.c.id)
        .limit(CLAIM_WINDOW)  # a fence: the holding outside must not be pushed before the order
        .subquery()
    )


_CLAIM = (
    select(SPOOL.c.id)
    .where(SPOOL.c.id.in_(bindparam("ids", expanding=True)), SPOOL.c.state == PENDING)
    .with_for_update(skip_locked=True)
)
_FINISH = (
    update(SPOOL)
    .where(SPOOL.c.id == bindparam("spool_id"))
    .values(
        state=DONE,
        outcome=bindparam("outcome"),
        ticket_id=bindparam("ticket"),
        reason=bindparam("reason"),
        processed_at=bindparam("now"),
        attempts=SPOOL.c.attempts + 1,
    )
)
_DROP_RAW = delete(SPOOL_RAW).where(SPOOL_RAW.c.spool_id == bindparam("id"))


@dataclass(frozen=True, slots=True)
class Finished:
    """A spool item done, as the batch records it."""

    spool_id: int
    outcome: str
    ticket: int | None
    reason: str
    at: datetime
    drop_raw: bool  # the bytes are in the blob store now: the spool's copy goes


class SpoolRepo:
    """The worker's side of the spool: what is due, claim, finish, defer, quarantine."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def due(self, now: datetime, limit: int) -> list[int]:
        """Ids of pending mails whose next attempt is due, oldest first."""
        return [spool_id for spool_id, _ in self.due_sizes(now, limit)]

    def due_sizes(self, now: datetime, limit: int) -> list[tuple[int, int]]:
        """(id, size in bytes) of pending mails whose next attempt is due, oldest first."""
        rows = run(self.conn, _due(now).limit(limit))
        return [(int(i), int(size)) for i, size in rows]

    def claim_due(self, now: datetime, limit: int) -> list[tuple[int, int]]:
        """PostgreSQL, on a session of the caller's own outside any transaction: as
        ``due_sizes``, but what ``_claimable`` lists (a thread's first due mail, a sender's
        mails together), and each mail's sender (what an automatic answer to it would
        count against) held for this session
        (``pg_try_advisory_lock``) until ``release_claims``, the mails of the senders
        another session holds passed over.
        Workers of several instances (or processes) that list the spool at the same time
        therefore never gather the same mail (parse it, move its bytes) only for one to
        apply it; a sender's mails are in one worker's hands at a time, so that no worker
        waits for another's hold on the caps they count against; and a follow-up is never
        applied before or beside the mail it answers. The claim is a courtesy, not what
        makes a mail apply once: that is the transaction's row lock (``claim``)."""
        window = _claimable(now)
        held = func.pg_try_advisory_lock(CLAIM_CLASS, func.hashtext(window.c.key))
        # No ORDER BY outside: it could sort (and try to hold) the whole window first; the
        # subquery's order comes through, and the limit stops the holding at ``limit``.
        rows = run(self.conn, select(window.c.id, window.c.size).where(held).limit(limit))
        return sorted((int(i), int(size)) for i, size in rows)

    def release_claims(self) -> None:
        """Let go of every sender this session holds (``claim_due``)."""
        run(self.conn, select(func.pg_advisory_unlock_all()))

    def load(self, spool_ids: Sequence[int]) -> list[tuple[SpoolEntry, bytes | None]]:
        """The pending ones of ``spool_ids``, each with its bytes while the spool still
        holds them (None once moved into the blob store): one query."""
        if not spool_ids:
            return []
        rows = run(
            self.conn,
            select(SPOOL, SPOOL_RAW.c.raw)
            .outerjoin(SPOOL_RAW, SPOOL_RAW.c.spool_id == SPOOL.c.id)
            .where(SPOOL.c.id.in_(list(spool_ids)), SPOOL.c.state == PENDING)
            .order_by(SPOOL.c.id),
        )
        return [(spool_entry(r), None if r.raw is None else bytes(r.raw)) for r in rows]

    def get(self, spool_id: int) -> SpoolEntry | None:
        row = run(self.conn, select(SPOOL).where(SPOOL.c.id == spool_id)).first()
        return None if row is None else spool_entry(row)

    def claim(self, spool_ids: Sequence[int]) -> set[int]:
        """Hold the pending ones of ``spool_ids`` for this transaction: those still pending
        and (PostgreSQL) not held by another worker's transaction, which are skipped."""
        if not spool_ids:
            return set()
        return set(run(self.conn, _CLAIM, {"ids": list(spool_ids)}).scalars())

    def finish(self, done: Sequence[Finished]) -> None:
        """Mark items done, in two statements for a whole batch."""
        if not done:
            return
        run(
            self.conn,
            _FINISH,
            [
                {
                    "spool_id": d.spool_id,
                    "outcome": d.outcome,
                    "ticket": d.ticket,
                    "reason": d.reason,
                    "now": d.at,
                }
                for d in done
            ],
        )
        moved = [{"id": d.spool_id} for d in done if d.drop_raw]
        if moved:
            run(self.conn, _DROP_RAW, moved)

    def drop_raw(self, spool_id: int) -> None:
        run(self.conn, _DROP_RAW, {"id": spool_id})

    def defer(self, spool_id: int, *, error: str, retry_at: datetime) -> int:
        """Count a failed attempt and set the next one; returns the attempts so far."""
        found = run(
            self.conn,
            update(SPOOL)
            .where(SPOOL.c.id == spool_id)
            .values(attempts=SPOOL.c.attempts + 1, error=error, next_attempt_at=retry_at)
            .returning(SPOOL.c.attempts),
        ).first()
        return 0 if found is None else int(found[0])

    def quarantine(
        self, spool_id: int, *, error: str, traceback_id: str, traceback: str, now: datetime
    ) -> None:
        run(
            self.conn,
            update(SPOOL)
            .where(SPOOL.c.id == spool_id)
            .values(
                state=QUARANTINED,
                outcome="quarantined",
                error=error,
                traceback_id=traceback_id,
                traceback=traceback,
                processed_at=now,
                attempts=SPOOL.c.attempts + 1,
            ),
        )

    def requeue(self, spool_ids: Iterable[int] | None, now: datetime) -> list[int]:
        """Put quarantined mails back in line; all of them when ``spool_ids`` is None."""
        query = update(SPOOL).where(SPOOL.c.state == QUARANTINED)
        if spool_ids is not None:
            query = query.where(SPOOL.c.id.in_(list(spool_ids)))
        rows = run(
            self.conn,
            query.values(state=PENDING, next_attempt_at=now, outcome=None).returning(SPOOL.c.id),
        )
        return sorted(rows.scalars())
