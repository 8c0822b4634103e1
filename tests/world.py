"""The outside world of a test: people who read what mailgate delivered and answer it.

Mailgate delivers into its maildir (no relay configured); ``World.inbox`` reads
the new files for one address, and ``World.answer`` writes the reply a mail
client would: ``Re:`` (or another prefix) before the subject, In-Reply-To and
References to the mail answered, To its Reply-To, the old text quoted below.
Everything goes through the real intake path and the real outbox.
"""

from __future__ import annotations

import email
from collections import defaultdict
from email.message import EmailMessage
from email.policy import default

from mailgate.app import App
from mailgate.runners.worker import Outcome
from tests.conftest import deliver
from tests.mails import make_mail


class World:
    def __init__(self, app: App) -> None:
        self.app = app
        self.seen: set[str] = set()
        self.mailboxes: dict[str, list[EmailMessage]] = defaultdict(list)

    async def send(self, raw: bytes, *, to: tuple[str, ...] = ()) -> Outcome:
        return await deliver(self.app, raw, to=to)

    async def fetch(self) -> None:
        """Let the sender deliver what is due, then sort new maildir files by recipient."""
        await self.app.sender.run_due()
        new = self.app.config.outbound.maildir / "new"
        if not new.exists():
            return
        for path in sorted(new.iterdir()):
            if path.name in self.seen:
                continue
            self.seen.add(path.name)
            message = email.message_from_bytes(path.read_bytes(), policy=default)
            assert isinstance(message, EmailMessage)
            for address in str(message["To"]).split(","):
                self.mailboxes[address.strip().lower()].append(message)

    async def inbox(self, address: str) -> list[EmailMessage]:
        """The mails delivered to ``address`` since the last look, oldest first."""
        await self.fetch()
        return self.mailboxes.pop(address.lower(), [])

    async def only(self, address: str) -> EmailMessage:
        """The one new mail for ``address``; fails when there is none or more than one."""
        mails = await self.inbox(address)
        assert len(mails) == 1, [str(m["Subject"]) for m in mails]
        return mails[0]

    @staticmethod
    def text(mail: EmailMessage) -> str:
        body = mail.get_body(preferencelist=("plain",))
        assert body is not None
        return str(body.get_content())  # type: ignore[attr-defined]

    @staticmethod
    def answer(
        mail: EmailMessage,
        *,
        sender: str,
        body: str,
        prefix: str = "Re: ",
        cc: str | None = None,
    ) -> bytes:
        """The reply ``sender`` writes to ``mail`` from a mail client."""
        header = f"Support <{mail['From'].addresses[0].addr_spec}>"
        quoted = "\n".join(f"> {line}" for line in World.text(mail).splitlines())
        references = " ".join(
            filter(None, [str(mail["References"] or ""), str(mail["Message-ID"])])
        )
        return make_mail(
            subject=f"{prefix}{mail['Subject']}",
            sender=sender,
            to=str(mail["Reply-To"] or mail["From"]),
            cc=cc,
            body=f"{body}\n\nOn Mon, Jan 5, 2026 at 10:00 AM {header} wrote:\n{quoted}\n",
            in_reply_to=str(mail["Message-ID"]),
            references=references,
        )
