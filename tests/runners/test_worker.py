"""The intake path end to end on a real database: store, parse, route, persist."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text

from mailgate.app import App, build_app
from mailgate.clock import FrozenClock
from mailgate.config import Config
from mailgate.core.model import Action
from mailgate.errors import StorageUnavailable
from mailgate.intake.spool import Received
from mailgate.service import raw_mail
from mailgate.store.db import session
from mailgate.store.repos import Repo
from tests.conftest import CORPUS, corpus_mails, deliver
from tests.core.test_subject import MANGLINGS
from tests.mails import make_mail


async def _view(app: App, number: int):  # type: ignore[no-untyped-def]
    async with session(app.engine) as s:
        view = await Repo(s).ticket_view(number)
    assert view is not None
    return view


async def _count(app: App, table: str) -> int:
    async with session(app.engine) as s:
        return int((await s.exec(text(f"SELECT count(*) FROM {table}"))).one()[0])  # type: ignore[call-overload]


async def _open_ticket(app: App) -> tuple[int, str]:
    first = make_mail(message_id="<first@customer.nl>")
    outcome = await deliver(app, first)
    assert outcome.action is Action.CREATED and outcome.ticket is not None
    return outcome.ticket, app.codec.subject_tag(outcome.ticket)


async def test_new_mail_creates_ticket_with_everything_recorded(app: App) -> None:
    outcome = await deliver(app, make_mail(cc="Bob <bob@customer.nl>, support@example.com"))
    assert outcome.action is Action.CREATED
    view = await _view(app, outcome.ticket or 0)
    assert view.title == "Printer brandt"
    assert view.status == "new" and view.type == "question" and view.priority == "medium"
    assert view.requester == "alice@customer.nl" and view.organisation == "customer.nl"
    assert [(p.address, p.role.value) for p in view.participants] == [
        ("alice@customer.nl", "requester"),
        ("bob@customer.nl", "cc"),
    ]
    assert [m.kind for m in view.messages if m.direction == "in"] == ["customer"]
    assert view.messages[0].text == "Hallo, de printer brandt weer."
    assert [e.kind for e in view.events] == ["created"]


@pytest.mark.parametrize(
    ("prefix", "label"),
    MANGLINGS,
    ids=[m[1] for m in MANGLINGS],
)
async def test_reply_with_mangled_subject_and_token_is_appended(
    app: App, prefix: str, label: str
) -> None:
    ticket, tag = await _open_ticket(app)
    subject = prefix.replace("Printer", f"{tag} Printer", 1)
    outcome = await deliver(app, make_mail(subject=subject, body="Nog steeds."))
    assert (outcome.action, outcome.ticket) == (Action.APPENDED, ticket)
    assert "subject-token" in outcome.reason


async def test_reply_by_references_only_token_removed(app: App) -> None:
    ticket, _ = await _open_ticket(app)
    reply = make_mail(subject="Re: Printer brandt", references="<other@x> <first@customer.nl>")
    outcome = await deliver(app, reply)
    assert (outcome.action, outcome.ticket) == (Action.APPENDED, ticket)
    assert outcome.reason == "matched by references <first@customer.nl>"


async def test_reply_by_in_reply_to_of_a_received_message(app: App) -> None:
    ticket, tag = await _open_ticket(app)
    second = await deliver(app, make_mail(subject=f"Re: {tag}", message_id="<second@customer.nl>"))
    assert second.ticket == ticket
    outcome = await deliver(
        app, make_mail(subject="andere titel", in_reply_to="<second@customer.nl>")
    )
    assert (outcome.action, outcome.ticket) == (Action.APPENDED, ticket)
    assert outcome.reason.startswith("matched by in-reply-to")


async def test_reply_via_plus_address(app: App) -> None:
    ticket, _ = await _open_ticket(app)
    address = app.policy.plus_address("support@example.com", app.codec.token(ticket))
    outcome = await deliver(app, make_mail(subject="Re: iets", to=address))
    assert (outcome.action, outcome.ticket) == (Action.APPENDED, ticket)
    assert "plus-address" in outcome.reason
    envelope = await deliver(app, make_mail(subject="x", to="support@example.com"), to=(address,))
    assert (envelope.action, envelope.ticket) == (Action.APPENDED, ticket)


async def test_unrelated_mail_with_same_subject_is_a_new_ticket(app: App) -> None:
    ticket, _ = await _open_ticket(app)
    other = await deliver(
        app, make_mail(sender="Carol <carol@elders.nl>", subject="Re: Printer brandt")
    )
    assert other.action is Action.CREATED and other.ticket != ticket


async def test_forged_token_and_foreign_installation_open_new_tickets(app: App) -> None:
    ticket, _tag = await _open_ticket(app)
    check = app.codec.check(ticket)
    forged = f"[#{ticket}-{'0' if check[0] != '0' else '1'}{check[1:]}]"
    outcome = await deliver(app, make_mail(subject=f"Re: {forged} Printer brandt"))
    assert outcome.action is Action.CREATED and outcome.ticket != ticket
    assert "token check failed" in outcome.reason
    foreign = await deliver(app, make_mail(subject=f"Re: [OTHER#{ticket}-{check}] Printer"))
    assert foreign.action is Action.CREATED and foreign.ticket != ticket


async def test_reply_adds_new_cc_participants_with_an_event(app: App) -> None:
    ticket, tag = await _open_ticket(app)
    await deliver(app, make_mail(subject=f"Re: {tag}", cc="dave@customer.nl"))
    view = await _view(app, ticket)
    assert "dave@customer.nl" in [p.address for p in view.participants]
    assert [e.kind for e in view.events] == ["created", "participant_added", "message_added"]


async def _team_notice(app: App) -> str:
    """The Message-ID of the latest notice to the team: what an agent answers."""
    async with session(app.engine) as s:
        items = await Repo(s).outbox_list()
    return f"<{[o for o in items if o.kind == 'team_new_ticket'][-1].message_id}>"


async def test_agent_reply_is_an_agent_message(app: App) -> None:
    ticket, tag = await _open_ticket(app)
    notice = await _team_notice(app)
    await deliver(
        app,
        make_mail(sender="Bob Support <bob@example.com>", subject=f"Re: {tag}", in_reply_to=notice),
    )
    view = await _view(app, ticket)
    assert [m.kind for m in view.messages if m.direction == "in"] == ["customer", "agent"]
    assert view.updated_by == "bob@example.com"


async def test_mail_from_our_own_address_is_dropped_not_lost(app: App) -> None:
    outcome = await deliver(app, make_mail(sender="support@example.com"))
    assert outcome.action is Action.DROPPED and outcome.ticket is None
    assert await _count(app, "tickets") == 0
    assert await _count(app, "spool") == 1


async def test_queue_by_address_first_match_in_config_order(app: App) -> None:
    outcome = await deliver(app, make_mail(to="sitedown@example.com, support@example.com"))
    view = await _view(app, outcome.ticket or 0)
    assert view.queue == "support"
    down = await deliver(app, make_mail(to="sitedown@example.com"))
    down_view = await _view(app, down.ticket or 0)
    assert (down_view.queue, down_view.type, down_view.priority) == ("sitedown", "bug", "critical")


async def test_duplicate_delivery_is_processed_once(app: App) -> None:
    raw = make_mail()
    first = await deliver(app, raw)
    again = await app.spool.store(Received(b"Received: from mx2\r\n" + raw, "test"))
    assert again.duplicate and again.spool_id == first.spool_id
    assert await _count(app, "tickets") == 1 and await _count(app, "spool") == 1


async def test_mail_without_message_id_twice_is_processed_once(app: App) -> None:
    raw = make_mail(message_id=None)
    await deliver(app, raw)
    again = await app.spool.store(Received(raw, "test"))
    assert again.duplicate
    assert await _count(app, "messages WHERE direction = 'in'") == 1


async def test_odd_mails_become_tickets(app: App) -> None:
    no_from = await deliver(app, b"Subject: wie ben ik\r\nTo: support@example.com\r\n\r\nhoi\r\n")
    assert no_from.action is Action.CREATED
    view = await _view(app, no_from.ticket or 0)
    assert view.requester is None and view.title == "wie ben ik"
    empty_subject = await deliver(app, make_mail(subject=None))
    assert (await _view(app, empty_subject.ticket or 0)).title == "(no subject)"


@pytest.fixture
async def files_app(desk: Callable[..., Awaitable[App]]) -> App:
    """Every blob a file, however small (``[general] files_from = 0``)."""
    return await desk(general={"files_from": 0})


async def test_attachments_stored_content_addressed_and_deduplicated(
    files_app: App,
) -> None:
    app, config = files_app, files_app.config
    from email.message import EmailMessage
    from email.policy import SMTP

    def with_attachment(name: str) -> bytes:
        msg = EmailMessage(policy=SMTP)
        msg["From"] = "alice@customer.nl"
        msg["To"] = "support@example.com"
        msg["Subject"] = "scan"
        msg.set_content("bijlage")
        msg.add_attachment(b"%PDF same bytes", maintype="application", subtype="pdf", filename=name)
        return msg.as_bytes()

    one = await deliver(app, with_attachment("../../etc/passwd"))
    await deliver(app, with_attachment("con.txt"))
    view = await _view(app, one.ticket or 0)
    item = view.messages[0].attachments[0]
    assert item.filename == "passwd"
    stored = list(config.attachment_dir.rglob("*"))
    assert [p.name for p in stored if p.is_file()] == [item.sha256]
    assert (
        config.attachment_dir / item.sha256[:2] / item.sha256
    ).read_bytes() == b"%PDF same bytes"


async def test_failure_quarantines_keeps_the_mail_and_does_not_block_others(
    files_app: App,
) -> None:
    app, config = files_app, files_app.config
    bad = await app.spool.store(Received(make_mail(subject="kapot"), "test"))
    good = await app.spool.store(Received(make_mail(subject="heel"), "test"))
    # The disk under the blob store fails (every write below it fails, even as root):
    # moving the mail out of the spool is a storage problem, retried later.
    shutil.rmtree(config.spool_dir, ignore_errors=True)
    config.spool_dir.parent.mkdir(parents=True, exist_ok=True)
    config.spool_dir.write_text("not a directory")
    deferred = await app.processor.process(bad.spool_id)
    assert deferred is not None and deferred.action is Action.DEFERRED
    config.spool_dir.unlink()
    async with session(app.engine) as s:
        assert await Repo(s).spool_raw(bad.spool_id) is not None  # nothing lost meanwhile
    # A bug of ours is a permanent failure: quarantined with a traceback id.
    original = app.processor.applier
    app.processor.applier = dataclasses.replace(original, policy=None)  # type: ignore[arg-type]
    try:
        outcome = await app.processor.process(bad.spool_id)
    finally:
        app.processor.applier = original
    assert outcome is not None and outcome.action is Action.QUARANTINED
    async with session(app.engine) as s:
        listed = await Repo(s).quarantined()
    assert [e.id for e in listed] == [bad.spool_id] and listed[0].traceback_id
    outcomes = await app.processor.run_due()  # the other mail is not held up by it
    assert [(o.spool_id, o.action) for o in outcomes] == [(good.spool_id, Action.CREATED)]
    async with session(app.engine, write=True) as s:
        assert await Repo(s).requeue([bad.spool_id], app.clock.now()) == [bad.spool_id]
    retried = await app.processor.process(bad.spool_id)
    assert retried is not None and retried.action is Action.CREATED


async def test_stored_but_unprocessed_mail_is_processed_after_restart_once(
    config: Config, clock: FrozenClock
) -> None:
    first = await build_app(config, clock)
    stored = await first.spool.store(Received(make_mail(), "test"))
    await first.close()  # the process dies here, before processing
    second = await build_app(config, clock)
    try:
        outcomes = await second.processor.run_due()
        assert [(o.spool_id, o.action) for o in outcomes] == [(stored.spool_id, Action.CREATED)]
        assert await second.processor.run_due() == []
        assert await second.processor.process(stored.spool_id) is None
        assert await _count(second, "tickets") == 1
    finally:
        await second.close()


CORPUS_MAILS = corpus_mails()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=False)
async def test_every_corpus_mail_ingests_without_exception(app: App) -> None:
    failures = []
    for entry in CORPUS_MAILS:
        raw = (CORPUS / str(entry["path"])).read_bytes()
        stored = await app.spool.store(Received(raw, "corpus"))
        if stored.duplicate:
            continue
        outcome = await app.processor.process(stored.spool_id)
        if outcome is None or outcome.action in (Action.QUARANTINED, Action.DEFERRED):
            failures.append((entry["id"], outcome))
    assert CORPUS_MAILS, f"corpus missing at {CORPUS}"
    assert failures == []
    assert await _count(app, "spool") >= len(CORPUS_MAILS) - 5


async def test_bsn_numbers_are_masked_in_stored_text_and_notifications(app: App) -> None:
    raw = make_mail(body="Het gaat om leerling met BSN 111222333, graag snel.")
    outcome = await deliver(app, raw)
    view = await _view(app, outcome.ticket or 0)
    incoming = next(m for m in view.messages if m.direction == "in")
    assert "111222333" not in incoming.text and "111222333" not in incoming.full_text
    assert "[BSN verwijderd]" in incoming.text
    assert [e.kind for e in view.events][:2] == ["created", "privacy_masked"]
    async with session(app.engine) as s:
        raws = (await s.exec(text("SELECT raw FROM outbox"))).all()  # type: ignore[call-overload]
    assert raws and all(b"111222333" not in bytes(r[0]) for r in raws)
    # The raw mail itself is kept as received.
    entry_sha = (await app.spool.store(Received(raw, "again"))).spool_id
    async with session(app.engine) as s:
        spooled = await Repo(s).spool_get(entry_sha)
    assert spooled is not None
    assert b"111222333" in (await raw_mail(app, spooled) or b"")


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_oversized_attachments_are_not_stored_and_the_ticket_says_so(
    make_config: Any, clock: FrozenClock
) -> None:
    from email.message import EmailMessage
    from email.policy import SMTP

    config = make_config(intake={"max_attachment_size": 1000, "max_attachments_size": 1500})
    app = await build_app(config, clock)
    try:
        msg = EmailMessage(policy=SMTP)
        msg["From"] = "alice@customer.nl"
        msg["To"] = "support@example.com"
        msg["Subject"] = "bijlagen"
        msg.set_content("zie bijlagen")
        for name, size in (
            ("small.txt", 600),
            ("huge.zip", 5000),
            ("second.txt", 600),
            ("third.txt", 600),
        ):
            msg.add_attachment(
                b"x" * size, maintype="application", subtype="octet-stream", filename=name
            )
        outcome = await deliver(app, msg.as_bytes())
        view = await _view(app, outcome.ticket or 0)
        stored = [a.filename for a in view.messages[0].attachments]
        # The third would take the mail past 1,500 bytes.
        assert stored == ["small.txt", "second.txt"]
        skipped = [e.detail for e in view.events if e.kind == "attachment_skipped"]
        assert len(skipped) == 2 and "huge.zip (5000 bytes)" in (skipped[0] or "")
        assert not config.attachment_dir.exists() or all(
            p.stat().st_size <= 1000 for p in config.attachment_dir.rglob("*") if p.is_file()
        )
    finally:
        await app.close()


async def _ticket_with_ack(app: App) -> tuple[int, str]:
    outcome = await deliver(app, make_mail())
    assert outcome.ticket is not None
    return outcome.ticket, app.codec.subject_tag(outcome.ticket)


async def _kinds(app: App) -> list[tuple[str, tuple[str, ...]]]:
    async with session(app.engine) as s:
        return [(o.kind, o.recipients) for o in await Repo(s).outbox_list()]


async def test_a_strangers_reply_is_held_relayed_to_nobody_and_the_team_asked(app: App) -> None:
    ticket, tag = await _ticket_with_ack(app)
    held = await deliver(app, make_mail(sender="eve@elsewhere.org", subject=f"Re: {tag}"))
    assert (held.action, held.ticket) == (Action.HELD, ticket)
    assert "eve@elsewhere.org is not on the ticket, policy hold" in held.reason
    view = await _view(app, ticket)
    assert [m.kind for m in view.messages if m.direction == "in"] == ["customer", "held"]
    assert "eve@elsewhere.org" not in {p.address for p in view.participants}
    assert (await _kinds(app))[2:] == [("team_held", ("team@example.com",))]


async def test_a_colleague_at_the_customers_domain_is_accepted(app: App) -> None:
    ticket, tag = await _ticket_with_ack(app)
    reply = await deliver(app, make_mail(sender="carla@customer.nl", subject=f"Re: {tag}"))
    assert (reply.action, reply.ticket) == (Action.APPENDED, ticket)
    assert "carla@customer.nl" in {p.address for p in (await _view(app, ticket)).participants}


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("policy", ["accept", "new_ticket"])
async def test_the_unknown_sender_policy(make_config: Any, clock: FrozenClock, policy: str) -> None:
    app = await build_app(make_config(intake={"unknown_sender": policy}), clock)
    try:
        ticket, tag = await _ticket_with_ack(app)
        reply = await deliver(app, make_mail(sender="eve@elsewhere.org", subject=f"Re: {tag}"))
        if policy == "accept":
            assert (reply.action, reply.ticket) == (Action.APPENDED, ticket)
            view = await _view(app, ticket)
            assert "eve@elsewhere.org" in {p.address for p in view.participants}
        else:
            assert reply.action is Action.CREATED and reply.ticket != ticket
            new = await _view(app, reply.ticket or 0)
            assert new.requester == "eve@elsewhere.org"
            links = [(e.kind, e.new) for e in new.events if e.kind == "linked"]
            assert links == [("linked", f"#{ticket}")]
            old = await _view(app, ticket)
            assert ("linked", f"#{reply.ticket}") in [(e.kind, e.new) for e in old.events]
    finally:
        await app.close()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_mail_from_an_agents_address_failing_dmarc_is_not_the_agents(
    make_config: Any, clock: FrozenClock
) -> None:
    app = await build_app(make_config(intake={"trusted_authserv_ids": ["mx.example.com"]}), clock)
    try:
        _, tag = await _ticket_with_ack(app)
        forged = b"Authentication-Results: mx.example.com; dmarc=fail header.from=example.com\r\n"
        notice = await _team_notice(app)
        reply = await deliver(
            app,
            forged + make_mail(sender="piet@example.com", subject=f"Re: {tag}", in_reply_to=notice),
        )
        assert reply.action is Action.HELD
        assert "claims to be agent piet@example.com, but dmarc=fail" in reply.reason
        assert "agent_reply" not in [k for k, _ in await _kinds(app)]
        # The same mail where the receiver says DMARC passed is the agent's, relayed.
        genuine = b"Authentication-Results: mx.example.com; dmarc=pass header.from=example.com\r\n"
        ok = await deliver(
            app,
            genuine
            + make_mail(sender="piet@example.com", subject=f"Re: {tag}", in_reply_to=notice),
        )
        assert ok.action is Action.APPENDED
        assert [k for k, _ in await _kinds(app)][-1] == "agent_reply"
    finally:
        await app.close()


async def test_a_customer_who_sends_a_bsn_is_told_once(app: App) -> None:
    first = await deliver(app, make_mail(body="Mijn BSN is 111222333."))
    tag = app.codec.subject_tag(first.ticket or 0)
    await deliver(app, make_mail(subject=f"Re: {tag}", body="Nogmaals: 111222333"))
    await deliver(app, make_mail(subject="Andere vraag", body="BSN 111222333"))
    told = [(k, to) for k, to in await _kinds(app) if k == "privacy_notice"]
    assert told == [("privacy_notice", ("alice@customer.nl",))]


async def test_processing_moves_the_raw_mail_from_the_spool_into_the_blob_store(
    files_app: App,
) -> None:
    app = files_app
    raw = make_mail(subject="verhuis")
    stored = await app.spool.store(Received(raw, "test"))
    async with session(app.engine) as s:
        assert await Repo(s).spool_raw(stored.spool_id) == raw  # committed with the row
        entry = await Repo(s).spool_get(stored.spool_id)
    assert entry is not None and not app.processor.raw.path(entry.raw_sha256).exists()
    await app.processor.process(stored.spool_id)
    async with session(app.engine) as s:
        assert await Repo(s).spool_raw(stored.spool_id) is None
    assert app.processor.raw.get(entry.raw_sha256) == raw


async def test_a_batch_commits_only_after_the_raw_mails_it_names_are_written(
    files_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blob write runs beside the batch's application; the commit waits for it."""
    app = files_app
    store = app.processor.raw
    assert store is not None
    release = threading.Event()
    writing = threading.Event()
    put_many = store.put_many

    def slow_put_many(items: list[tuple[bytes, str]]) -> list[bool]:
        writing.set()
        assert release.wait(10)
        return put_many(items)

    monkeypatch.setattr(store, "put_many", slow_put_many)
    stored = await app.spool.store(Received(make_mail(subject="langzaam"), "test"))
    task = asyncio.create_task(app.processor.process(stored.spool_id))
    await asyncio.to_thread(writing.wait, 10)
    await asyncio.sleep(0.2)  # the mail is applied meanwhile; its transaction waits
    assert not task.done() and await _count(app, "tickets") == 0
    async with session(app.engine) as s:
        assert await Repo(s).spool_raw(stored.spool_id) is not None
    release.set()
    outcome = await task
    assert outcome is not None and outcome.action is Action.CREATED
    assert await _count(app, "tickets") == 1
    async with session(app.engine) as s:
        entry = await Repo(s).spool_get(stored.spool_id)
        assert await Repo(s).spool_raw(stored.spool_id) is None
    assert entry is not None and store.path(entry.raw_sha256).exists()


