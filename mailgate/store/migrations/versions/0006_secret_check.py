"""The installation remembers a fingerprint of its token secret, so that a command run
with another secret is refused instead of silently minting tokens no reply will match

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 19:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("installation") as batch:
        batch.add_column(sa.Column("secret_check", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("installation") as batch:
        batch.drop_column("secret_check")
