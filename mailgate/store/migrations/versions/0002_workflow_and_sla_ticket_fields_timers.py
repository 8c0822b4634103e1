"""Workflow and SLA: ticket fields, timers

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 19:20:50.815951
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import mailgate.store.tables

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "timers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("trigger", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("due_at", mailgate.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("armed_at", mailgate.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("fired_at", mailgate.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.create_index("ix_timers_due", ["state", "due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_timers_ticket_id"), ["ticket_id"], unique=False)

    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "action_by",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                nullable=False,
                server_default="support",
            )
        )
        batch_op.add_column(
            sa.Column(
                "status_since", mailgate.store.tables.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column(
                "approval",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                nullable=False,
                server_default="none",
            )
        )
        batch_op.add_column(sa.Column("quote", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(sa.Column("merged_into", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("sla_consumed", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column(
                "sla_running_since", mailgate.store.tables.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column(
                "sla_answered_at", mailgate.store.tables.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column(
                "sla_solved_at", mailgate.store.tables.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(sa.Column("sla_agreed_solve", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "sla_fixed_due", mailgate.store.tables.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column(
                "sla_answer_due", mailgate.store.tables.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column(
                "sla_solve_due", mailgate.store.tables.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.create_index(batch_op.f("ix_tickets_action_by"), ["action_by"], unique=False)
        batch_op.create_index(batch_op.f("ix_tickets_merged_into"), ["merged_into"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_tickets_sla_answer_due"), ["sla_answer_due"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_tickets_sla_solve_due"), ["sla_solve_due"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tickets_sla_solve_due"))
        batch_op.drop_index(batch_op.f("ix_tickets_sla_answer_due"))
        batch_op.drop_index(batch_op.f("ix_tickets_merged_into"))
        batch_op.drop_index(batch_op.f("ix_tickets_action_by"))
        batch_op.drop_column("sla_solve_due")
        batch_op.drop_column("sla_answer_due")
        batch_op.drop_column("sla_fixed_due")
        batch_op.drop_column("sla_agreed_solve")
        batch_op.drop_column("sla_solved_at")
        batch_op.drop_column("sla_answered_at")
        batch_op.drop_column("sla_running_since")
        batch_op.drop_column("sla_consumed")
        batch_op.drop_column("merged_into")
        batch_op.drop_column("quote")
        batch_op.drop_column("approval")
        batch_op.drop_column("status_since")
        batch_op.drop_column("action_by")

    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_timers_ticket_id"))
        batch_op.drop_index("ix_timers_due")

    op.drop_table("timers")
