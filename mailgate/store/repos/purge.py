"""Retention's queries: which archived tickets are due for a purge, what only they hold, the purge.

A purge removes the raw mails and attachment contents that only purged tickets
hold (never bytes another ticket shares) and records a ``purged`` event on each;
the tickets, their text and their history stay.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mailgate.store.repos.history import Event, HistoryRepo
from mailgate.store.tables import (
    AttachmentRow,
    BlobRow,
    EventRow,
    MessageRow,
    SpoolRawRow,
    SpoolRow,
    TicketRow,
)


class PurgeRepo:
    """The retention queries of one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def tickets_archived_before(self, states: Sequence[str], cutoff: datetime) -> list[int]:
        """Archived tickets whose archiving is older than ``cutoff`` and not yet purged."""
        purged = select(EventRow.ticket_id).where(EventRow.kind == "purged")
        rows = await self.session.exec(
            select(TicketRow.id)
            .where(
                col(TicketRow.status).in_(list(states)),
                col(TicketRow.status_since) < cutoff,
                col(TicketRow.id).not_in(purged),
            )
            .order_by(col(TicketRow.id))
        )
        return [i for i in rows.all() if i is not None]

    async def raw_of_tickets(self, tickets: Sequence[int]) -> tuple[list[int], list[str]]:
        """The spool items of ``tickets`` and the raw mails no other kept item shares."""
        if not tickets:
            return [], []
        rows = (
            await self.session.exec(
                select(SpoolRow.id, SpoolRow.raw_sha256).where(
                    col(SpoolRow.ticket_id).in_(list(tickets))
                )
            )
        ).all()
        shas = {sha for _, sha in rows}
        shared = set(
            (
                await self.session.exec(
                    select(SpoolRow.raw_sha256).where(
                        col(SpoolRow.raw_sha256).in_(list(shas)),
                        or_(
                            col(SpoolRow.ticket_id).is_(None),
                            col(SpoolRow.ticket_id).not_in(list(tickets)),
                        ),
                    )
                )
            ).all()
        )
        return [i for i, _ in rows if i is not None], sorted(shas - shared)

    async def attachments_only_of(self, tickets: Sequence[int]) -> list[str]:
        """Attachment contents of ``tickets`` that no other ticket's messages have."""
        if not tickets:
            return []
        joined = select(AttachmentRow.sha256, MessageRow.ticket_id).join(
            MessageRow, col(MessageRow.id) == col(AttachmentRow.message_row_id)
        )
        mine = {
            sha
            for sha, _ in (
                await self.session.exec(joined.where(col(MessageRow.ticket_id).in_(list(tickets))))
            ).all()
        }
        if not mine:
            return []
        others = {
            sha
            for sha, _ in (
                await self.session.exec(
                    joined.where(
                        col(AttachmentRow.sha256).in_(list(mine)),
                        col(MessageRow.ticket_id).not_in(list(tickets)),
                    )
                )
            ).all()
        }
        return sorted(mine - others)

    async def blob_sizes(self, raw: Sequence[str], attachments: Sequence[str]) -> int:
        total = 0
        if raw:
            sizes = await self.session.exec(
                select(SpoolRow.raw_sha256, SpoolRow.size).where(
                    col(SpoolRow.raw_sha256).in_(list(raw))
                )
            )
            total += sum(dict(sizes.all()).values())
        if attachments:
            sizes = await self.session.exec(
                select(AttachmentRow.sha256, AttachmentRow.size).where(
                    col(AttachmentRow.sha256).in_(list(attachments))
                )
            )
            total += sum(dict(sizes.all()).values())
        return total

    async def purge(
        self,
        tickets: Sequence[int],
        spool_ids: Sequence[int],
        attachments: Sequence[str],
        now: datetime,
    ) -> None:
        """Drop the raw bytes kept in the database and the attachment blobs; record it.
        SQLite overwrites what it deletes here (``secure_delete``): purged personal data
        is not left in the file's free pages, where a later copy of the file would keep it."""
        connection = await self.session.connection()
        if connection.dialect.name == "sqlite":
            await connection.exec_driver_sql("PRAGMA secure_delete = ON")
        if spool_ids:
            await self.session.exec(
                delete(SpoolRawRow).where(col(SpoolRawRow.spool_id).in_(list(spool_ids)))
            )
        if attachments:
            await self.session.exec(
                delete(BlobRow).where(col(BlobRow.sha256).in_(list(attachments)))
            )
        if tickets:
            await self.session.exec(
                update(MessageRow)
                .where(col(MessageRow.ticket_id).in_(list(tickets)))
                .values(raw_sha256=None)
            )
        detail = "raw mails and attachments removed (retention)"
        events = [Event(t, "purged", "mailgate", now, detail=detail) for t in tickets]
        await self.session.run_sync(lambda sync: HistoryRepo(sync.connection()).add_events(events))
