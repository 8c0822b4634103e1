"""The ticket aggregate: tickets, their fields and participants, and routing lookups.

Blocking and statement by statement on one ``Connection`` (Core, not the ORM's unit
of work): the intake worker runs a whole batch of mails through it in one call on
its own connection, and the shell's ``Repo`` reaches it through ``run_sync``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update
from sqlalchemy.exc import DBAPIError

from mailgate.core.desk import TicketState
from mailgate.core.model import (
    Participant,
    Role,
    TicketView,
)
from mailgate.core.notify import TEAM_KINDS
from mailgate.core.route import Lookup
from mailgate.core.sla import SlaClock
from mailgate.errors import TicketBusy
from mailgate.store.driver import run
from mailgate.store.repos.timers import sla_values
from mailgate.store.tables import table

TICKETS = table("tickets")
MESSAGES = table("messages")
PARTICIPANTS = table("participants")
ATTACHMENTS = table("attachments")
EVENTS = table("events")
OUTBOX = table("outbox")
_TEAM_KINDS = frozenset(kind.value for kind in TEAM_KINDS)

# The worker's statements, built once: building one and computing its cache key costs
# more than SQLite takes to run it.
_OUTBOX_BY_MID = select(OUTBOX.c.message_id, OUTBOX.c.id, OUTBOX.c.kind).where(
    OUTBOX.c.message_id.in_(bindparam("mids", expanding=True))
)
_TICKET_BY_MID = (
    select(MESSAGES.c.message_id, MESSAGES.c.ticket_id)
    .where(MESSAGES.c.message_id.in_(bindparam("mids", expanding=True)))
    .order_by(MESSAGES.c.id)
)
_MERGED = select(TICKETS.c.id, TICKETS.c.merged_into).where(
    TICKETS.c.id.in_(bindparam("ids", expanding=True))
)
_CREATE = insert(TICKETS).returning(TICKETS.c.id)
# The fields of a new ticket that nothing sets yet.
_NEW = {"assignee": None, "approval": "none", "quote": "", "merged_into": None, "version": 1}
# The columns to set come with the parameters; the version always goes up by one.
_UPDATE = (
    update(TICKETS).where(TICKETS.c.id == bindparam("number")).values(version=TICKETS.c.version + 1)
)
FIELDS = table("ticket_fields")
_FIELDS = select(FIELDS.c.name, FIELDS.c.value).where(FIELDS.c.ticket_id == bindparam("id"))
_QUOTE = select(TICKETS.c.quote).where(TICKETS.c.id == bindparam("id"))
_RATING = select(TICKETS.c.status, TICKETS.c.type, TICKETS.c.priority).where(
    TICKETS.c.id == bindparam("id")
)
_PEOPLE = (
    select(
        PARTICIPANTS.c.address,
        PARTICIPANTS.c.name,
        PARTICIPANTS.c.role,
        PARTICIPANTS.c.organisation,
    )
    .where(PARTICIPANTS.c.ticket_id == bindparam("id"))
    .order_by(PARTICIPANTS.c.id)
)
_ADD_PEOPLE = insert(PARTICIPANTS)
# A ticket's row with its people in one statement: a row per participant (the ticket's
# columns repeated, a few people at most), one row of NULL people for a ticket without.
_WITH_PEOPLE = TICKETS.outerjoin(PARTICIPANTS, PARTICIPANTS.c.ticket_id == TICKETS.c.id)
_PERSON = (
    PARTICIPANTS.c.address.label("p_address"),
    PARTICIPANTS.c.name.label("p_name"),
    PARTICIPANTS.c.role.label("p_role"),
    PARTICIPANTS.c.organisation.label("p_organisation"),
)
_STATE = (
    select(
        TICKETS.c.status,
        TICKETS.c.type,
        TICKETS.c.priority,
        TICKETS.c.assignee,
        TICKETS.c.approval,
        *_PERSON,
    )
    .select_from(_WITH_PEOPLE)
    .where(TICKETS.c.id == bindparam("id"))
    .order_by(PARTICIPANTS.c.id)
)
# Only the ticket's row is locked (PostgreSQL locks no row of the outer join's NULL side).
_STATE_LOCKED = _STATE.with_for_update(of=TICKETS)
_STATE_LOCKED_NOWAIT = _STATE.with_for_update(of=TICKETS, nowait=True)
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a NOWAIT lock another holds
_VIEW = (
    select(TICKETS, *_PERSON)
    .select_from(_WITH_PEOPLE)
    .where(TICKETS.c.id == bindparam("id"))
    .order_by(PARTICIPANTS.c.id)
)


def _participant(row: Any) -> Participant:
    return Participant(row.address, row.name, Role(row.role), row.organisation)


def _people_of(rows: Sequence[Any]) -> tuple[Participant, ...]:
    """The participants of ``_WITH_PEOPLE``'s rows (none: the one row's are NULL)."""
    return tuple(
        Participant(r.p_address, r.p_name, Role(r.p_role), r.p_organisation)
        for r in rows
        if r.p_address is not None
    )


class TicketRepo:
    """Tickets and everything that hangs off one ticket."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        # Whether ``state(lock=True)`` may wait for a ticket another transaction holds: a
        # batch's later mails may not (``TicketBusy``), see ``runners.worker``.
        self.wait_for_rows = True

    # --- routing ---------------------------------------------------------------------

    def lookup(
        self,
        message_ids: Sequence[str],
        numbers: Iterable[int],
        returned_ids: Sequence[str] = (),
    ) -> Lookup:
        """What the database knows of a mail's evidence; ``returned_ids``: Message-IDs a
        bounce returns, looked up among the outbox's mails. At most three indexed queries,
        none when the mail names nothing."""
        outbox: dict[str, int] = {}
        team: set[str] = set()
        wanted_out = list({*message_ids, *returned_ids})
        if wanted_out:
            returned = set(returned_ids)
            found = run(self.conn, _OUTBOX_BY_MID, {"mids": wanted_out})
            for mid, outbox_id, kind in found:
                if mid in returned:
                    outbox[mid] = outbox_id
                if kind in _TEAM_KINDS:
                    team.add(mid)
        by_mid: dict[str, int] = {}
        if message_ids:
            rows = run(self.conn, _TICKET_BY_MID, {"mids": list(message_ids)})
            for found_mid, ticket in rows:
                by_mid[found_mid] = ticket
        wanted = list(set(numbers))
        existing: set[int] = set()
        merged: dict[int, int] = {}
        while wanted:
            found_tickets = run(self.conn, _MERGED, {"ids": wanted})
            wanted = []
            for number, into in found_tickets:
                existing.add(number)
                if into is not None and into not in existing and number not in merged:
                    merged[number] = into
                    wanted.append(into)
        return Lookup(by_mid, frozenset(existing), outbox, merged, frozenset(team))

    # --- the ticket row ----------------------------------------------------------------

    def create(
        self,
        *,
        queue: str,
        title: str,
        type_: str,
        priority: str,
        status: str,
        requester: str | None,
        actor: str,
        now: datetime,
        action_by: str = "support",
        sla: SlaClock | None = None,
        answer_due: datetime | None = None,
        solve_due: datetime | None = None,
        language: str | None = None,
    ) -> TicketView:
        """A new ticket, its SLA clock started as the caller computed it; as a view (no
        people yet), so that nothing needs to read it back."""
        organisation = requester.rpartition("@")[2] if requester else None
        number = run(
            self.conn,
            _CREATE,
            {
                "queue": queue,
                "title": title,
                "type": type_,
                "priority": priority,
                "status": status,
                "requester": requester,
                "organisation": organisation,
                **_NEW,
                "action_by": action_by,
                "status_since": now,
                "created_at": now,
                "updated_at": now,
                "updated_by": actor,
                "language": language,
                **sla_values(sla or SlaClock(), answer_due, solve_due),
            },
        ).scalar_one()
        return TicketView(
            number=int(number),
            queue=queue,
            title=title,
            type=type_,
            priority=priority,
            status=status,
            requester=requester,
            organisation=organisation,
            assignee=None,
            created_at=now,
            updated_at=now,
            updated_by=actor,
            participants=(),
            messages=(),
            events=(),
            action_by=action_by,
            language=language,
        )  # no approval, quote or merge yet: the view's defaults

    def fields(self, number: int) -> dict[str, str]:
        """The ticket's reference fields, by name."""
        rows = run(self.conn, _FIELDS, {"id": number})
        return {str(r.name): str(r.value) for r in rows}

    def set_fields(self, number: int, values: Mapping[str, str]) -> None:
        """Give the ticket these reference field values (replacing earlier ones)."""
        if not values:
            return
        run(
            self.conn,
            delete(FIELDS).where(FIELDS.c.ticket_id == number, FIELDS.c.name.in_(list(values))),
        )
        rows = [{"ticket_id": number, "name": k, "value": v} for k, v in values.items()]
        run(self.conn, insert(FIELDS), rows)

    def touch(self, number: int, *, actor: str, now: datetime) -> None:
        """Record a change to the ticket: last changed, by whom, and a new version."""
        self.update(number, {}, actor=actor, now=now)

    def update(
        self, number: int, values: Mapping[str, object], *, actor: str, now: datetime
    ) -> None:
        """Set ticket fields (status, action_by, priority, ...) and record who changed it."""
        run(
            self.conn, _UPDATE, {**values, "updated_at": now, "updated_by": actor, "number": number}
        )

    def state(self, number: int, *, lock: bool = False) -> TicketState | None:
        """The fields commands and answers read; ``lock`` holds the row (PostgreSQL) until
        the transaction ends, so that two changes to one ticket queue up."""
        query = _STATE
        if lock:
            query = _STATE_LOCKED if self.wait_for_rows else _STATE_LOCKED_NOWAIT
        try:
            rows = run(self.conn, query, {"id": number}).all()
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
                raise TicketBusy(f"ticket #{number} is held by another batch") from exc
            raise
        if not rows:
            return None
        row = rows[0]
        return TicketState(
            number=number,
            status=row.status,
            type=row.type,
            priority=row.priority,
            assignee=row.assignee,
            approval=row.approval,
            participants=_people_of(rows),
        )

    def view(self, number: int) -> TicketView | None:
        """The ticket's fields and people, without its thread and events."""
        rows = run(self.conn, _VIEW, {"id": number}).all()
        if not rows:
            return None
        row = rows[0]
        return TicketView(
            number=row.id,
            queue=row.queue,
            title=row.title,
            type=row.type,
            priority=row.priority,
            status=row.status,
            requester=row.requester,
            organisation=row.organisation,
            assignee=row.assignee,
            created_at=row.created_at,
            updated_at=row.updated_at,
            updated_by=row.updated_by,
            participants=_people_of(rows),
            messages=(),
            events=(),
            action_by=row.action_by,
            approval=row.approval,
            quote=row.quote,
            merged_into=row.merged_into,
            language=row.language,
        )

    def quote(self, number: int) -> str:
        found = run(self.conn, _QUOTE, {"id": number}).first()
        return str(found[0]) if found is not None else ""

    def rating(self, number: int) -> tuple[str, str, str]:
        """(status, type, priority) of a ticket."""
        row = run(self.conn, _RATING, {"id": number}).one()
        return row[0], row[1], row[2]

    def existing(self, numbers: Iterable[int]) -> frozenset[int]:
        wanted = list(set(numbers))
        if not wanted:
            return frozenset()
        found = run(self.conn, select(TICKETS.c.id).where(TICKETS.c.id.in_(wanted)))
        return frozenset(found.scalars())

    def merge(self, number: int, into: int) -> None:
        """Move the thread and the people of ``number`` to ``into``; later mail for
        ``number`` lands on ``into``. (The caller cancels ``number``'s timers.)"""
        run(
            self.conn, update(MESSAGES).where(MESSAGES.c.ticket_id == number).values(ticket_id=into)
        )
        self.add_participants(into, self.participants(number))
        run(self.conn, update(TICKETS).where(TICKETS.c.id == number).values(merged_into=into))

    # --- people ------------------------------------------------------------------------

    def participants(self, number: int) -> tuple[Participant, ...]:
        rows = run(self.conn, _PEOPLE, {"id": number})
        return tuple(_participant(r) for r in rows)

    def add_participants(
        self,
        number: int,
        people: Iterable[Participant],
        known: Iterable[Participant] | None = None,
    ) -> list[Participant]:
        """Add the people not yet on the ticket; returns those added. ``known``: the
        ticket's people as the caller read them in this transaction (saves the query)."""
        on_ticket = {p.address for p in (self.participants(number) if known is None else known)}
        added = []
        for person in people:
            if person.address not in on_ticket:
                on_ticket.add(person.address)
                added.append(person)
        if added:
            run(
                self.conn,
                _ADD_PEOPLE,
                [
                    {
                        "ticket_id": number,
                        "address": p.address,
                        "name": p.name,
                        "role": p.role.value,
                        "organisation": p.organisation,
                    }
                    for p in added
                ],
            )
        return added

    def remove_participants(self, number: int, addresses: Iterable[str]) -> None:
        wanted = [a.lower() for a in addresses]
        if wanted:
            run(
                self.conn,
                PARTICIPANTS.delete().where(
                    PARTICIPANTS.c.ticket_id == number, PARTICIPANTS.c.address.in_(wanted)
                ),
            )
