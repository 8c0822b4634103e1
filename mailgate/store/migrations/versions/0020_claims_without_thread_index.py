"""A claim tells a thread's first due mail from the oldest due mails alone
(``SpoolRepo.claim_due``), no longer through the pending mails indexed by thread

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03 23:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("state = 'pending'")


def upgrade() -> None:
    op.drop_index("ix_spool_pending_thread", table_name="spool")


def downgrade() -> None:
    op.create_index(
        "ix_spool_pending_thread",
        "spool",
        ["thread", "id"],
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )
