"""Indexes for the worker: events by kind and value (the once-only notices look them up),
sent outbox mails and cap records by time (the outbox is trimmed)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 07:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_events_kind_new", "events", ["kind", "new"])
    op.create_index("ix_outbox_sent", "outbox", ["state", "sent_at"])
    op.create_index("ix_auto_answers_at", "auto_answers", ["at"])


def downgrade() -> None:
    op.drop_index("ix_auto_answers_at", table_name="auto_answers")
    op.drop_index("ix_outbox_sent", table_name="outbox")
    op.drop_index("ix_events_kind_new", table_name="events")
