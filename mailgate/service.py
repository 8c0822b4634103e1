"""What people do outside their mailbox, for the command line and the web desk alike.

An answer, a note, a release or rejection of a held mail, a merge, and a customer's
reply on their status page: the mail the person would have sent (their text, under the
commands it needs, to the ticket's plus-address) is composed, stored in the spool and
processed like one, so the mail, the command line and the web can never disagree. A
change of status, priority, type, assignee or a reference field goes through the rules
of the agent's commands (``#status``, ...) without a mail. Either way the ticket's log
names the person, and ``source`` (``cli``, ``web``, ``link``) is kept with the mail in
the spool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid

import structlog
from sqlalchemy import Connection

from mailgate.app import App
from mailgate.core.commands import Command
from mailgate.core.desk import Plan, Refusal
from mailgate.core.model import Action, SpoolEntry
from mailgate.errors import NotFound
from mailgate.intake.spool import Received
from mailgate.store.db import session, storage_errors
from mailgate.store.repos import Repo, Tx
from mailgate.store.repos.history import Event
from mailgate.store.repos.outbox import Queued
from mailgate.tickets.agents import agent_mail, set_fields
from mailgate.tickets.arrival import Outcome

log = structlog.get_logger("mailgate.service")


@dataclass(frozen=True, slots=True)
class Taken:
    """How an agent's composed mail went: its spool id and what the worker made of it
    (None: another worker took it; it is processed all the same)."""

    spool_id: int
    outcome: Outcome | None

    @property
    def action(self) -> str:
        return self.outcome.action.value if self.outcome else Action.STORED.value


async def mail_as(
    app: App, number: int, author: str, text: str, *, source: str, commands: Sequence[str] = ()
) -> Taken:
    """``text`` under ``commands`` (``#internal``, ``#release``, ``#resolved`` ...) as
    ``author``'s mail to ticket ``number``, taken in and processed now. Only ``source``
    ``cli`` and ``web`` (a signed-in agent) count as the team's own."""
    with storage_errors("agent mail"):
        async with session(app.engine) as s:
            view = await Repo(s).ticket_view(number, with_messages=False, with_events=False)
    if view is None:
        raise NotFound(f"no ticket #{number}")
    queue = next((q for q in app.config.queues if q.name == view.queue), app.config.queues[0])
    to = app.policy.plus_address(queue.addresses[0], app.codec.token(number))
    body = "\n".join([*commands, text]) if commands else text
    raw = agent_mail(
        app.codec, to, number, view.title, author=author, text=body, now=app.clock.now()
    )
    stored = await app.spool.store(Received(raw, source, envelope_from=author, envelope_to=(to,)))
    outcome = await app.processor.process(stored.spool_id)
    log.info("service.mail", ticket=f"#{number}", author=author, source=source)
    return Taken(stored.spool_id, outcome)


async def mail_agent(app: App, address: str, subject: str, text: str, kind: str) -> int:
    """A plain mail from the desk to one agent (a sign-in link), queued in the outbox like
    every mail mailgate sends; its outbox id."""
    sender = app.config.queues[0].addresses[0]
    domain = app.config.outbound.domain or sender.rpartition("@")[2]
    now = app.clock.now()
    mail = EmailMessage()
    mail["From"] = formataddr((app.config.outbound.from_name, sender))
    mail["To"] = address
    mail["Subject"] = subject
    mail["Date"] = format_datetime(now)
    mail["Message-ID"] = message_id = make_msgid(domain=domain)
    mail["Auto-Submitted"] = "auto-generated"
    mail.set_content(text)
    raw = mail.as_bytes()

    def queue(conn: Connection) -> int:
        tx = Tx.on(conn)
        (outbox_id,) = tx.outbox.ids(1)
        envelope = app.codec.bounce_address(outbox_id, domain)
        tx.outbox.add(
            [Queued(outbox_id, None, kind, (address,), envelope, message_id.strip("<>"), raw, now)]
        )
        return outbox_id

    with storage_errors("agent mail"):
        outbox_id = await app.blocking.write(queue)
    app.outbox_wake.set()
    return outbox_id


async def raw_mail(app: App, entry: SpoolEntry) -> bytes | None:
    """A received mail's bytes wherever they are kept: still in the spool, in the blob
    store on disk, or in the database's blobs; None once purged."""
    store = app.processor.raw
    with storage_errors("raw mail"):
        async with session(app.engine) as s:
            repo = Repo(s)
            raw = await repo.spool_raw(entry.id)
            if raw is None and store is None:
                raw = await repo.blob_get(entry.raw_sha256)
    if raw is None and store is not None and store.path(entry.raw_sha256).exists():
        raw = await asyncio.to_thread(store.get, entry.raw_sha256)
    return raw


async def change_fields(
    app: App, number: int, commands: Sequence[Command], *, actor: str, source: str
) -> Plan | Refusal:
    """Change ticket ``number`` by the rules of ``commands``, carried out as the agent's
    commands are; the log records where the change was made."""
    now = app.clock.now()

    def carry_out(conn: Connection) -> Plan | Refusal:
        tx = Tx.on(conn)
        plan = set_fields(tx, app.desk, app.policy, number, commands, actor=actor, now=now)
        if isinstance(plan, Plan) and source != "cli":
            said = "; ".join(c.line for c in commands)
            tx.history.add_events([Event(number, f"{source}_change", actor, now, detail=said)])
        return plan

    with storage_errors("set"):
        plan = await app.blocking.write(carry_out)
    app.outbox_wake.set()
    return plan
