"""What the outbox holds, as parsed mails, for the outbound tests."""

from __future__ import annotations

from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default

from sqlalchemy import select

from mailgate.app import App
from mailgate.store.db import session
from mailgate.store.tables import OutboxRow


async def outbox(app: App) -> list[tuple[str, tuple[str, ...], EmailMessage]]:
    async with session(app.engine) as s:
        rows = (await s.exec(select(OutboxRow).order_by(OutboxRow.id))).scalars().all()  # type: ignore[call-overload]
    result = []
    for row in rows:
        message = message_from_bytes(row.raw, policy=default)
        assert isinstance(message, EmailMessage)
        result.append((row.kind, tuple(row.recipients.split("\n")), message))
    return result
