"""PostgreSQL splits a text into its search words with one regular expression
(store/search.py ``WORDS_FUNCTION``): the same words as before, so the words stored
stay as they are

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-03 23:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from mailgate.store import search

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(search.WORDS_FUNCTION)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION search_words_of(t text) RETURNS tsvector LANGUAGE sql "
            "IMMUTABLE AS $$ SELECT strip(to_tsvector('simple', "
            "regexp_replace(coalesce(t, ''), '[^[:alnum:]]+', ' ', 'g'))) $$"
        )
