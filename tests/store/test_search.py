"""The web desk's search and list on both databases: words, prefixes, addresses, fields."""

from __future__ import annotations

import re
from typing import Any

from mailgate.app import App
from mailgate.store.repos.desk import TicketQuery, list_tickets
from tests.conftest import deliver
from tests.mails import make_mail


async def found(app: App, **asked: Any) -> list[int]:
    query = TicketQuery(**asked)
    listed, _ = await app.blocking.read(lambda conn: list_tickets(conn, query))
    return [t.number for t in listed]


async def test_search_finds_by_words_prefixes_addresses_and_fields(app: App) -> None:
    await deliver(app, make_mail(subject="Printer brandt", body="Hal drie staat in brand."))
    await deliver(
        app,
        make_mail(
            subject="Factuur",
            sender="Bert <bert@klant.nl>",
            body="De factuur van maart rekent verzendkosten dubbel.",
        ),
    )
    await deliver(app, make_mail(subject="Café gesloten", sender="c@cafe.nl", body="Dicht."))
    assert await found(app, search="printer") == [1]
    assert await found(app, search="Verzendkost") == [2]  # a prefix, any case
    assert await found(app, search="factuur maart") == [2]  # every word
    assert await found(app, search="factuur brand") == []
    assert await found(app, search="bert@klant.nl") == [2]  # a participant, exactly
    assert await found(app, search="klant.nl") == [2]  # the requester's words
    assert await found(app, search="café") == [3]
    if app.engine.dialect.name == "sqlite":  # PostgreSQL's index keeps accents
        assert await found(app, search="cafe") == [3]
    assert sorted(await found(app)) == [1, 2, 3]
    # a later reply's text is found too, and a changed title by its new words
    tag = app.codec.subject_tag(1)
    await deliver(app, make_mail(subject=f"Re: {tag}", body="Nu ook rook in de kantine."))
    assert await found(app, search="kantine") == [1]


async def test_the_list_filters_and_sorts_incidents_first(app: App) -> None:
    await deliver(app, make_mail(subject="Vraag"))
    await deliver(app, make_mail(subject="Plat", to="sitedown@example.com"))  # critical bug
    assert await found(app, sort="priority") == [2, 1]
    assert await found(app, sort="number") == [2, 1]
    assert await found(app, queue="support") == [1]
    assert await found(app, priority="critical") == [2]
    assert await found(app, assignee="-") == [2, 1]
    assert await found(app, statuses=("closed",)) == []


async def test_a_merged_tickets_words_are_found_on_the_ticket_it_joined(app: App) -> None:
    from mailgate.service import mail_as

    await deliver(app, make_mail(subject="Printer", body="De printer piept."))
    await deliver(app, make_mail(subject="Nog iets", body="Ook de scanner hapert."))
    assert await found(app, search="scanner") == [2]
    await mail_as(app, 2, "anna@example.com", "", source="cli", commands=["#merge 1"])
    assert await found(app, search="scanner") == [1]  # #2 is merged away: not listed
    assert await found(app, search="scanner piept") == (
        [1] if app.engine.dialect.name == "postgresql" else []  # SQLite: within a message
    )


async def test_our_notices_words_are_not_indexed_and_the_index_stays_whole(app: App) -> None:
    """SQLite indexes the words of what people wrote, not of our notices (the same text on
    every ticket); removing a notice must then leave the index whole."""
    from sqlalchemy import text

    await deliver(app, make_mail(subject="Printer", body="De printer piept."))

    def texts(conn: Any, sql: str) -> set[str]:
        found = " ".join(conn.execute(text(sql)).scalars()).lower()
        return set(re.findall(r"[^\W_]+", found))

    notices = "SELECT visible_text FROM messages WHERE kind = 'system'"
    people = "SELECT visible_text FROM messages WHERE kind <> 'system' UNION ALL " + (
        "SELECT title || ' ' || requester || ' ' || organisation FROM tickets"
    )
    theirs = await app.blocking.read(lambda conn: texts(conn, people))
    # the notices' words that no word of the ticket's people begins with (words are prefixes)
    words = {
        w
        for w in await app.blocking.read(lambda conn: texts(conn, notices))
        if not any(p.startswith(w) for p in theirs)
    }
    assert len(words) > 5  # the acknowledgement's
    assert await found(app, search="piept") == [1]
    for word in sorted(words):
        assert await found(app, search=word) == [], word
    if app.engine.dialect.name != "sqlite":
        return

    def matches(conn: Any, word: str) -> int:
        asked = text("SELECT count(*) FROM search_messages WHERE search_messages MATCH :w")
        return int(conn.execute(asked, {"w": f'"{word}"'}).scalar_one())

    assert await app.blocking.read(lambda conn: matches(conn, "piept")) == 1
    for word in sorted(words):
        assert await app.blocking.read(lambda conn, w=word: matches(conn, w)) == 0, word

    def purge(conn: Any) -> None:
        conn.execute(text("DELETE FROM events WHERE ticket_id = 1"))  # they name messages
        conn.execute(text("DELETE FROM messages WHERE ticket_id = 1"))
        # raises "database disk image is malformed" when a removed row was never indexed
        conn.execute(text("INSERT INTO search_messages(search_messages, rank) "
                          "VALUES ('integrity-check', 0)"))  # fmt: skip

    await app.blocking.write(purge)
    assert await found(app, search="piept") == []
