"""Workflow timers, SLA alarms and the SLA clock of tickets. Blocking, on one ``Connection``."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, bindparam, insert, select, update

from mailgate.core.sla import SlaClock
from mailgate.store.driver import run
from mailgate.store.tables import table

TIMERS = table("timers")
TICKETS = table("tickets")
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

_SLA_CLOCK = select(
    TICKETS.c.sla_consumed,
    TICKETS.c.sla_running_since,
    TICKETS.c.sla_answered_at,
    TICKETS.c.sla_solved_at,
    TICKETS.c.sla_agreed_solve,
    TICKETS.c.sla_fixed_due,
).where(TICKETS.c.id == bindparam("id"))
_SLA_SAVE = update(TICKETS).where(TICKETS.c.id == bindparam("number"))  # with ``sla_values``


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
            run(self.conn, _ARM, rows)

    def cancel(self, ticket: int, *, sla: bool | None = None) -> None:
        """Cancel a ticket's pending timers: all, only SLA alarms (``sla=True``), or only the
        workflow's (``sla=False``)."""
        run(self.conn, _CANCEL[sla], {"ticket": ticket})

    def due(self, now: datetime, limit: int) -> list[int]:
        rows = run(
            self.conn,
            select(TIMERS.c.id)
            .where(TIMERS.c.state == "pending", TIMERS.c.due_at <= now)
            .order_by(TIMERS.c.due_at, TIMERS.c.id)
            .limit(limit),
        )
        return list(rows.scalars())

    def claim(self, timer_id: int, now: datetime) -> tuple[int, str, str] | None:
        """Mark a pending timer fired; (ticket, trigger, status when armed), or None when it
        fired or was cancelled already (by another instance, or a change in between)."""
        row = run(
            self.conn,
            update(TIMERS)
            .where(TIMERS.c.id == timer_id, TIMERS.c.state == "pending")
            .values(state="fired", fired_at=now)
            .returning(TIMERS.c.ticket_id, TIMERS.c.trigger, TIMERS.c.status),
        ).first()
        return None if row is None else (row[0], row[1], row[2])

    # --- the SLA clock (columns of the ticket row) -------------------------------------

    def sla_clock(self, number: int) -> SlaClock:
        row = run(self.conn, _SLA_CLOCK, {"id": number}).one()
        return SlaClock(
            consumed=row.sla_consumed,
            running_since=row.sla_running_since,
            answered_at=row.sla_answered_at,
            solved_at=row.sla_solved_at,
            agreed_solve=row.sla_agreed_solve,
            fixed_solve_due=row.sla_fixed_due,
        )

    def sla_save(
        self,
        number: int,
        clock: SlaClock,
        *,
        answer_due: datetime | None,
        solve_due: datetime | None,
    ) -> None:
        run(self.conn, _SLA_SAVE, {**sla_values(clock, answer_due, solve_due), "number": number})


def sla_values(
    clock: SlaClock, answer_due: datetime | None, solve_due: datetime | None
) -> dict[str, object]:
    return {
        "sla_consumed": clock.consumed,
        "sla_running_since": clock.running_since,
        "sla_answered_at": clock.answered_at,
        "sla_solved_at": clock.solved_at,
        "sla_agreed_solve": clock.agreed_solve,
        "sla_fixed_due": clock.fixed_solve_due,
        "sla_answer_due": answer_due,
        "sla_solve_due": solve_due,
    }
