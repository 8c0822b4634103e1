"""PostgreSQL adds a new message's words to its ticket's only while they fit in a
tsvector (store/search.py ``MESSAGE_WORDS_FUNCTION``): a ticket that has gathered 1 MB
of words no longer refuses its next message

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-03 23:50:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from mailgate.store import search

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(search.MESSAGE_WORDS_FUNCTION)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION search_message_words() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN UPDATE tickets SET search_words = "
            "coalesce(search_words, ''::tsvector) || search_words_of(NEW.visible_text) "
            "WHERE id = NEW.ticket_id; RETURN NULL; END $$"
        )
