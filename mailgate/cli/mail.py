"""Commands about one mail: ``ingest --now`` (applied in this process) and ``trace``."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TextIO

from mailgate.app import App
from mailgate.cli.output import EX_OK, at, print_json, ref
from mailgate.cli.service import deliver, spool_entry, with_app
from mailgate.config import Config
from mailgate.core.classify import classify
from mailgate.core.header_addresses import with_envelope_sender
from mailgate.core.model import Action, OutboxItem, SpoolEntry, TicketView
from mailgate.core.parse import parse_mail
from mailgate.core.route import gather_evidence
from mailgate.errors import NotFound
from mailgate.intake.spool import Received
from mailgate.service import raw_mail
from mailgate.store.db import session, storage_errors
from mailgate.store.repos import PENDING, Repo


async def ingest_now(config: Config, received: Received, out: TextIO) -> int:
    """``ingest --now``: store the mail, apply it in this process, send what it caused."""
    return await with_app(config, lambda app: _ingest_now(app, received, out))


async def _ingest_now(app: App, received: Received, out: TextIO) -> int:
    stored = await app.spool.store(received)
    entry = await spool_entry(app, stored.spool_id) if stored.duplicate else None
    if entry is not None and entry.state != PENDING:
        print_json(
            out,
            {
                "action": Action.DUPLICATE.value,
                "ticket": ref(entry.ticket),
                "reason": f"same mail as spool item {stored.spool_id}",
                "spool_id": stored.spool_id,
            },
        )
        return EX_OK
    # New, or stored by an earlier try that died before processing it.
    outcome = await app.processor.process(stored.spool_id)
    if outcome is None:  # the daemon took it first
        print_json(
            out,
            {
                "action": Action.STORED.value,
                "ticket": None,
                "reason": "stored; processed by another worker",
                "spool_id": stored.spool_id,
            },
        )
        return EX_OK
    print_json(
        out,
        {
            "action": outcome.action.value,
            "ticket": ref(outcome.ticket),
            "reason": outcome.reason,
            "spool_id": stored.spool_id,
        },
    )
    await deliver(app)  # what this mail caused
    return EX_OK


TRACE_EVENTS = (
    "created",
    "message_added",
    "message_held",
    "message_released",
    "message_rejected",
    "status_changed",
    "priority_changed",
    "type_changed",
    "assignee_changed",
    "approval_changed",
    "participant_added",
    "linked",
    "merged_into",
    "command_failed",
    "privacy_masked",
    "delivery_failed",
    "delivery_suppressed",
    "sla_recomputed",
)


async def trace(app: App, args: argparse.Namespace, out: TextIO) -> int:
    """How one mail was taken in: stored, classified, matched, and what followed.

    Classification and evidence are computed again from the raw mail by the same
    pure functions the worker used; the outcome, the ticket's events and the
    notifications are what the database recorded."""
    ref = args.ref.strip()
    with storage_errors("trace"):
        async with session(app.engine) as s:
            repo = Repo(s)
            ids = [int(ref)] if ref.isdigit() else await repo.spool_by_message_id(ref)
            if not ids:
                raise NotFound(f"no mail with Message-ID or spool id {ref}")
            entry = await repo.spool_get(ids[0])
            if entry is None:
                raise NotFound(f"no spool item {ref}")
            view = await repo.ticket_view(entry.ticket) if entry.ticket else None
            window = processing_window(entry)
            sent = (
                await repo.outbox_of_ticket_between(view.number, *window)
                if view is not None and window is not None
                else []
            )
    raw = await raw_mail(app, entry)
    if raw is None:
        raise NotFound(f"the raw mail of spool item {entry.id} is no longer kept (purged)")
    steps = _understood(app, entry, raw)
    if view is not None and window is not None:
        steps += _followed(view, window, sent)
    if args.json:
        print_json(out, [{"step": k, "detail": v} for k, v in steps])
    else:
        for key, value in steps:
            print(f"{key:<16} {value}", file=out)
    return EX_OK


def _understood(app: App, entry: SpoolEntry, raw: bytes) -> list[tuple[str, str]]:
    """How the mail was stored, classified and matched, and its recorded outcome."""
    mail = with_envelope_sender(
        parse_mail(raw, app.config.intake.fallback_charsets), entry.envelope_from
    )
    kind = classify(mail, entry.envelope_from, app.codec.installation_id)
    author = f"{mail.from_addr.email} (from {mail.from_header})" if mail.from_addr else "none found"
    evidence = gather_evidence(
        mail, entry.envelope_to, app.codec, app.policy, app.processor.preparer.own_prefixes
    )
    found = (
        [f"{h} <{m}>" for h, m in evidence.references]
        + [
            f"subject token {t.text} ({'valid' if t.valid else 'check failed'})"
            for t in evidence.subject_tokens
        ]
        + [f"plus-address {a}" for a, _ in evidence.plus_tokens]
    )
    steps: list[tuple[str, str]] = [
        (
            "received",
            f"spool #{entry.id} from {entry.source} at "
            f"{at(app.desk.calendar.zone, entry.received_at)}, "
            f"envelope {entry.envelope_from or '<>'} -> {', '.join(entry.envelope_to) or '-'}",
        ),
        ("message-id", entry.message_id or "(none; the raw bytes are its identity)"),
        ("sender", author),
        (
            "classified",
            f"{kind.category.value}: {kind.reason}; may open a ticket "
            f"{yes(kind.decisions.create_ticket)}, be answered {yes(kind.decisions.answer)}, "
            f"tell the team {yes(kind.decisions.tell_team)}",
        ),
        ("evidence", "; ".join(found) or "no ticket reference"),
        ("queue", evidence.queue),
        (
            "outcome",
            f"{entry.outcome or entry.state}"
            + (f" #{entry.ticket}" if entry.ticket else "")
            + (f": {entry.reason}" if entry.reason else ""),
        ),
    ]
    if entry.error:
        steps.append(("error", f"{entry.error} (traceback {entry.traceback_id})"))
    return steps


def _followed(
    view: TicketView, window: tuple[datetime, datetime], sent: list[OutboxItem]
) -> list[tuple[str, str]]:
    """The ticket's events and notifications while the mail was processed."""
    steps = []
    for event in view.events:
        if event.kind in TRACE_EVENTS and window[0] <= event.at <= window[1]:
            if event.field or event.old:
                change = f"{event.old or '-'} -> {event.new or '-'}"
            else:
                change = f"-> {event.new}" if event.new else ""
            steps.append((event.kind, f"{change} {event.detail or ''}".strip()))
    for item in sent:
        steps.append(
            ("notification", f"{item.kind} to {', '.join(item.recipients)} ({item.state})")
        )
    return steps


def yes(value: bool) -> str:
    return "yes" if value else "no"


def processing_window(entry: SpoolEntry) -> tuple[datetime, datetime] | None:
    """The moment the worker applied ``entry``: every event and notification the mail
    caused carries it, and no other mail's (the worker gives each mail of a batch its own
    moment), so a mail processed in the same second as another shows only its own."""
    if entry.processed_at is None:
        return None
    return entry.processed_at, entry.processed_at
