"""The spool keeps each mail's thread, by which worker processes share the mail

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 02:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable and without a default: a catalog change only, however long the spool.
    op.add_column("spool", sa.Column("thread", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("spool") as batch:
        batch.drop_column("thread")
