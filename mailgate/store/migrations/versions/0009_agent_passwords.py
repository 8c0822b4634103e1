"""Agents' passwords for the web desk (argon2 hashes), one row per agent address

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 22:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mailgate.store.tables import UTCDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent_passwords",
        sa.Column("address", sa.String(length=320), primary_key=True),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("agent_passwords")
