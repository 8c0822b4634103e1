"""Workflow timers and SLA alarms of tickets. Blocking, on one ``Connection``."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, bindparam, insert, select, update

from mailgate.store.tables import table

TIMERS = table("timers")
SLA_PREFIX = "sla_"  # timers whose trigger starts so are SLA alarms, not workflow timers


_ARM = insert(TIMERS)
_PENDING = update(TIMERS).where(
    TIMERS.c.ticket_id == bindparam("ticket"), TIMERS.c.state == "pending"
)
_IS_SLA = TIMERS.c.trigger.startswith(SLA_PREFIX)
_CANCEL = {
    None: _PENDING.values(state="cancelled"),
    True: _PENDING.where(_IS_SLA).values(state="cancelled"),
    False: _PENDING.where(~_IS_SLA).values(state="cancelled"),
}


class TimerRepo:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def arm(
        self, ticket: int, status: str, timers: Iterable[tuple[str, datetime]], now: datetime
    ) -> None:
        """Arm timers (trigger, due) of a ticket in ``status``, in one statement."""
        rows = [
            {
                "ticket_id": ticket,
                "trigger": trigger,
                "status": status,
                "due_at": due,
                "state": "pending",
                "armed_at": now,
            }
            for trigger, due in timers
        ]
        if rows:
            self.conn.execute(_ARM, rows)

    def cancel(self, ticket: int, *, sla: bool | None = None) -> None:
        """Cancel a ticket's pending timers: all, only SLA alarms (``sla=True``), or only the
        workflow's (``sla=False``)."""
        self.conn.execute(_CANCEL[sla], {"ticket": ticket})

    def due(self, now: datetime, limit: int) -> list[int]:
        rows = self.conn.execute(
            select(TIMERS.c.id)
            .where(TIMERS.c.state == "pending", TIMERS.c.due_at <= now)
            .order_by(TIMERS.c.due_at, TIMERS.c.id)
            .limit(limit)
        )
        return list(rows.scalars())

    def claim(self, timer_id: int, now: datetime) -> tuple[int, str, str] | None:
        """Mark a pending timer fired; (ticket, trigger, status when armed), or None when it
        fired or was cancelled already (by another instance, or a change in between)."""
        row = self.conn.execute(
            update(TIMERS)
            .where(TIMERS.c.id == timer_id, TIMERS.c.state == "pending")
            .values(state="fired", fired_at=now)
            .returning(TIMERS.c.ticket_id, TIMERS.c.trigger, TIMERS.c.status)
        ).first()
        return None if row is None else (row[0], row[1], row[2])
