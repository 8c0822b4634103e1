"""Alembic's environment: mailgate's tables, on the connection mailgate hands in.

mailgate runs Alembic itself (``mailgate migrate``, ``mailgate.store.schema``);
there is no alembic.ini. Online, the caller passes a synchronous connection in
``config.attributes["connection"]``; offline (``migrate --sql``) the URL is in
the main options and the SQL is written to the output buffer.
"""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from mailgate.store import tables  # noqa: F401 - registers the tables

config = context.config
target_metadata = SQLModel.metadata


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite alters a table by copying it
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
