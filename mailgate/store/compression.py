"""PostgreSQL compresses the large values with LZ4, not its default pglz.

A value of a row larger than about 2 KB is compressed before it is stored: a mail's
text (twice: what is shown and the whole), its raw bytes in the spool, a notice's bytes
in the outbox, an attachment in the database, a ticket's search words. pglz is slow to
compress; LZ4 does the same in a fraction of the CPU and compresses mail text about as
well (measured with ``bench/scale.py``'s instances: PostgreSQL's CPU a mail 0.5–0.9 ms
lower of 4–5, decision 0027). Only new values are compressed so; the old ones are read
as they are. A server built without LZ4 (``default_toast_compression`` does not offer
it) or older than 14 keeps pglz. SQLite compresses nothing.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

# (table, column): the values that grow with the mail. ``tickets.search_words`` is made
# by ``store.search.install``, before this.
COLUMNS = (
    ("spool_raw", "raw"),
    ("messages", "visible_text"),
    ("messages", "full_text"),
    ("messages", "html"),
    ("outbox", "raw"),
    ("blobs", "data"),
    ("tickets", "search_words"),
)


def statement(method: str) -> str:
    """One statement that sets ``method`` (``lz4``, or ``default`` to undo) on ``COLUMNS``
    where the server offers LZ4: it checks on the server, so it also serves as SQL
    written out for a database administrator (``mailgate migrate --sql``)."""
    alters = "; ".join(
        f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION {method}"
        for table, column in COLUMNS
    )
    return (  # built from our own names only
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_settings WHERE name = "  # noqa: S608
        "'default_toast_compression' AND 'lz4' = ANY(enumvals)) THEN "
        f"{alters}; END IF; END $$"
    )


def install(connection: Connection) -> None:
    """LZ4 for the large values of a fresh database (and migration 0018's)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text(statement("lz4")))
