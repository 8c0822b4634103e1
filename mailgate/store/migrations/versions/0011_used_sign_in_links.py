"""Mailed sign-in links that were used, so that each works once

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 23:50:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mailgate.store.tables import UTCDateTime

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "used_sign_in_links",
        sa.Column("nonce", sa.String(length=64), primary_key=True),
        sa.Column("used_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("used_sign_in_links")
