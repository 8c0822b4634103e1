"""SQLite's index of messages' words leaves mailgate's own notices out, as PostgreSQL's
always has (the search never looked at them; their words were half the index's writes)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 11:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from mailgate.store import search

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The triggers of 0010, every message indexed.
_EVERY_MESSAGE = [
    "DROP TRIGGER IF EXISTS search_messages_ai",
    "DROP TRIGGER IF EXISTS search_messages_ad",
    "DROP TRIGGER IF EXISTS search_messages_au",
    "CREATE TRIGGER search_messages_ai AFTER INSERT ON messages BEGIN "
    "INSERT INTO search_messages(rowid, visible_text) VALUES (new.id, new.visible_text); END",
    "CREATE TRIGGER search_messages_ad AFTER DELETE ON messages BEGIN "
    "INSERT INTO search_messages(search_messages, rowid, visible_text) "
    "VALUES ('delete', old.id, old.visible_text); END",
    "CREATE TRIGGER search_messages_au AFTER UPDATE OF visible_text ON messages "
    "BEGIN INSERT INTO search_messages(search_messages, rowid, visible_text) "
    "VALUES ('delete', old.id, old.visible_text); "
    "INSERT INTO search_messages(rowid, visible_text) VALUES (new.id, new.visible_text); END",
    "INSERT INTO search_messages(search_messages) VALUES ('rebuild')",
]


def upgrade() -> None:
    search.index_message_words(op.get_bind())


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in _EVERY_MESSAGE:
            op.execute(statement)
