"""PostgreSQL keeps a ticket's search words without their positions, which no search
asks for (store/search.py ``WORDS_FUNCTION``); the words stored before keep theirs
until their ticket's words are made again

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03 21:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


WORDS_FUNCTION = (
    "CREATE OR REPLACE FUNCTION search_words_of(t text) RETURNS tsvector LANGUAGE sql "
    "IMMUTABLE AS $$ SELECT strip(to_tsvector('simple', "
    "regexp_replace(coalesce(t, ''), '[^[:alnum:]]+', ' ', 'g'))) $$"
)


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(WORDS_FUNCTION)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(WORDS_FUNCTION.replace("strip(to_tsvector", "(to_tsvector"))
