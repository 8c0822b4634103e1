"""The outbox's mails still to send in an index of their own, and both queues' partial
indexes covering what their "what is due" reads: a planner that knows an index only by
its size (none, when it was empty at the last ``ANALYZE``) then still takes it over a
scan of the table

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 10:25:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("state = 'pending'")
WAITING = sa.text("state IN ('pending', 'sending')")


def upgrade() -> None:
    op.drop_index("ix_spool_pending", table_name="spool")
    op.create_index(
        "ix_spool_pending",
        "spool",
        ["id", "next_attempt_at", "size"],
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )
    op.create_index(
        "ix_outbox_waiting",
        "outbox",
        ["id", "state", "next_attempt_at", "claimed_at"],
        sqlite_where=WAITING,
        postgresql_where=WAITING,
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_waiting", table_name="outbox")
    op.drop_index("ix_spool_pending", table_name="spool")
    op.create_index(
        "ix_spool_pending", "spool", ["id"], sqlite_where=PENDING, postgresql_where=PENDING
    )
