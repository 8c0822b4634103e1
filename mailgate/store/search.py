"""Full-text search over tickets: SQLite FTS5 tables, a PostgreSQL GIN index, one query.

What is searched: a ticket's title, requester and organisation, and the visible text of
its messages but mailgate's own notices (by words, each a prefix, all of them); and,
exactly, a participant's address and a reference field's value (both indexed). The text
is split into words at every character that is not a letter or digit, without stemming,
so Dutch and English words match as typed.

- SQLite: two FTS5 tables with external content (``search_tickets`` over ``tickets``,
  ``search_messages`` over ``messages``), kept current by triggers; accents are folded
  ("cafe" finds "café"). All the words are looked for in one message, or in the
  ticket's title, requester and organisation. A write adds a segment and leaves the
  merging of segments (work that grows with the index) to quiet moments
  (``merge_some``, on the thread of store/checkpoints.py; decision 0026).
- PostgreSQL: each ticket carries its words (``tickets.search_words``, a tsvector that
  triggers keep: a new message adds its words; a changed title or text makes them
  again), under a GIN index. All the words are looked for in the whole ticket, and the
  index combines with the list's filters in one bitmap. Accents are kept (``unaccent``
  is not immutable, so it cannot be indexed as is).

Two expression indexes serve the list's case-insensitive requester and organisation
filters. The structures are not models: ``install`` creates them for a fresh database
and migration 0010 for an older one; their names start with ``search_`` (indexes
``ix_search_``), which schema comparisons leave out.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from sqlalchemy import Connection, false, func, literal_column, or_, select, text, union
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

from mailgate.store.tables import table

TICKETS = table("tickets")
MESSAGES = table("messages")
PARTICIPANTS = table("participants")
FIELDS = table("ticket_fields")
SYSTEM = "system"  # mailgate's own notices: never what an agent looks for
PREFIX = "search_"  # the names of what ``install`` makes start so (or with ix_search_)


_WORDS = "tokenize='unicode61 remove_diacritics 2'"  # "café" is found by "cafe"
# The list's requester and organisation filters compare case-insensitively.
_LOWER = [
    "CREATE INDEX IF NOT EXISTS ix_search_requester ON tickets (lower(requester))",
    "CREATE INDEX IF NOT EXISTS ix_search_organisation ON tickets (lower(organisation))",
]
# A message's words are indexed unless it is one of our notices (``SYSTEM``): their text
# is the same on every ticket, so their words would find every ticket (and indexing them
# cost half the index's writes). Made again, with the index, by migration 0015.
_SQLITE_MESSAGES = [
    "DROP TRIGGER IF EXISTS search_messages_ai",
    "DROP TRIGGER IF EXISTS search_messages_ad",
    "DROP TRIGGER IF EXISTS search_messages_au",
    "CREATE TRIGGER search_messages_ai AFTER INSERT ON messages "  # noqa: S608 - constants
    f"WHEN new.kind <> '{SYSTEM}' BEGIN "
    "INSERT INTO search_messages(rowid, visible_text) VALUES (new.id, new.visible_text); "
    "END",
    "CREATE TRIGGER search_messages_ad AFTER DELETE ON messages "  # noqa: S608 - constants
    f"WHEN old.kind <> '{SYSTEM}' BEGIN "
    "INSERT INTO search_messages(search_messages, rowid, visible_text) "
    "VALUES ('delete', old.id, old.visible_text); END",
    "CREATE TRIGGER search_messages_au AFTER UPDATE OF visible_text, kind ON messages BEGIN "
    "INSERT INTO search_messages(search_messages, rowid, visible_text) "
    f"SELECT 'delete', old.id, old.visible_text WHERE old.kind <> '{SYSTEM}'; "
    "INSERT INTO search_messages(rowid, visible_text) "
    f"SELECT new.id, new.visible_text WHERE new.kind <> '{SYSTEM}'; END",
    # ('rebuild' would index every row of messages, notices too)
    "INSERT INTO search_messages(search_messages) VALUES ('delete-all')",
    "INSERT INTO search_messages(rowid, visible_text) "  # noqa: S608 - constants
    f"SELECT id, visible_text FROM messages WHERE kind <> '{SYSTEM}'",
]
# FTS5 merges an index's segments (one per transaction that wrote words) four at a time
# as it writes: a word is rewritten once per level, and the levels grow with the index
# (measured: the intake's CPU a mail 20 % higher with 100,000 tickets than with 1,000, none
# of it without the merges). The writes leave them ("automerge" 0), up to ``CRISIS``
# segments on one level (then FTS5 merges them in the write that makes one more, 64 at a
# time: the bound when no quiet moment comes); ``merge_some`` does it in quiet moments.
TABLES = ("search_tickets", "search_messages")
CRISIS = 64
MERGE_PAGES = 100  # leaf pages a merge step writes per table (one short write transaction)


def merge_settings(automerge: int, crisismerge: int) -> list[str]:
    """The statements that set SQLite's search tables' merging (FTS5's own: 4 and 16)."""
    return [
        f"INSERT INTO {name}({name}, rank) VALUES ('{option}', {value})"  # noqa: S608 - ints
        for name in TABLES
        for option, value in (("automerge", automerge), ("crisismerge", crisismerge))
    ]


_SQLITE_MERGES = merge_settings(0, CRISIS)
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
    *_SQLITE_MESSAGES,
    "INSERT INTO search_tickets(search_tickets) VALUES ('rebuild')",
    *_SQLITE_MERGES,
]

