"""Automatic mails by remote party, for the hourly caps and the loop rules

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 04:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

from mailgate.store.tables import UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "auto_answers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("mailbox", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column("domain", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_auto_answers_mailbox_at", "auto_answers", ["mailbox", "at"])
    op.create_index("ix_auto_answers_domain_at", "auto_answers", ["domain", "at"])
    op.create_index("ix_auto_answers_ticket_at", "auto_answers", ["ticket_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_auto_answers_ticket_at", table_name="auto_answers")
    op.drop_index("ix_auto_answers_domain_at", table_name="auto_answers")
    op.drop_index("ix_auto_answers_mailbox_at", table_name="auto_answers")
    op.drop_table("auto_answers")
