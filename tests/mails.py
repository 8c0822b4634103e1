"""Build test mails with the stdlib, as a mail client would send them."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

_counter = itertools.count(1)


def make_mail(
    *,
    subject: str | None = "Printer brandt",
    sender: str | None = "Alice Jansen <alice@customer.nl>",
    to: str = "support@example.com",
    cc: str | None = None,
    body: str = "Hallo, de printer brandt weer.",
    message_id: str | bool | None = True,
    in_reply_to: str | None = None,
    references: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """A plain mail; ``message_id=True`` makes a fresh one, None leaves it out."""
    msg = EmailMessage(policy=SMTP)
    if sender is not None:
        msg["From"] = sender
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    if subject is not None:
        msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime(2026, 1, 5, 10, next(_counter) % 60, tzinfo=UTC))
    if message_id is True:
        msg["Message-ID"] = make_msgid(domain="customer.nl")
    elif isinstance(message_id, str):
        msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    msg.set_content(body)
    for key, value in (headers or {}).items():  # after set_content, which clears Content-*
        msg[key] = value
    return msg.as_bytes()