_TICKET_WORDS_PG = (
    "search_words_of(NEW.title || ' ' || coalesce(NEW.requester, '') || ' ' "
    "|| coalesce(NEW.organisation, ''))"
)
# The text split as SQLite's tokenizer splits it (at every character that is not a
# letter or digit), lower case, no stemming; the words without their positions, which no
# search asks for: a ticket's words are a tenth of the bytes, cheaper to add to
# (migration 0019). Split by one regular expression straight into the words, not
# replaced by spaces and parsed again by ``to_tsvector('simple', ...)``: the same words
# (compared on random text of every script, the longest words too: a word of 2,047 bytes
# or more is left out as the parser leaves it out, and must be: ``array_to_tsvector``
# would store it cut) for a third less of the server's CPU (0.8-0.9 ms against 1.1-1.3
# for an update of a ticket's words with 5 KB of text; migration 0021). PL/pgSQL keeps
# the function's plan for the session; a SQL function with a subquery is planned again
# at every call of the trigger.
# A tsvector holds at most 1 MB of words, and ``array_to_tsvector`` does not check: past
# it the words it stores are garbage. A text of more than ``_WORDS_TEXT`` bytes (its
# words, lower case, fit in ``_WORDS_BUDGET`` however it is written: lower case is at
# most half again as long) therefore keeps its distinct words in the order they first
# appear until they fill ``_WORDS_BUDGET``, half the limit, which leaves room for the
# ticket's other words. (``to_tsvector`` refused such a text, and the mail's message
# with it.)
_WORDS_TEXT = 300_000
_WORDS_BUDGET = 500_000
_WORDS_LIMIT = 1_048_575  # bytes of words a tsvector holds
_LONGEST_WORD = 2_046  # bytes: the parser leaves longer words out
_SPLIT = "regexp_split_to_array(lower(t), '[^[:alnum:]]+')"
_WORD = f"octet_length(w) BETWEEN 1 AND {_LONGEST_WORD}"
WORDS_FUNCTION = (
    "CREATE OR REPLACE FUNCTION search_words_of(t text) RETURNS tsvector LANGUAGE plpgsql "  # noqa: S608 - constants
    "IMMUTABLE AS $$ BEGIN t := coalesce(t, ''); "
    f"IF octet_length(t) <= {_WORDS_TEXT} THEN "
    f"RETURN array_to_tsvector(ARRAY(SELECT w FROM unnest({_SPLIT}) AS w WHERE {_WORD})); "
    "END IF; "
    "RETURN array_to_tsvector(ARRAY(SELECT w FROM ("
    "SELECT w, sum(octet_length(w)) OVER (ORDER BY first, w) AS total FROM ("
    f"SELECT w, min(n) AS first FROM unnest({_SPLIT}) WITH ORDINALITY AS u(w, n) "
    f"WHERE {_WORD} GROUP BY w) AS distinct_words) AS running "
    f"WHERE total <= {_WORDS_BUDGET})); END $$"
)
# A new message adds its words to its ticket's while they fit in a tsvector (1,048,575
# bytes of words; past it ``||`` refuses, and with it the message's insert, as it did
# for a ticket that had gathered that many). Up to 512 words (of at most 2,046 bytes)
# they fit; past that, the ticket's words are made whole in memory (``|| ''``: stored,
# they are compressed), where a tsvector's size is 8 bytes, 4 a word and the words'
# bytes. A ticket that is full keeps the words it has (its title's, its earlier
# messages'); its messages are kept and shown whole all the same.
MESSAGE_WORDS_FUNCTION = (
    "CREATE OR REPLACE FUNCTION search_message_words() RETURNS trigger LANGUAGE plpgsql AS $$ "  # noqa: S608 - constants
    "DECLARE had tsvector; adding tsvector; BEGIN "
    "SELECT coalesce(search_words, ''::tsvector) INTO had FROM tickets "
    "WHERE id = NEW.ticket_id FOR UPDATE; "
    "adding := search_words_of(NEW.visible_text); "
    f"IF length(had) + length(adding) > {_WORDS_LIMIT // _LONGEST_WORD} THEN "
    "had := had || ''::tsvector; "
    "IF pg_column_size(had) + pg_column_size(adding) - 16 "
    f"- 4 * (length(had) + length(adding)) > {_WORDS_LIMIT} THEN RETURN NULL; END IF; "
    "END IF; "
    "UPDATE tickets SET search_words = had || adding WHERE id = NEW.ticket_id; "
    "RETURN NULL; END $$"
)
_POSTGRESQL = [
    *_LOWER,
    "ALTER TABLE tickets ADD COLUMN IF NOT EXISTS search_words tsvector",
    WORDS_FUNCTION,
    # A ticket's words: its title, requester and organisation, and (when they change, or
    # a message's text does) the texts of its messages but our notices.
    "CREATE OR REPLACE FUNCTION search_ticket_words() RETURNS trigger LANGUAGE plpgsql AS $$ "  # noqa: S608 - constants
    f"BEGIN NEW.search_words := {_TICKET_WORDS_PG}; "
    "IF TG_OP = 'UPDATE' THEN NEW.search_words := NEW.search_words || coalesce(("
    "SELECT search_words_of(string_agg(visible_text, ' ')) FROM messages "
    f"WHERE ticket_id = NEW.id AND kind <> '{SYSTEM}'), ''::tsvector); END IF; "
    "RETURN NEW; END $$",
    "CREATE OR REPLACE TRIGGER search_tickets_words BEFORE INSERT OR UPDATE OF title, "
    "requester, organisation ON tickets FOR EACH ROW EXECUTE FUNCTION search_ticket_words()",
    MESSAGE_WORDS_FUNCTION,
    "CREATE OR REPLACE TRIGGER search_messages_words AFTER INSERT ON messages FOR EACH ROW "
    f"WHEN (NEW.kind <> '{SYSTEM}') EXECUTE FUNCTION search_message_words()",
    # A changed, moved (a merge) or removed text: the tickets' words made again (title =
    # title fires their trigger).
    "CREATE OR REPLACE FUNCTION search_message_changed() RETURNS trigger LANGUAGE plpgsql "
    "AS $$ BEGIN UPDATE tickets SET title = title WHERE id = OLD.ticket_id; "
    "IF TG_OP = 'UPDATE' AND NEW.ticket_id <> OLD.ticket_id THEN "
    "UPDATE tickets SET title = title WHERE id = NEW.ticket_id; END IF; RETURN NULL; END $$",
    "CREATE OR REPLACE TRIGGER search_messages_changed AFTER UPDATE OF visible_text, ticket_id "
    "OR DELETE ON messages FOR EACH ROW EXECUTE FUNCTION search_message_changed()",
    "UPDATE tickets SET title = title",
    "CREATE INDEX IF NOT EXISTS ix_search_words ON tickets USING gin (search_words)",
]


