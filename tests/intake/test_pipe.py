"""The pipe's intake: stored once, and what a second delivery learns of the first."""

from __future__ import annotations

from mailgate.app import App
from mailgate.config import Config
from mailgate.intake.pipe import store
from mailgate.intake.spool import Received
from tests.mails import make_mail


async def test_stored_once_then_known_by_its_state_and_ticket(app: App, config: Config) -> None:
    mail = make_mail(message_id="<pipe@customer.nl>")
    first, state, ticket = await store(config, Received(mail, "pipe"))
    assert (first.duplicate, state, ticket) == (False, None, None)
    again, state, ticket = await store(config, Received(mail, "pipe"))
    assert (again.spool_id, again.duplicate, state, ticket) == (
        first.spool_id,
        True,
        "pending",
        None,
    )
    outcome = await app.processor.process(first.spool_id)  # what the daemon's worker does
    assert outcome is not None
    later, state, ticket = await store(config, Received(mail, "pipe"))
    assert (later.duplicate, state, ticket) == (True, "done", outcome.ticket)
