"""The commands' way into a running desk: the app for one command, its references, its mail."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from mailgate.app import App, build_app
from mailgate.config import Config
from mailgate.core.model import SpoolEntry
from mailgate.errors import MailgateError, NotFound
from mailgate.store.db import session, storage_errors
from mailgate.store.repos import Repo

log = structlog.get_logger("mailgate.cli")


async def with_app(
    config: Config, body: Callable[[App], Awaitable[int]], *, adopt_secret: bool = False
) -> int:
    app = await build_app(config, adopt_secret=adopt_secret)
    try:
        return await body(app)
    finally:
        await app.close()


async def deliver(app: App) -> None:
    """Send what a command caused; what fails stays in the outbox for the daemon."""
    try:
        await app.sender.run_due()
    except MailgateError as exc:
        log.warning("outbox.deferred", error=str(exc))


def resolve_ref(app: App, ref: str) -> int:
    """The ticket number named by ``#1042``, ``1042`` or a token; NotFound otherwise."""
    number = app.codec.reference(ref)
    if number is None:
        raise NotFound(f"not a ticket reference: {ref}")
    return number


async def spool_entry(app: App, spool_id: int) -> SpoolEntry | None:
    with storage_errors("spool lookup"):
        async with session(app.engine) as s:
            return await Repo(s).spool_get(spool_id)