def install(connection: Connection) -> None:
    """Create the search structures of the connection's database (and fill them)."""
    statements = _POSTGRESQL if connection.dialect.name == "postgresql" else _SQLITE
    for statement in statements:
        connection.execute(text(statement))


def index_message_words(connection: Connection) -> None:
    """Make SQLite's index of messages' words again, without our notices (``_SQLITE_MESSAGES``);
    PostgreSQL's has always left them out."""
    if connection.dialect.name == "sqlite":
        for statement in _SQLITE_MESSAGES:
            connection.execute(text(statement))


def merge_later(connection: Connection) -> None:
    """SQLite's index: writes leave the merging of segments to ``merge_some`` (migration 0016)."""
    if connection.dialect.name == "sqlite":
        for statement in _SQLITE_MERGES:
            connection.execute(text(statement))


def merge_some(conn: sqlite3.Connection) -> bool:
    """One step of merging SQLite's search index: at most ``MERGE_PAGES`` leaf pages written per
    table, each table in a write transaction of its own (``conn`` in autocommit); whether
    there was work (none: the index is as merged as FTS5's ``usermerge`` asks)."""
    worked = False
    for name in TABLES:
        before = conn.total_changes
        conn.execute(f"INSERT INTO {name}({name}, rank) VALUES ('merge', ?)", (MERGE_PAGES,))  # noqa: S608 - constants
        worked = worked or conn.total_changes - before > 1  # a step without work counts 1
    return worked


