"""Full-text search over tickets: SQLite FTS5 tables, PostgreSQL GIN indexes, one query.

What is searched: a ticket's title, requester and organisation, and the visible text of
its messages but mailgate's own notices (by words, each a prefix, all of them); and,
exactly, a participant's address and a reference field's value (both indexed). On
SQLite two FTS5 tables with external content (``search_tickets`` over ``tickets``,
``search_messages`` over ``messages``) are kept current by triggers; on PostgreSQL two
GIN indexes over ``to_tsvector('simple', ...)`` expressions are (the ``simple``
configuration: no stemming, so Dutch and English words match as typed; the text split
into words as SQLite's tokenizer splits it). SQLite also folds accents ("cafe" finds
"café"); PostgreSQL does not (``unaccent`` is not immutable, so it cannot be indexed as
is). Two expression indexes serve the list's case-insensitive requester and
organisation filters. The structures are not models: ``install`` creates them for a
fresh database and migration 0010 for an older one.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection, func, literal_column, select, text, union
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnClause

from mailgate.store.tables import table

TICKETS = table("tickets")
MESSAGES = table("messages")
PARTICIPANTS = table("participants")
FIELDS = table("ticket_fields")
SYSTEM = "system"  # mailgate's own notices: never what an agent looks for
PREFIX = "search_"  # the names of what ``install`` makes start so (or with ix_search_)
_TICKET_TEXT = "title || ' ' || coalesce(requester, '') || ' ' || coalesce(organisation, '')"


def _words_of(sql: str) -> str:
    """PostgreSQL's words of ``sql``'s text as SQLite's tokenizer makes them: split at every
    character that is not a letter or digit (so "bert@klant.nl" is bert, klant, nl)."""
    return f"to_tsvector('simple', regexp_replace({sql}, '[^[:alnum:]]+', ' ', 'g'))"


_TICKET_WORDS = _words_of(_TICKET_TEXT)
_MESSAGE_WORDS = _words_of("visible_text")

_WORDS = "tokenize='unicode61 remove_diacritics 2'"  # "café" is found by "cafe"
# The list's requester and organisation filters compare case-insensitively.
_LOWER = [
    "CREATE INDEX IF NOT EXISTS ix_search_requester ON tickets (lower(requester))",
    "CREATE INDEX IF NOT EXISTS ix_search_organisation ON tickets (lower(organisation))",
]
_SQLITE = [
    *_LOWER,
    "CREATE VIRTUAL TABLE IF NOT EXISTS search_tickets USING fts5(title, requester, "
    f"organisation, content='tickets', content_rowid='id', {_WORDS})",
    "CREATE VIRTUAL TABLE IF NOT EXISTS search_messages USING fts5(visible_text, "
    f"content='messages', content_rowid='id', {_WORDS})",
    "CREATE TRIGGER IF NOT EXISTS search_tickets_ai AFTER INSERT ON tickets BEGIN "
    "INSERT INTO search_tickets(rowid, title, requester, organisation) "
    "VALUES (new.id, new.title, new.requester, new.organisation); END",
    "CREATE TRIGGER IF NOT EXISTS search_tickets_ad AFTER DELETE ON tickets BEGIN "
    "INSERT INTO search_tickets(search_tickets, rowid, title, requester, organisation) "
    "VALUES ('delete', old.id, old.title, old.requester, old.organisation); END",
    "CREATE TRIGGER IF NOT EXISTS search_tickets_au AFTER UPDATE OF title, requester, "
    "organisation ON tickets BEGIN "
    "INSERT INTO search_tickets(search_tickets, rowid, title, requester, organisation) "
    "VALUES ('delete', old.id, old.title, old.requester, old.organisation); "
    "INSERT INTO search_tickets(rowid, title, requester, organisation) "
    "VALUES (new.id, new.title, new.requester, new.organisation); END",
    "CREATE TRIGGER IF NOT EXISTS search_messages_ai AFTER INSERT ON messages BEGIN "
    "INSERT INTO search_messages(rowid, visible_text) VALUES (new.id, new.visible_text); END",
    "CREATE TRIGGER IF NOT EXISTS search_messages_ad AFTER DELETE ON messages BEGIN "
    "INSERT INTO search_messages(search_messages, rowid, visible_text) "
    "VALUES ('delete', old.id, old.visible_text); END",
    "CREATE TRIGGER IF NOT EXISTS search_messages_au AFTER UPDATE OF visible_text ON messages "
    "BEGIN INSERT INTO search_messages(search_messages, rowid, visible_text) "
    "VALUES ('delete', old.id, old.visible_text); "
    "INSERT INTO search_messages(rowid, visible_text) VALUES (new.id, new.visible_text); END",
    "INSERT INTO search_tickets(search_tickets) VALUES ('rebuild')",
    "INSERT INTO search_messages(search_messages) VALUES ('rebuild')",
]
_POSTGRESQL = [
    *_LOWER,
    f"CREATE INDEX IF NOT EXISTS ix_search_tickets ON tickets USING gin (({_TICKET_WORDS}))",
    f"CREATE INDEX IF NOT EXISTS ix_search_messages ON messages USING gin (({_MESSAGE_WORDS})) "
    f"WHERE kind <> '{SYSTEM}'",
]


# Written out, not a parameter: the partial index's condition must be seen in the plan.
_NOT_SYSTEM: ColumnClause[Any] = literal_column(f"messages.kind <> '{SYSTEM}'")


def install(connection: Connection) -> None:
    """Create the search structures of the connection's database (and fill them)."""
    statements = _POSTGRESQL if connection.dialect.name == "postgresql" else _SQLITE
    for statement in statements:
        connection.execute(text(statement))


