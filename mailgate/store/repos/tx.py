"""One transaction's repositories, on one connection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select

from mailgate.store.driver import run
from mailgate.store.repos.history import HistoryRepo
from mailgate.store.repos.outbox import OutboxRepo
from mailgate.store.repos.spool import SpoolRepo
from mailgate.store.repos.tickets import TicketRepo
from mailgate.store.repos.timers import TimerRepo
from mailgate.store.tables import table

BLOBS = table("blobs")


@dataclass(frozen=True, slots=True)
class Tx:
    """The repositories of one transaction: spool, tickets, history, timers, outbox, blobs."""

    conn: Connection
    spool: SpoolRepo
    tickets: TicketRepo
    history: HistoryRepo
    timers: TimerRepo
    outbox: OutboxRepo

    @classmethod
    def on(cls, conn: Connection) -> Tx:
        return cls(
            conn,
            SpoolRepo(conn),
            TicketRepo(conn),
            HistoryRepo(conn),
            TimerRepo(conn),
            OutboxRepo(conn),
        )

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction: an exception rolls back what was written inside it only."""
        with self.conn.begin_nested():
            yield

    def put_blobs(self, blobs: dict[str, bytes]) -> None:
        """Store bytes once under their hash (``[general] blobs = "database"``)."""
        if not blobs:
            return
        known = set(
            run(self.conn, select(BLOBS.c.sha256).where(BLOBS.c.sha256.in_(list(blobs)))).scalars()
        )
        fresh = [{"sha256": k, "data": v} for k, v in blobs.items() if k not in known]
        if fresh:
            run(self.conn, insert(BLOBS), fresh)
