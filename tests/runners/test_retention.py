"""Retention: raw mails and attachments of long-archived tickets go; shared content stays."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
from datetime import timedelta
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from mailgate.cli.admin import purge as _purge
from mailgate.clock import FrozenClock
from mailgate.core.model import Action
from mailgate.runners.retention import parse_age
from mailgate.store.db import session
from tests.tickets.test_effects import AGENT, TEAM, view
from tests.world import World


def with_files(sender: str, subject: str, *files: tuple[str, bytes]) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["To"] = "support@example.com"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.replace(' ', '-')}@customer.nl>"
    msg.set_content("Zie bijlage.")
    for name, data in files:
        msg.add_attachment(data, maintype="application", subtype="pdf", filename=name)
    return msg.as_bytes()


async def purge(app: Any, apply: bool) -> dict[str, Any]:
    out = io.StringIO()
    args = argparse.Namespace(archived_older_than="365d", apply=apply, json=True)
    assert await _purge(app, args, out) == 0
    return dict(json.loads(out.getvalue()))


async def close_and_archive(world: World, number: int, clock: FrozenClock) -> None:
    world.mailboxes[TEAM] = notices = world.mailboxes.get(TEAM, []) + await world.inbox(TEAM)
    tag = world.app.codec.subject_tag(number)
    notice = next(m for m in notices if tag in str(m["Subject"]))
    await world.send(World.answer(notice, sender=AGENT, body="#close"))
    clock.advance(timedelta(days=8))
    await world.app.scheduler.run_due()
    assert (await view(world.app, number)).status == "archived"


async def kept_bytes(app: Any) -> tuple[set[str], set[str]]:
    """The SHA-256 of every raw mail and every attachment kept, in files or the database."""
    raw = {p.stem for p in app.config.spool_dir.rglob("*.eml")}
    files = {p.name for p in app.config.attachment_dir.rglob("*") if p.is_file()}
    async with session(app.engine) as s:
        rows = (await s.exec(text("SELECT raw FROM spool_raw"))).all()  # type: ignore[call-overload]
        blobs = (await s.exec(text("SELECT sha256 FROM blobs"))).all()  # type: ignore[call-overload]
    return raw | {hashlib.sha256(r[0]).hexdigest() for r in rows}, files | {b[0] for b in blobs}


@pytest.mark.parametrize("files_from", [0, 65536], ids=["files", "small-in-database"])
async def test_purge_dry_run_changes_nothing_and_apply_removes_exactly_the_old_content(
    desk: Any, clock: FrozenClock, files_from: int
) -> None:
    app = await desk(general={"files_from": files_from})
    world = World(app)
    old = await world.send(
        with_files(
            "alice@customer.nl", "oud", ("x.pdf", b"%PDF only old"), ("s.pdf", b"%PDF shared")
        )
    )
    kept = await world.send(with_files("bob@customer.nl", "open", ("s.pdf", b"%PDF shared")))
    assert old.action is Action.CREATED and old.ticket and kept.ticket
    await world.inbox("alice@customer.nl")
    await close_and_archive(world, old.ticket, clock)
    clock.advance(timedelta(days=400))
    recent = await world.send(with_files("carol@customer.nl", "recent", ("y.pdf", b"%PDF recent")))
    assert recent.ticket is not None
    await close_and_archive(world, recent.ticket, clock)

    shas = {
        m.subject: [a.sha256 for a in m.attachments]
        for number in (old.ticket, kept.ticket, recent.ticket)
        for m in (await view(app, number)).messages
        if m.direction == "in" and m.attachments
    }
    raw_before, attachments_before = await kept_bytes(app)
    files = sorted(p for p in app.config.general.data_dir.rglob("*") if p.is_file())
    # Every blob is a file, or (all of them small here) every one is in the database.
    assert bool(list(app.config.spool_dir.rglob("*.eml"))) is (files_from == 0)
    assert bool(list(app.config.attachment_dir.rglob("*"))) is (files_from == 0)

    dry = await purge(app, apply=False)
    assert (dry["tickets"], dry["attachments"], dry["applied"]) == (1, 1, False)
    assert dry["raw_mails"] == 2  # the customer's mail and the agent's #close
    assert await kept_bytes(app) == (raw_before, attachments_before)
    assert sorted(p for p in app.config.general.data_dir.rglob("*") if p.is_file()) == files

    done = await purge(app, apply=True)
    assert (done["tickets"], done["raw_mails"], done["attachments"]) == (1, 2, 1)
    raw_after, attachments_after = await kept_bytes(app)
    only_old, shared = shas["oud"]
    assert attachments_after == attachments_before - {only_old}
    assert {shared, shas["recent"][0]} <= attachments_after  # the open ticket still has shared
    assert len(raw_after) == len(raw_before) - 2 and raw_after < raw_before
    old_ticket = await view(app, old.ticket)
    assert old_ticket.events[-1].kind == "purged"
    assert next(m.subject for m in old_ticket.messages if m.direction == "in") == "oud"
    again = await purge(app, apply=False)
    assert (again["tickets"], again["raw_mails"], again["attachments"]) == (0, 0, 0)
    if app.engine.dialect.name == "sqlite":  # nor left in the database file's free pages
        database = Path(app.engine.url.database or "")
        for path in (database, database.with_name(database.name + "-wal")):
            assert not path.exists() or b"%PDF only old" not in path.read_bytes(), path


def test_ages() -> None:
    assert [parse_age(t) for t in ("365d", "52w", "2y", "x", "10")] == [365, 364, 730, None, None]