def uninstall(connection: Connection) -> None:
    connection.execute(text("DROP INDEX IF EXISTS ix_search_requester"))
    connection.execute(text("DROP INDEX IF EXISTS ix_search_organisation"))
    if connection.dialect.name == "postgresql":
        connection.execute(text("DROP INDEX IF EXISTS ix_search_tickets"))
        connection.execute(text("DROP INDEX IF EXISTS ix_search_messages"))
        return
    for name in ("tickets", "messages"):
        for suffix in ("ai", "ad", "au"):
            connection.execute(text(f"DROP TRIGGER IF EXISTS search_{name}_{suffix}"))
        connection.execute(text(f"DROP TABLE IF EXISTS search_{name}"))


def is_search_object(name: str | None) -> bool:
    """Whether ``name`` is one of the search structures (not a model: schema comparisons
    leave them out)."""
    return bool(name) and (str(name).startswith(PREFIX) or str(name).startswith("ix_search_"))


def words(query: str) -> list[str]:
    """The words of what was typed: letters and digits, at most ten."""
    return re.findall(r"\w+", query.lower())[:10]


def matching(dialect: str, query: str) -> Select[Any]:
    """The ids of the tickets ``query`` finds (a subquery for ``tickets.id IN``)."""
    found = words(query)
    exact = query.strip().lower()
    direct = [
        select(PARTICIPANTS.c.ticket_id).where(PARTICIPANTS.c.address == exact),
        select(FIELDS.c.ticket_id).where(FIELDS.c.value == query.strip()),
    ]
    if not found:
        return _ids(union(*direct))
    if dialect == "postgresql":
        asked = func.to_tsquery("simple", " & ".join(f"{w}:*" for w in found))
        by_words = [
            select(TICKETS.c.id).where(literal_column(_TICKET_WORDS).op("@@")(asked)),
            select(MESSAGES.c.ticket_id).where(
                literal_column(_MESSAGE_WORDS).op("@@")(asked), _NOT_SYSTEM
            ),
        ]
    else:
        asked_text = " ".join(f'"{w}"*' for w in found)

        def fts(name: str) -> Select[Any]:
            match = text(f"{name} MATCH :asked").bindparams(asked=asked_text)
            return select(literal_column("rowid")).select_from(text(name)).where(match)

        by_words = [
            fts("search_tickets"),
            select(MESSAGES.c.ticket_id).where(
                MESSAGES.c.id.in_(fts("search_messages")), MESSAGES.c.kind != SYSTEM
            ),
        ]
    return _ids(union(*by_words, *direct))


def _ids(found: Any) -> Select[Any]:
    ids = found.subquery()
    return select(ids.c[0])
