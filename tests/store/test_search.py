"""The web desk's search and list on both databases: words, prefixes, addresses, fields."""

from __future__ import annotations

import re
import sqlite3
from typing import Any

import pytest
from sqlalchemy import text

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
    if app.engine.dialect.name == "postgresql":  # the words alone, without positions
        sql = text("SELECT search_words::text FROM tickets WHERE id = 1")
        words = await app.blocking.read(lambda conn: str(conn.execute(sql).scalar_one()))
        assert "'kantine'" in words and "'printer'" in words and ":" not in words


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


def segments(conn: Any) -> int:
    """The segments of SQLite's index of messages' words (each has a row in ``_idx``)."""
    sql = text("SELECT count(DISTINCT segid) FROM search_messages_idx")
    return int(conn.execute(sql).scalar_one())


async def add_messages(app: App, count: int, word: str) -> None:
    """``count`` messages on ticket 1 with ``word``, each written in a transaction of its own."""
    insert = text(
        "INSERT INTO messages (ticket_id, direction, kind, from_addr, to_addrs, cc_addrs, "
        'subject, visible_text, full_text, message_id, in_reply_to, "references", created_at) '
        "VALUES (1, 'in', 'customer', 'a@klant.nl', 'support@example.com', '', 'Re', :t, :t, "
        ":m, '', '', '2026-12-01 10:00:00')"
    )
    for n in range(count):
        await app.blocking.write(
            lambda conn, n=n: conn.execute(
                insert, {"t": f"{word} nummer{n}", "m": f"<{word}{n}@x>"}
            )
        )


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_writes_leave_the_index_unmerged_until_merge_some_merges_it(app: App) -> None:
    """A write adds a segment and merges none (up to ``CRISIS`` on a level); ``merge_some``
    merges them in steps, and every word is found before and after."""
    from mailgate.store.search import CRISIS, merge_some

    assert app.blocking.checkpoints is not None
    app.blocking.checkpoints.close()  # its thread would merge in a quiet second
    await deliver(app, make_mail(subject="Printer", body="De printer piept."))
    before = await app.blocking.read(segments)
    await add_messages(app, 20, "toner")
    assert await app.blocking.read(segments) == before + 20
    assert await found(app, search="toner") == [1]
    path = str(app.engine.url.database)
    with sqlite3.connect(path, isolation_level=None) as conn:
        steps = 0
        while merge_some(conn):
            steps += 1
        assert steps >= 1
        assert not merge_some(conn)  # nothing left
    assert await app.blocking.read(segments) < 4  # FTS5's usermerge: fewer than 4 a level
    assert await found(app, search="toner") == [1]
    assert await found(app, search="nummer19") == [1]
    # With no quiet moment, a level never holds more than CRISIS segments.
    await add_messages(app, CRISIS + 5, "inkt")
    assert await app.blocking.read(segments) < CRISIS
    assert await found(app, search="inkt") == [1]

    def integrity(conn: Any) -> None:
        check = "INSERT INTO search_messages(search_messages, rank) VALUES ('integrity-check', 0)"
        conn.execute(text(check))  # raises when the index's own structure is damaged

    await app.blocking.write(integrity)


PARSED = (
    "strip(to_tsvector('simple', regexp_replace(coalesce(CAST(:t AS text), ''), "
    "'[^[:alnum:]]+', ' ', 'g')))"
)


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_words_are_split_as_postgresqls_parser_splits_the_text_at_non_letters(
    app: App,
) -> None:
    """``search_words_of`` splits with one regular expression; the words are those that
    PostgreSQL's own parser finds in the text with every non-letter made a space (what it
    did before, at half again the CPU), the longest words left out as the parser does."""
    texts = [
        "",
        "Printer brandt: bert@klant.nl https://klant.nl/a?b=1 12.5 1,000 foo_bar e-mail",
        "Café ÉÉN Straße İstanbul ΑΒΓ αβγ ς 日本語のテキスト 한국어 ½ ² Ⅻ ﬁx a\u0301b 😀",
        "x" * 2045 + " kort",
        "x" * 2046 + " kort",
        "é" * 1023 + " é",
        "tab\tnew\nline\r\nend  don't it's C++ C#",
    ]
    same = text(f"SELECT search_words_of(:t) = {PARSED}, search_words_of(:t)::text")
    for sample in texts:
        equal, words = await app.blocking.read(
            lambda conn, t=sample: conn.execute(same, {"t": t}).one()
        )
        assert equal, (sample[:40], words[:200])
    words = await app.blocking.read(lambda conn: conn.execute(same, {"t": texts[1]}).one()[1])
    assert words == (
        "'000' '1' '12' '5' 'a' 'b' 'bar' 'bert' 'brandt' 'e' 'foo' 'https' 'klant' 'mail' "
        "'nl' 'printer'"
    )


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_text_of_more_words_than_a_tsvector_holds_keeps_its_first_words(
    app: App,
) -> None:
    """A tsvector holds 1 MB of words and ``array_to_tsvector`` does not check (past it,
    garbage is stored): a log of 40,000 distinct words (680 KB) keeps its first words, as
    many as fill half of that, and its mail is a ticket like any other. A second such log
    fills the ticket's words; a third would take them past the limit: its mail is added
    all the same (it was refused, and quarantined), its words are not, and a later short
    reply's are again."""
    import secrets

    def log(words: list[str]) -> str:
        return "\n".join(" ".join(words[i : i + 8]) for i in range(0, len(words), 8))

    logs = [[secrets.token_hex(8) for _ in range(40_000)] for _ in range(3)]
    check = text(
        "SELECT (w::text)::tsvector = w, length(w), "
        "(SELECT sum(octet_length(x)) FROM unnest(tsvector_to_array(w)) AS x) "
        "FROM search_words_of(:t) AS w"
    )
    intact, count, size = await app.blocking.read(
        lambda conn: conn.execute(check, {"t": log(logs[0])}).one()
    )
    assert intact and 500_000 - 17 < size <= 500_000 and count < 40_000
    outcome = await deliver(app, make_mail(subject="Crash", body=log(logs[0])))
    assert outcome.action.value == "created"
    ticket = outcome.ticket
    assert await found(app, search=logs[0][0]) == [ticket]
    assert await found(app, search=logs[0][-1]) == []  # past the budget
    tag = app.codec.subject_tag(ticket or 0)
    for n, expected in ((1, [ticket]), (2, [])):
        reply = await deliver(app, make_mail(subject=f"Re: {tag}", body=log(logs[n])))
        assert (reply.action.value, reply.ticket) == ("appended", ticket)
        assert await found(app, search=logs[n][0]) == expected  # the third: no room left
    later = await deliver(app, make_mail(subject=f"Re: {tag}", body="Nu in de kantine."))
    assert later.action.value == "appended"
    assert await found(app, search="kantine") == [ticket]
