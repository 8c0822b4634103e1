"""The web desk's ticket list: one page of tickets filtered, searched and sorted in SQL.

Blocking, on one ``Connection``. Filters are on indexed columns of ``tickets``
(status, action_by, queue); the search is ``store.search``'s (words in titles and
message texts, notes too, by full-text index; participants' addresses and reference
fields exactly). Pages are
``PAGE`` rows; one more row is read to tell whether a next page exists, never a count
of all matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, case, exists, func, select

from mailgate.core.model import PRIORITIES
from mailgate.store.repos.history import HELD_DECISIONS
from mailgate.store.search import condition
from mailgate.store.tables import table

TICKETS = table("tickets")
MESSAGES = table("messages")
PARTICIPANTS = table("participants")
FIELDS = table("ticket_fields")
EVENTS = table("events")
PAGE = 50
SORTS = ("priority", "type", "sla", "updated", "number")
# "Incidents first": the most urgent, among them bugs first (then by number).
_TYPE_ORDER = ("bug", "question", "configuration_change", "extra_request", "feedback")


@dataclass(frozen=True, slots=True)
class TicketQuery:
    """What the list shows: ``statuses`` (empty: all), the other filters exact, ``search``
    a substring; ``assignee`` "-" for unassigned."""

    statuses: tuple[str, ...] = ()
    queue: str = ""
    type: str = ""
    priority: str = ""
    requester: str = ""
    organisation: str = ""
    assignee: str = ""
    search: str = ""
    sort: str = "priority"
    page: int = 1


@dataclass(frozen=True, slots=True)
class ListedTicket:
    number: int
    title: str
    queue: str
    type: str
    priority: str
    status: str
    action_by: str
    requester: str | None
    organisation: str | None
    assignee: str | None
    updated_at: datetime
    answer_due: datetime | None
    solve_due: datetime | None


def _rank(column: Any, order: tuple[str, ...]) -> Any:
    return case({value: n for n, value in enumerate(order)}, value=column, else_=len(order))


def _order(sort: str) -> list[Any]:
    t = TICKETS.c
    if sort == "type":
        return [_rank(t.type, _TYPE_ORDER), t.id]
    if sort == "sla":  # the first target due first; tickets without one last
        due = func.coalesce(t.sla_answer_due, t.sla_solve_due)
        return [due.is_(None), due, t.id]
    if sort == "updated":
        return [t.updated_at.desc(), t.id.desc()]
    if sort == "number":
        return [t.id.desc()]
    return [_rank(t.priority, PRIORITIES), _rank(t.type, _TYPE_ORDER), t.id]


def list_tickets(conn: Connection, q: TicketQuery) -> tuple[list[ListedTicket], bool]:
    """One page of the tickets ``q`` asks for, and whether there is a page after it."""
    t = TICKETS.c
    query = select(
        t.id, t.title, t.queue, t.type, t.priority, t.status, t.action_by, t.requester,
        t.organisation, t.assignee, t.updated_at, t.sla_answer_due, t.sla_solve_due,
    ).where(t.merged_into.is_(None))  # fmt: skip
    if q.statuses:
        query = query.where(t.status.in_(q.statuses))
    for column, value in (
        (t.queue, q.queue),
        (t.type, q.type),
        (t.priority, q.priority),
    ):
        if value:
            query = query.where(column == value)
    if q.requester:
        query = query.where(func.lower(t.requester) == q.requester.lower())
    if q.organisation:
        query = query.where(func.lower(t.organisation) == q.organisation.lower())
    if q.assignee == "-":
        query = query.where(t.assignee.is_(None))
    elif q.assignee:
        query = query.where(func.lower(t.assignee) == q.assignee.lower())
    if q.search.strip():
        query = query.where(condition(conn, q.search))
    page = max(q.page, 1)
    rows = conn.execute(
        query.order_by(*_order(q.sort if q.sort in SORTS else "priority"))
        .limit(PAGE + 1)
        .offset((page - 1) * PAGE)
    ).all()
    listed = [ListedTicket(*tuple(row)) for row in rows[:PAGE]]
    return listed, len(rows) > PAGE


def dues(conn: Connection, number: int) -> tuple[datetime | None, datetime | None]:
    """The ticket's answer and solve targets (its SLA clock's dues), or (None, None)."""
    row = conn.execute(
        select(TICKETS.c.sla_answer_due, TICKETS.c.sla_solve_due).where(TICKETS.c.id == number)
    ).first()
    return (None, None) if row is None else (row[0], row[1])


def latest_change(conn: Connection) -> str:
    """A mark that changes whenever a ticket changes: the list reloads when it moves."""
    row = conn.execute(select(func.max(TICKETS.c.updated_at), func.max(TICKETS.c.id))).first()
    return "" if row is None else f"{row[0]}|{row[1]}"


def status_since(conn: Connection, number: int) -> datetime | None:
    """Since when the ticket has its status (None: not recorded)."""
    found: datetime | None = conn.execute(
        select(TICKETS.c.status_since).where(TICKETS.c.id == number)
    ).scalar()
    return found


@dataclass(frozen=True, slots=True)
class HeldMail:
    ticket: int
    title: str
    from_addr: str
    at: datetime
    text: str


def held_mails(conn: Connection, limit: int = 200) -> list[HeldMail]:
    """Held mails the team has not decided on yet, oldest first (found by their
    ``message_held`` events, which ``ix_events_kind_new`` finds)."""
    e, d, m = EVENTS.c, EVENTS.alias("decided").c, MESSAGES.c
    rows = conn.execute(
        select(e.ticket_id, TICKETS.c.title, m.from_addr, m.created_at, m.visible_text)
        .join(MESSAGES, m.id == e.message_row_id)
        .join(TICKETS, TICKETS.c.id == e.ticket_id)
        .where(
            e.kind == "message_held",
            ~exists().where(d.kind.in_(HELD_DECISIONS), d.message_row_id == e.message_row_id),
        )
        .order_by(e.id)
        .limit(limit)
    )
    return [HeldMail(r[0], r[1], r[2] or "", r[3], (r[4] or "")[:300]) for r in rows]
