"""Keep the database schema and the code in step: migrate, check, or create it fresh.

Migrations are Alembic scripts in ``mailgate/store/migrations/versions``, one
per schema change. An empty database is created at the newest schema directly
(``create_all`` and a stamp: what upgrading through every migration gives, as a
test checks). A database at an older revision is refused until ``mailgate
migrate`` ran; one at a revision this code does not know is refused too (a newer
mailgate wrote it). On PostgreSQL a migration holds an advisory lock, so two
instances upgrading at once take turns.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from mailgate.errors import SchemaMismatch
from mailgate.store.db import storage_errors

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK = 0x6D61696C67617465  # "mailgate": the advisory lock key of migrations


def alembic_config(url: str = "", output: io.StringIO | None = None) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig(output_buffer=output)
    config.set_main_option("script_location", str(MIGRATIONS))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@cache
def known_revisions() -> frozenset[str]:
    """The revisions this code knows. Each migration's revision is the number its file
    name starts with (``0005_worker_indexes.py`` is ``0005``; a test holds alembic to
    it), so that the check every command makes at start reads a directory, not alembic."""
    return frozenset(
        p.name[:4] for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")
    )


@cache
def head() -> str:
    """The newest revision this code knows."""
    return max(known_revisions())


@dataclass(frozen=True, slots=True)
class SchemaState:
    revision: str | None
    has_tables: bool


def _state(connection: Connection) -> SchemaState:
    names = set(inspect(connection).get_table_names())
    revision = None
    if "alembic_version" in names:
        revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    names.discard("alembic_version")
    return SchemaState(revision, bool(names & set(SQLModel.metadata.tables)))


def _create_fresh(connection: Connection) -> None:
    from alembic import command

    from mailgate.store import compression, search  # search imports (registers) the tables

    SQLModel.metadata.create_all(connection)
    search.install(connection)
    compression.install(connection)
    command.stamp(_with(connection), "head")


def _with(connection: Connection) -> AlembicConfig:
    config = alembic_config()
    config.attributes["connection"] = connection
    return config


async def prepare_schema(engine: AsyncEngine) -> None:
    """Create an empty database at the newest schema; refuse an older or unknown one."""
    with storage_errors("schema check"):
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
            state = await conn.run_sync(_state)
            if state.revision is None and not state.has_tables:
                await conn.run_sync(_create_fresh)
                return
    check(state)


def check(state: SchemaState) -> None:
    """Raise SchemaMismatch, saying what to do, unless the schema is the code's."""
    if state.revision == head():
        return
    if state.revision is None:
        raise SchemaMismatch(
            "the database has mailgate tables but no schema version (made before "
            "migrations existed): export what you need and start from an empty database"
        )
    if state.revision in known_revisions():
        raise SchemaMismatch(
            f"the database schema ({state.revision}) is older than this mailgate ({head()}): "
            "back it up, then run `mailgate migrate`"
        )
    raise SchemaMismatch(
        f"the database schema ({state.revision}) is newer than this mailgate knows "
        f"({head()}): upgrade mailgate on this machine (or restore the backup taken "
        "before the migration)"
    )


def pending(revision: str | None) -> list[str]:
    """The revisions after ``revision`` up to the newest, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    steps = [r.revision for r in script.iterate_revisions(head(), revision)]
    return list(reversed(steps))


async def migrate(
    engine: AsyncEngine, on_step: Callable[[str], None] | None = None
) -> tuple[str | None, str]:
    """Upgrade the database to the newest schema, one migration at a time (``on_step``
    hears each revision applied); (revision before, revision after)."""
    with storage_errors("migrate"):
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
            before = await conn.run_sync(_state)
            if before.revision is None and not before.has_tables:
                await conn.run_sync(_create_fresh)
            elif before.revision is None or before.revision not in known_revisions():
                check(before)  # no version, or a newer one: refused, saying why
            else:
                for step in pending(before.revision):
                    await conn.run_sync(_upgrade_to, step)
                    if on_step is not None:
                        on_step(step)
    return before.revision, head()


def _upgrade_to(connection: Connection, revision: str) -> None:
    from alembic import command

    command.upgrade(_with(connection), revision)


def upgrade_sql(url: str, since: str | None = None) -> str:
    """The SQL that upgrades a database of ``url``'s kind from revision ``since`` (None:
    an empty one) to the newest schema; a comment alone when it is the newest already."""
    from alembic import command

    if since == head():
        return f"-- schema already at {since}: nothing to upgrade"
    if since is not None and since not in known_revisions():
        raise SchemaMismatch(
            f"unknown schema revision {since!r}; known: {', '.join(known_revisions())}"
        )
    output = io.StringIO()
    command.upgrade(alembic_config(url, output), f"{since}:head" if since else "head", sql=True)
    return output.getvalue()


def upgrade_through_migrations(connection: Connection) -> None:
    """Run every migration from nothing (what a test compares with the models)."""
    from alembic import command

    command.upgrade(_with(connection), "head")
