"""PostgreSQL compresses the large values (mail text, raw bytes, search words) with LZ4
rather than pglz, where the server offers it (store/compression.py, decision 0027)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 21:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from mailgate.store import compression

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(compression.statement("lz4"))


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(compression.statement("default"))
