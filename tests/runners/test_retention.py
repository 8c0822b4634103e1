"""Retention: raw mails and attachments of long-archived tickets go; shared content stays."""

from __future__ import annotations

import argparse
import io
import json
from datetime import timedelta
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

from mailgate.cli.admin import purge as _purge
from mailgate.clock import FrozenClock
from mailgate.core.model import Action
from mailgate.runners.retention import parse_age
from mailgate.store.blobs import BlobStore
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


async def test_purge_dry_run_changes_nothing_and_apply_removes_exactly_the_old_content(
    desk: Any, clock: FrozenClock
) -> None:
    app = await desk()
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

    raw = BlobStore(app.config.spool_dir, ".eml")
    files = BlobStore(app.config.attachment_dir)
    shas = {
        m.subject: [a.sha256 for a in m.attachments]
        for number in (old.ticket, kept.ticket, recent.ticket)
        for m in (await view(app, number)).messages
        if m.direction == "in" and m.attachments
    }
    everything = sorted(p for p in app.config.general.data_dir.rglob("*") if p.is_file())

    dry = await purge(app, apply=False)
    assert (dry["tickets"], dry["attachments"], dry["applied"]) == (1, 1, False)
    assert dry["raw_mails"] == 2  # the customer's mail and the agent's #close
    assert sorted(p for p in app.config.general.data_dir.rglob("*") if p.is_file()) == everything

    done = await purge(app, apply=True)
    assert (done["tickets"], done["raw_mails"], done["attachments"]) == (1, 2, 1)
    only_old, shared = shas["oud"]
    assert not files.path(only_old).exists()
    assert files.path(shared).exists()  # the open ticket still has it
    assert files.path(shas["recent"][0]).exists()
    old_ticket = await view(app, old.ticket)
    assert old_ticket.events[-1].kind == "purged"
    assert next(m.subject for m in old_ticket.messages if m.direction == "in") == "oud"
    kept_raw = list(app.config.spool_dir.rglob("*.eml"))
    assert len(kept_raw) == len(everything_raw := [p for p in everything if p.suffix == ".eml"]) - 2
    assert all(raw.path(p.stem).exists() for p in kept_raw)
    assert everything_raw
    again = await purge(app, apply=False)
    assert (again["tickets"], again["raw_mails"], again["attachments"]) == (0, 0, 0)


def test_ages() -> None:
    assert [parse_age(t) for t in ("365d", "52w", "2y", "x", "10")] == [365, 364, 730, None, None]
