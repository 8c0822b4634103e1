"""One transaction's repositories, on one connection."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select

from mailgate.store.driver import plain, run
from mailgate.store.repos.history import HistoryRepo
from mailgate.store.repos.outbox import OutboxRepo
from mailgate.store.repos.spool import SpoolRepo
from mailgate.store.repos.tickets import TicketRepo
from mailgate.store.repos.timers import TimerRepo
from mailgate.store.tables import table

BLOBS = table("blobs")
_SAVEPOINTS = itertools.count(1)  # names unique in the process, whatever the nesting


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
        """A nested transaction: an exception rolls back what was written inside it only.
        On the driver's cursor (``store.driver``): SQLAlchemy's ``begin_nested`` costs two
        full statement executions a mail around two lines of SQL."""
        conn = self.conn
        if conn.dialect.is_async:  # the shell's engines: SQLAlchemy's own
            with conn.begin_nested():
                yield
            return
        name = f"mail_{next(_SAVEPOINTS)}"
        plain(conn, f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            plain(conn, f"ROLLBACK TO SAVEPOINT {name}")
            raise
        plain(conn, f"RELEASE SAVEPOINT {name}")

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
