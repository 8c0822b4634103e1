"""The spool records what an automatic answer to each mail would count against (its
sender's organisation domain or mailbox), and indexes the pending mails by thread: the
worker processes share the spool by the first, and a mail waits for the earlier mails
of its thread through the second

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 20:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("state = 'pending'")


def upgrade() -> None:
    # Mails stored before it have none: they are shared by thread, as they were.
    op.add_column("spool", sa.Column("sender_key", sa.Text(), nullable=True))
    op.create_index(
        "ix_spool_pending_thread",
        "spool",
        ["thread", "id"],
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_spool_pending_thread", table_name="spool")
    with op.batch_alter_table("spool") as batch:
        batch.drop_column("sender_key")
