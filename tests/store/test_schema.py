"""Migrations on SQLite and PostgreSQL: from nothing, from the first release, and refusals."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlmodel import SQLModel

from mailgate.app import build_app
from mailgate.clock import FrozenClock
from mailgate.config import Config
from mailgate.errors import SchemaMismatch
from mailgate.store import tables  # noqa: F401 - registers the tables
from mailgate.store.compression import COLUMNS
from mailgate.store.db import create_engine
from mailgate.store.schema import (
    alembic_config,
    head,
    migrate,
    prepare_schema,
    upgrade_sql,
    upgrade_through_migrations,
)
from mailgate.store.search import is_search_object


def differences(connection: Connection) -> list[Any]:
    """What the database has that the models do not, or lacks; the search structures (not
    models: ``store.search``) are checked by ``searchable``."""

    def include(_: Any, name: str | None, *__: Any) -> bool:
        return not is_search_object(name)

    context = MigrationContext.configure(connection, opts={"include_object": include})
    with warnings.catch_warnings():  # SQLAlchemy does not reflect expression indexes
        warnings.filterwarnings("ignore", "Skipped unsupported reflection .* ix_search_")
        return list(compare_metadata(context, SQLModel.metadata))


def searchable(connection: Connection) -> set[str]:
    """The search structures the database has (``store.search``)."""
    if connection.dialect.name == "postgresql":
        query = (
            "SELECT indexname FROM pg_indexes WHERE indexname = 'ix_search_words' "
            "UNION ALL SELECT tgname FROM pg_trigger WHERE tgname LIKE 'search_%'"
        )
    else:
        query = "SELECT name FROM sqlite_master WHERE name LIKE 'search_%' AND type != 'table'"
    return {str(name) for name in connection.execute(text(query)).scalars()}


def merging(connection: Connection) -> dict[str, dict[str, int]]:
    """SQLite's search tables' merge settings: the writes leave merging to quiet moments."""
    if connection.dialect.name != "sqlite":
        return {}
    return {
        name: {
            str(k): int(v)
            for k, v in connection.execute(text(f"SELECT k, v FROM {name}_config"))
            if k in ("automerge", "crisismerge")
        }
        for name in ("search_tickets", "search_messages")
    }


def compressed(connection: Connection) -> set[tuple[str, str]]:
    """The columns PostgreSQL compresses with LZ4 (``store.compression``)."""
    if connection.dialect.name != "postgresql":
        return set()
    query = (
        "SELECT c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "WHERE a.attcompression = 'l' AND c.relkind = 'r' "
        "AND c.relnamespace = 'public'::regnamespace"
    )
    return {(str(t), str(c)) for t, c in connection.execute(text(query))}


COMPRESSED = {"postgresql": set(COLUMNS), "sqlite": set()}
MERGING = {
    "postgresql": {},
    "sqlite": {
        t: {"automerge": 0, "crisismerge": 64} for t in ("search_tickets", "search_messages")
    },
}
SEARCH = {
    "postgresql": {
        "ix_search_words",
        "search_tickets_words",
        "search_messages_words",
        "search_messages_changed",
    },
    "sqlite": {f"search_{t}_{s}" for t in ("tickets", "messages") for s in ("ai", "ad", "au")},
}


def revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def test_every_migration_from_nothing_gives_exactly_the_models(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(upgrade_through_migrations)
        async with engine.connect() as conn:
            assert await conn.run_sync(differences) == []
            assert await conn.run_sync(revision) == head()
            assert await conn.run_sync(searchable) == SEARCH[conn.dialect.name]
            assert await conn.run_sync(merging) == MERGING[conn.dialect.name]
            assert await conn.run_sync(compressed) == COMPRESSED[conn.dialect.name]
    finally:
        await engine.dispose()


async def test_a_fresh_database_is_made_at_the_newest_schema(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await prepare_schema(engine)
        await prepare_schema(engine)  # a second start finds it ready
        async with engine.connect() as conn:
            assert await conn.run_sync(differences) == []
            assert await conn.run_sync(searchable) == SEARCH[conn.dialect.name]
            assert await conn.run_sync(merging) == MERGING[conn.dialect.name]
            assert await conn.run_sync(compressed) == COMPRESSED[conn.dialect.name]
            assert await conn.run_sync(revision) == head()
    finally:
        await engine.dispose()


def _upgrade_to_first(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "0001")


async def test_a_first_release_database_is_refused_then_migrated_keeping_its_tickets(
    config: Config, clock: FrozenClock
) -> None:
    engine = create_engine(config.database.url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade_to_first)
            await conn.execute(
                text(
                    "INSERT INTO tickets (queue, title, type, priority, status, created_at, "
                    "updated_at, updated_by, version) VALUES ('support', 'Oud ticket', "
                    "'question', 'medium', 'new', :now, :now, 'alice@customer.nl', 1)"
                ),
                {"now": clock.now().replace(tzinfo=None)},
            )
        with pytest.raises(SchemaMismatch, match=r"older than this mailgate.*mailgate migrate"):
            await build_app(config, clock)
        assert await migrate(engine) == ("0001", head())
        assert await migrate(engine) == (head(), head())
    finally:
        await engine.dispose()
    app = await build_app(config, clock)
    try:
        async with app.engine.connect() as conn:
            row = (await conn.execute(text("SELECT title, action_by, approval FROM tickets"))).one()
        assert tuple(row) == ("Oud ticket", "support", "none")
    finally:
        await app.close()


async def test_a_newer_schema_is_refused(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await prepare_schema(engine)
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(SchemaMismatch, match="newer than this mailgate"):
            await prepare_schema(engine)
        with pytest.raises(SchemaMismatch, match="newer than this mailgate"):
            await migrate(engine)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("url", ["sqlite+aiosqlite:///x.db", "postgresql+asyncpg://u@h/db"])
def test_migrate_sql_prints_the_upgrade(url: str) -> None:
    sql = upgrade_sql(url)
    assert "CREATE TABLE tickets" in sql and "CREATE TABLE timers" in sql
    assert f"UPDATE alembic_version SET version_num='{head()}'" in sql


def test_the_revisions_read_from_file_names_are_alembics() -> None:
    """``head`` and ``known_revisions`` read the migrations' file names, not alembic (which
    every command would otherwise import at start): the two must agree."""
    from alembic.script import ScriptDirectory

    from mailgate.store.schema import known_revisions

    script = ScriptDirectory.from_config(alembic_config())
    assert head() == script.get_current_head()
    assert known_revisions() == {r.revision for r in script.walk_revisions()}