async def test_a_failed_blob_write_defers_the_batch_with_nothing_of_it_committed(
    files_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = files_app
    store = app.processor.raw
    assert store is not None

    def failing(items: list[tuple[bytes, str]]) -> list[bool]:
        raise StorageUnavailable("disk full")

    monkeypatch.setattr(store, "put_many", failing)
    first = await app.spool.store(Received(make_mail(subject="een"), "test"))
    second = await app.spool.store(Received(make_mail(subject="twee"), "test"))
    outcomes = await app.processor.run_due()
    assert [(o.spool_id, o.action) for o in outcomes] == [
        (first.spool_id, Action.DEFERRED),
        (second.spool_id, Action.DEFERRED),
    ]
    assert await _count(app, "tickets") == 0 and await _count(app, "outbox") == 0
    async with session(app.engine) as s:
        assert await Repo(s).spool_raw(first.spool_id) is not None


async def test_blobs_in_the_database_keep_raw_mail_and_attachments_off_the_disk(
    make_config: Any, clock: FrozenClock
) -> None:
    from email.message import EmailMessage
    from email.policy import SMTP

    config = make_config(general={"blobs": "database"})
    app = await build_app(config, clock)
    try:
        msg = EmailMessage(policy=SMTP)
        msg["From"] = "Alice <alice@customer.nl>"
        msg["To"] = "support@example.com"
        msg["Subject"] = "Factuur"
        msg["Message-ID"] = "<blob@customer.nl>"
        msg.set_content("Zie bijlage.")
        msg.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="f.pdf")
        outcome = await deliver(app, msg.as_bytes())
        assert outcome.action is Action.CREATED
        async with session(app.engine) as s:
            repo = Repo(s)
            assert await repo.spool_raw(outcome.spool_id) == msg.as_bytes()
            sha = (await repo.ticket_view(outcome.ticket or 0)).messages[0].attachments[0].sha256  # type: ignore[union-attr]
            assert await repo.blob_get(sha) == b"%PDF-1.4"
        assert not list(config.general.data_dir.glob("**/*.eml"))
        assert not (config.general.data_dir / "attachments").exists()
    finally:
        await app.close()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_while_storage_fails_the_worker_backs_off_instead_of_reparsing_everything(
    make_config: Any, clock: FrozenClock
) -> None:
    """A database that takes no writes (locked here; a full disk acts the same): the
    worker tries one batch, then one mail a round and waits longer each round, never the
    whole backlog."""
    import sqlite3

    import structlog

    from mailgate.intake.spool import Received
    from mailgate.runners.loop import run

    config = make_config(  # parsed in this process (processes 0), whose log counts it
        database={"busy_timeout": 0.05},
        worker={"poll_interval": 0.05, "batch_size": 4, "processes": 0},
    )
    app = await build_app(config, clock)
    stop, wake = asyncio.Event(), asyncio.Event()
    try:
        for n in range(40):
            await app.spool.store(Received(make_mail(subject=f"Mail {n}"), "test"))
        lock = sqlite3.connect(str(config.database.url).split("///", 1)[1], isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        with structlog.testing.capture_logs() as logs:
            worker = asyncio.create_task(run(app.processor, stop, wake, 0.05))
            await asyncio.sleep(1.5)
            stop.set()
            await worker
        lock.execute("ROLLBACK")
        lock.close()
        parsed = [e for e in logs if e["event"] == "mail.parsed"]
        # The first batch (4), then rounds at 0.1, 0.2, 0.4, 0.8 s of one mail each: a
        # handful of tries, where every round used to parse all 40 mails again.
        assert 4 <= len(parsed) <= 4 + 8, len(parsed)
        assert await app.processor.run_due()  # and once storage is back, the work goes on
    finally:
        await app.close()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_mail_of_30000_parts_is_a_ticket_with_the_first_parts_and_a_note(
    make_config: Any, clock: FrozenClock
) -> None:
    config = make_config(intake={"max_parts": 200, "max_attachments": 50})
    app = await build_app(config, clock)
    try:
        parts = b"".join(
            b"--B\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Disposition: attachment; filename=f%d.bin\r\n\r\nAAAA%d\r\n" % (i, i)
            for i in range(30000)
        )
        raw = (
            b"From: a@klant.nl\r\nTo: support@example.com\r\nSubject: Onderdelen\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
            b"--B\r\nContent-Type: text/plain\r\n\r\nZie de bijlagen.\r\n" + parts + b"--B--\r\n"
        )
        outcome = await deliver(app, raw)
        assert outcome.action is Action.CREATED
        view = await _view(app, outcome.ticket or 0)
        assert view.messages[0].text == "Zie de bijlagen."
        assert [a.filename for a in view.messages[0].attachments][:2] == ["f0.bin", "f1.bin"]
        assert len(view.messages[0].attachments) == 50
        notes = [e.detail or "" for e in view.events if e.kind == "attachment_skipped"]
        assert len(notes) == 12  # ten named, one count, one for the parts never read
        assert "29801 more MIME parts" in notes[-1]
    finally:
        await app.close()


async def test_small_blobs_stay_in_the_database_and_large_ones_become_files(app: App) -> None:
    from email.message import EmailMessage
    from email.policy import SMTP

    assert app.config.general.files_from == 65536  # the default
    small = make_mail(subject="klein")
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "Alice <alice@customer.nl>"
    msg["To"] = "support@example.com"
    msg["Subject"] = "groot"
    msg.set_content("Twee bijlagen.")
    big_file = bytes(range(256)) * 300  # 76,800 bytes: past the threshold, as is the mail
    for name, data in (("note.txt", b"a small note"), ("scan.bin", big_file)):
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    large = msg.as_bytes()
    first, second = [await deliver(app, raw) for raw in (small, large)]
    raw_store, files = app.processor.raw, app.processor.attachments
    assert raw_store is not None and files is not None
    async with session(app.engine) as s:
        repo = Repo(s)
        small_entry, large_entry = [await repo.spool_get(o.spool_id) for o in (first, second)]
        assert await repo.spool_raw(first.spool_id) == small  # kept where it was received
        assert await repo.spool_raw(second.spool_id) is None  # moved into a file
        view = await repo.ticket_view(second.ticket or 0)
        note, scan = view.messages[0].attachments  # type: ignore[union-attr]
        assert await repo.blob_get(note.sha256) == b"a small note"
        assert await repo.blob_get(scan.sha256) is None
    assert small_entry is not None and large_entry is not None
    assert not raw_store.path(small_entry.raw_sha256).exists()
    assert raw_store.get(large_entry.raw_sha256) == large
    assert files.get(scan.sha256) == big_file and not files.path(note.sha256).exists()
    # Readers find each wherever it is.
    assert await raw_mail(app, small_entry) == small and await raw_mail(app, large_entry) == large
