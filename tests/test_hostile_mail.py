"""Hostile mail through the whole intake: every mail a ticket or system mail, never a crash,
never quarantined for a parser exception, never a control character in what goes out."""

from __future__ import annotations

import itertools

import pytest

from mailgate.app import App
from mailgate.core.model import Action
from mailgate.intake.spool import Received
from mailgate.store.db import session
from mailgate.store.repos import Repo
from tests.conftest import CORPUS, REQUIRE_SERVERS, deliver
from tests.hostile import HEADER_CLASSES, as_delivered, corpus_raws, mutations

FUZZ_MAILS = 2000


async def outbound_bytes(app: App) -> list[bytes]:
    """Every mail the sender delivered (into the maildir), as bytes."""
    await app.sender.run_due()
    new = app.config.outbound.maildir / "new"
    return [path.read_bytes() for path in sorted(new.iterdir())] if new.exists() else []


@pytest.mark.parametrize("raw", list(HEADER_CLASSES.values()), ids=list(HEADER_CLASSES))
async def test_a_header_that_once_made_the_parser_raise_becomes_a_ticket(
    app: App, raw: bytes
) -> None:
    outcome = await deliver(app, raw)
    assert outcome.action in (Action.CREATED, Action.SYSTEM), outcome
    sent_mails = await outbound_bytes(app)
    assert sent_mails or outcome.action is Action.SYSTEM  # a ticket: at least the team heard
    for sent in sent_mails:
        assert b"\x00" not in sent
        head = sent.partition(b"\r\n\r\n")[0]
        assert not any(c < 32 and c not in (9, 10, 13) for c in head), head


async def test_an_address_with_nul_is_no_address_and_gets_no_mail(app: App) -> None:
    outcome = await deliver(app, HEADER_CLASSES["nul-in-from-and-return-path"])
    assert outcome.action is Action.CREATED and outcome.ticket is not None
    async with session(app.engine) as s:
        view = await Repo(s).ticket_view(outcome.ticket)
        items = await Repo(s).outbox_list()
    assert view is not None
    assert view.requester is None and view.title == "Titel met controles"
    assert [i.kind for i in items] == ["team_new_ticket"]  # no acknowledgment to a NUL address
    for item in items:
        assert all("\x00" not in r for r in item.recipients)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_mutated_corpus_mails_never_escape_or_quarantine(app: App) -> None:
    seeds = corpus_raws(CORPUS)
    seeds += [as_delivered(raw) for raw in seeds]  # bare LF as in the files, and CRLF
    if not seeds:
        if REQUIRE_SERVERS:
            pytest.fail(f"the corpus is missing at {CORPUS}")
        pytest.skip("the corpus is missing")
    actions: dict[str, int] = {}
    stored_ids: list[int] = []
    arriving = mutations(seeds, FUZZ_MAILS * 2)
    while len(stored_ids) < FUZZ_MAILS:  # in groups, as the daemon's worker takes them
        group = list(itertools.islice(arriving, min(64, FUZZ_MAILS - len(stored_ids))))
        assert group, "the mutations ran out"
        stored = [await app.spool.store(Received(raw, "test")) for raw in group]
        # (a mutation that left Message-ID and body alone is a duplicate: not processed)
        stored_ids += [s.spool_id for s in stored if not s.duplicate]
        for outcome in await app.processor.run_due():
            actions[outcome.action.value] = actions.get(outcome.action.value, 0) + 1
            assert outcome.action is not Action.QUARANTINED, outcome.reason
    assert sum(actions.values()) == len(stored_ids) == FUZZ_MAILS, actions
    assert actions.get("created", 0) > FUZZ_MAILS // 4, actions
