"""The outbox aggregate: mails to send, what the caps count, and suppressed addresses.

The automatic answers counted by the caps on automatic mail; the addresses suppressed
after a permanent bounce. Blocking, on one ``Connection``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    Connection,
    and_,
    bindparam,
    func,
    insert,
    null,
    or_,
    select,
    text,
    union_all,
    update,
)

from mailgate.core.model import OutboxItem
from mailgate.core.notify import Kind
from mailgate.core.parties import AutoAnswer
from mailgate.errors import CountsBusy
from mailgate.store.driver import run
from mailgate.store.tables import WAITING_ROWS, table

OUTBOX = table("outbox")
AUTO_ANSWERS = table("auto_answers")
SUPPRESSIONS = table("suppressions")

OUTBOX_PENDING = "pending"
OUTBOX_SENDING = "sending"
OUTBOX_SENT = "sent"
OUTBOX_DEAD = "dead"
ACKNOWLEDGMENT = Kind.ACK.value  # the automatic mail that answers a mail


@dataclass(frozen=True, slots=True)
class Queued:
    """A composed mail for the outbox, its id allocated beforehand (``OutboxRepo.ids``) so
    that its bounce address, which names the id, is in the row from the start."""

    id: int
    ticket: int | None
    kind: str
    recipients: tuple[str, ...]
    envelope_from: str
    message_id: str
    raw: bytes
    at: datetime

    def values(self) -> dict[str, object]:
        return {
            "id": self.id,
            "ticket_id": self.ticket,
            "kind": self.kind,
            "recipients": "\n".join(self.recipients),
            "envelope_from": self.envelope_from,
            "message_id": self.message_id,
            "raw": self.raw,
            "state": OUTBOX_PENDING,
            "attempts": 0,
            "next_attempt_at": self.at,
            "created_at": self.at,
        }


@dataclass(frozen=True, slots=True)
class Counted:
    """An automatic mail to one recipient, as the caps count it."""

    outbox: int
    kind: str
    ticket: int | None
    answer: AutoAnswer


def outbox_item(row: Any) -> OutboxItem:
    return OutboxItem(
        id=row.id,
        ticket=row.ticket_id,
        kind=row.kind,
        recipients=tuple(a for a in row.recipients.split("\n") if a),
        envelope_from=row.envelope_from,
        message_id=row.message_id,
        state=row.state,
        attempts=row.attempts,
        last_error=row.last_error,
        created_at=row.created_at,
        sent_at=row.sent_at,
    )


ITEM_COLUMNS = tuple(c for c in OUTBOX.c if c.name != "raw")
_ADD = insert(OUTBOX)
_COUNT = insert(AUTO_ANSWERS)
_TOP = select(func.max(OUTBOX.c.id))
_DRAW = text("SELECT nextval(pg_get_serial_sequence('outbox', 'id')) FROM generate_series(1, :n)")
ID_BLOCK = 32  # PostgreSQL: outbox ids drawn at a time
_GET = select(*ITEM_COLUMNS).where(OUTBOX.c.id == bindparam("id"))
_ANSWERS = select(
    AUTO_ANSWERS.c.mailbox,
    AUTO_ANSWERS.c.domain,
    AUTO_ANSWERS.c.subject,
    AUTO_ANSWERS.c.at,
    AUTO_ANSWERS.c.kind,
    null().label("n"),
).where(AUTO_ANSWERS.c.at >= bindparam("since"))
# What the caps count, in one statement, each part by its own index: the ticket's
# automatic mails of the hour (one row, mailbox NULL), and the answers of the hour to the
# mailboxes and the whole domains asked about (a mailbox of a public domain is never in a
# domain asked about, so no answer comes twice).
_CAP_COUNTS: CompoundSelect[Any] = union_all(
    select(*[null()] * 5, func.count(func.distinct(AUTO_ANSWERS.c.outbox_id))).where(
        AUTO_ANSWERS.c.ticket_id == bindparam("ticket"), AUTO_ANSWERS.c.at >= bindparam("since")
    ),
    _ANSWERS.where(AUTO_ANSWERS.c.mailbox.in_(bindparam("mailboxes", expanding=True))),
    _ANSWERS.where(AUTO_ANSWERS.c.domain.in_(bindparam("domains", expanding=True))),
)
# The keys in order, each locked by a statement evaluated row by row over the sorted keys.
_HOLD = text(
    "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) "
    "FROM (SELECT k FROM unnest(CAST(:keys AS text[])) AS k ORDER BY k) AS sorted"
)
_TRY_HOLD = text(
    "SELECT bool_and(pg_try_advisory_xact_lock(hashtextextended(k, 0))) "
    "FROM (SELECT k FROM unnest(CAST(:keys AS text[])) AS k ORDER BY k) AS sorted"
)
_DUE = (
    select(OUTBOX.c.id)
    .where(
        WAITING_ROWS,  # as the partial index ``ix_outbox_waiting`` names them: read through it
        or_(
            and_(OUTBOX.c.state == OUTBOX_PENDING, OUTBOX.c.next_attempt_at <= bindparam("now")),
            and_(OUTBOX.c.state == OUTBOX_SENDING, OUTBOX.c.claimed_at < bindparam("stale")),
        ),
    )
    .order_by(OUTBOX.c.id)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)  # PostgreSQL: another sender's claim is skipped
)
_CLAIM = (
    update(OUTBOX)
    .where(OUTBOX.c.id.in_(bindparam("ids", expanding=True)))
    .values(state=OUTBOX_SENDING, claimed_at=bindparam("now"), attempts=OUTBOX.c.attempts + 1)
    .returning(*ITEM_COLUMNS, OUTBOX.c.raw)
)
_SUPPRESSED = select(SUPPRESSIONS.c.address).where(
    SUPPRESSIONS.c.address.in_(bindparam("addresses", expanding=True)),
    SUPPRESSIONS.c.until > bindparam("now"),
)


class OutboxRepo:
    """Mails to send and what the caps on automatic mail count."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._next: int | None = None  # SQLite: the next id of this transaction
        self._drawn: list[int] = []  # PostgreSQL: ids drawn for this transaction, unused
        self._holding = False  # PostgreSQL: whether this transaction holds cap records

    def ids(self, count: int) -> list[int]:
        """``count`` new outbox ids for this transaction. On SQLite the writer holds the
        database, so ids count up from the highest (read once per transaction; an id a
        rolled-back savepoint drew is simply never used, and rows are never deleted, so
        none is used twice). PostgreSQL draws them from the column's sequence, at least
        ``ID_BLOCK`` at a time for the transaction (a batch's mails share one round trip;
        the ids left over are gaps, as a rolled-back insert leaves)."""
        if count == 0:
            return []
        if self.conn.dialect.name == "postgresql":
            if len(self._drawn) < count:
                drawn = run(self.conn, _DRAW, {"n": max(count - len(self._drawn), ID_BLOCK)})
                self._drawn.extend(int(i) for i in drawn.scalars())
            taken, self._drawn = self._drawn[:count], self._drawn[count:]
            return taken
        if self._next is None:
            self._next = int(run(self.conn, _TOP).scalar_one() or 0) + 1
        start, self._next = self._next, self._next + count
        return list(range(start, start + count))

    def add(self, mails: Sequence[Queued], counted: Sequence[Counted] = ()) -> None:
        """Queue composed mails and record the automatic ones for the caps."""
        if mails:
            run(self.conn, _ADD, [m.values() for m in mails])
        if counted:
            run(
                self.conn,
                _COUNT,
                [
                    {
                        "outbox_id": c.outbox,
                        "kind": c.kind,
                        "mailbox": c.answer.mailbox,
                        "domain": c.answer.domain,
                        "subject": c.answer.subject,
                        "ticket_id": c.ticket,
                        "at": c.answer.at,
                    }
                    for c in counted
                ],
            )

    # --- delivery ---------------------------------------------------------------------

    def claim(
        self,
        *,
        now: datetime,
        stale_before: datetime,
        limit: int,
        only: Sequence[int] | None = None,
    ) -> list[tuple[OutboxItem, bytes]]:
        """Mark up to ``limit`` due mails ``sending`` (one attempt more) and return them with
        their bytes, oldest first: pending mails whose next attempt is due, and mails left
        ``sending`` since before ``stale_before`` by a sender that died. ``only``: of these
        ids alone. Two statements, whatever the count; rows another sender holds are
        skipped (PostgreSQL), and SQLite's writer holds the whole database."""
        query = _DUE if only is None else _DUE.where(OUTBOX.c.id.in_(list(only)))
        ids = list(
            run(self.conn, query, {"now": now, "stale": stale_before, "limit": limit}).scalars()
        )
        if not ids:
            return []
        rows = run(self.conn, _CLAIM, {"ids": ids, "now": now}).all()
        return sorted(((outbox_item(r), bytes(r.raw)) for r in rows), key=lambda c: c[0].id)

    def finish(
        self,
        ids: Sequence[int],
        *,
        state: str,
        now: datetime,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        """End the attempt of the claimed mails ``ids``: ``sent`` (at ``now``), ``dead``, or
        ``pending`` again until ``retry_at``."""
        if not ids:
            return
        values: dict[str, object] = {"state": state, "last_error": error, "claimed_at": None}
        if state == OUTBOX_SENT:
            values["sent_at"] = now
        if retry_at is not None:
            values["next_attempt_at"] = retry_at
        run(self.conn, update(OUTBOX).where(OUTBOX.c.id.in_(list(ids))).values(**values))

    def release(self, ids: Sequence[int]) -> None:
        """Hand back claimed mails that were not tried (the sender is stopping): pending
        again, the attempt not counted, due at once for the next sender."""
        if ids:
            run(
                self.conn,
                update(OUTBOX)
                .where(OUTBOX.c.id.in_(list(ids)), OUTBOX.c.state == OUTBOX_SENDING)
                .values(state=OUTBOX_PENDING, claimed_at=None, attempts=OUTBOX.c.attempts - 1),
            )

    def get(self, outbox_id: int) -> OutboxItem | None:
        row = run(self.conn, _GET, {"id": outbox_id}).first()
        return None if row is None else outbox_item(row)

    def trim(self, *, sent_before: datetime, counted_before: datetime) -> tuple[int, int]:
        """Drop the bytes of mails sent before ``sent_before`` (their rows stay: a late
        bounce still finds its mail, an agent's answer to a team notice still proves
        itself) and the cap records older than ``counted_before``. Both by index; the
        counts of rows trimmed and records removed."""
        trimmed = run(
            self.conn,
            update(OUTBOX)
            .where(
                OUTBOX.c.state == OUTBOX_SENT,
                OUTBOX.c.sent_at < sent_before,
                func.length(OUTBOX.c.raw) > 0,
            )
            .values(raw=b""),
        ).rowcount
        removed = run(
            self.conn, AUTO_ANSWERS.delete().where(AUTO_ANSWERS.c.at < counted_before)
        ).rowcount
        return trimmed, removed

    # --- the caps on automatic mail ------------------------------------------------------

    def hold_counts(self, keys: Iterable[str]) -> None:
        """Hold the cap records of ``keys`` (a mailbox, a domain, a ticket) until this
        transaction ends, so that two instances counting the same ones take turns and a
        cap counts exactly. SQLite has one writer at a time, which is the same.

        PostgreSQL: transaction-scoped advisory locks, in one statement, in key order. A
        transaction that holds none yet waits for them; one that already holds some
        (a batch's earlier mails) only tries, and raises ``CountsBusy`` when another
        instance has one: waiting there could close a circle of instances each waiting
        for the other's batch to end (a deadlock), so this mail waits for the next
        batch instead, where it is the first and may wait.
        """
        if self.conn.dialect.name != "postgresql":
            return
        wanted = sorted(set(keys))
        if not wanted:
            return
        if not self._holding:
            run(self.conn, _HOLD, {"keys": wanted})
            self._holding = True
            return
        if not run(self.conn, _TRY_HOLD, {"keys": wanted}).scalar_one():
            raise CountsBusy(f"cap records held by another instance: {', '.join(wanted)}")

    def cap_counts(
        self, ticket: int, *, mailboxes: Iterable[str], domains: Iterable[str], since: datetime
    ) -> tuple[int, list[AutoAnswer]]:
        """How many automatic mails (not recipients) went out for ``ticket`` since ``since``,
        and the automatic mails since then to each of ``mailboxes`` and to any mailbox of
        ``domains``, oldest first: one statement."""
        params = {"ticket": ticket, "since": since, "mailboxes": list(mailboxes)}
        rows = run(self.conn, _CAP_COUNTS, {**params, "domains": list(domains)}).all()
        count = next(int(r[5]) for r in rows if r[5] is not None)
        answers = sorted(
            (
                AutoAnswer(r[0], r[1], r[2], r[3], r[4] == ACKNOWLEDGMENT)
                for r in rows
                if r[5] is None
            ),
            key=lambda a: a.at,
        )
        return count, answers

    # --- suppression after a permanent bounce --------------------------------------------

    def suppress(self, address: str, *, until: datetime, reason: str, now: datetime) -> None:
        address = address.lower()
        found = run(
            self.conn, select(SUPPRESSIONS.c.until).where(SUPPRESSIONS.c.address == address)
        ).first()
        if found is None:
            run(
                self.conn,
                insert(SUPPRESSIONS),
                {"address": address, "until": until, "reason": reason, "created_at": now},
            )
        else:
            run(
                self.conn,
                update(SUPPRESSIONS)
                .where(SUPPRESSIONS.c.address == address)
                .values(until=max(found[0], until), reason=reason),
            )

    def suppressed(self, addresses: Iterable[str], now: datetime) -> set[str]:
        """Which of ``addresses`` must not be mailed now."""
        wanted = [a.lower() for a in addresses]
        if not wanted:
            return set()
        rows = run(self.conn, _SUPPRESSED, {"addresses": wanted, "now": now})
        return set(rows.scalars())
