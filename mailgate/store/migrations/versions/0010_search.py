"""Full-text search for the web desk (SQLite FTS5 tables, PostgreSQL GIN indexes) and
indexes on participants' addresses, reference field values and tickets' last change

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 23:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from mailgate.store import search

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_participants_address", "participants", ["address"])
    op.create_index("ix_ticket_fields_value", "ticket_fields", ["value"])
    op.create_index("ix_tickets_updated", "tickets", ["updated_at", "id"])
    search.install(op.get_bind())


def downgrade() -> None:
    search.uninstall(op.get_bind())
    op.drop_index("ix_tickets_updated", table_name="tickets")
    op.drop_index("ix_ticket_fields_value", table_name="ticket_fields")
    op.drop_index("ix_participants_address", table_name="participants")