def uninstall(connection: Connection) -> None:
    connection.execute(text("DROP INDEX IF EXISTS ix_search_requester"))
    connection.execute(text("DROP INDEX IF EXISTS ix_search_organisation"))
    if connection.dialect.name == "postgresql":
        for trigger, table_name in (
            ("search_tickets_words", "tickets"),
            ("search_messages_words", "messages"),
            ("search_messages_changed", "messages"),
        ):
            connection.execute(text(f"DROP TRIGGER IF EXISTS {trigger} ON {table_name}"))
        for function in ("search_ticket_words", "search_message_words", "search_message_changed"):
            connection.execute(text(f"DROP FUNCTION IF EXISTS {function}()"))
        connection.execute(text("DROP INDEX IF EXISTS ix_search_words"))
        connection.execute(text("ALTER TABLE tickets DROP COLUMN IF EXISTS search_words"))
        connection.execute(text("DROP FUNCTION IF EXISTS search_words_of(text)"))
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


def condition(conn: Connection, query: str) -> ColumnElement[bool]:
    """The condition on ``tickets`` of the tickets ``query`` finds."""
    found = words(query)
    exact = [
        select(PARTICIPANTS.c.ticket_id).where(PARTICIPANTS.c.address == query.strip().lower()),
        select(FIELDS.c.ticket_id).where(FIELDS.c.value == query.strip()),
    ]
    if conn.dialect.name == "postgresql":
        # The exact matches first (a few ids), so that the words' index and the list's
        # filters combine in one bitmap: no join with every ticket a common word is in.
        direct = list(conn.execute(union(*exact)).scalars())
        found_by: list[ColumnElement[bool]] = [TICKETS.c.id.in_(direct)] if direct else []
        if found:
            asked = func.to_tsquery("simple", " & ".join(f"{w}:*" for w in found))
            found_by.append(literal_column("tickets.search_words").op("@@")(asked))
        return or_(*found_by) if found_by else false()
    if not found:
        return TICKETS.c.id.in_(_ids(union(*exact)))
    asked_text = " ".join(f'"{w}"*' for w in found)

    def fts(name: str) -> Select[Any]:
        match = text(f"{name} MATCH :asked").bindparams(asked=asked_text)
        return select(literal_column("rowid")).select_from(text(name)).where(match)

    by_words = [
        fts("search_tickets"),
        select(MESSAGES.c.ticket_id).where(MESSAGES.c.id.in_(fts("search_messages"))),
    ]
    return TICKETS.c.id.in_(_ids(union(*by_words, *exact)))


def _ids(found: Any) -> Select[Any]:
    ids = found.subquery()
    return select(ids.c[0])
