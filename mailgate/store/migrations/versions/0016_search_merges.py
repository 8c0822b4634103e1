"""SQLite's search index leaves the merging of its segments to quiet moments: a write no
longer merges them as it goes (decision 0026)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 18:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from mailgate.store import search

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    search.merge_later(op.get_bind())


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in search.merge_settings(4, 16):  # FTS5's own
            op.execute(statement)
