"""The SMTP/LMTP transaction: who may send, to which of our addresses, and DATA into the spool.

aiosmtpd calls this handler at MAIL, RCPT and DATA. Recipients that are not ours are
refused at RCPT (``550 5.1.1``); ``250`` at DATA is sent only after ``Spool.store``
returned; any failure of ours answers ``451 4.3.0`` so the sender retries.
"""

from __future__ import annotations

import inspect
from email.utils import format_datetime
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailgate.clock import Clock
from mailgate.config import SmtpConfig
from mailgate.core.address import AddressPolicy
from mailgate.errors import BadMail, MailgateError
from mailgate.intake.smtp import (
    REPLY_EMPTY,
    REPLY_MESSAGE_RATE,
    REPLY_NO_MAILBOX,
    REPLY_SHUTTING_DOWN,
    REPLY_STORED,
    REPLY_TEMPORARY,
    REPLY_TOO_MANY_RECIPIENTS,
    Gate,
    MailgateSMTP,
    peer_ip,
)
from mailgate.intake.spool import Received, Spool

log = structlog.get_logger("mailgate.smtp")


class IntakeHandler:
    """The aiosmtpd handler: recipient policy at RCPT, the spool at DATA."""

    def __init__(
        self,
        *,
        spool: Spool,
        policy: AddressPolicy,
        config: SmtpConfig,
        gate: Gate,
        clock: Clock,
        hostname: str,
        lmtp: bool = False,
    ) -> None:
        self.spool = spool
        self.policy = policy
        self.config = config
        self.gate = gate
        self.clock = clock
        self.hostname = hostname
        self.lmtp = lmtp
        self.source = "lmtp" if lmtp else "smtp"

    def _reject(self, session: Session, reply: str, **context: Any) -> str:
        log.warning(
            "smtp.rejected",
            peer=peer_ip(session),
            code=reply[:3],
            reason=reply[10:],
            listener=self.source,
            **context,
        )
        return reply

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """Advertise PIPELINING and ENHANCEDSTATUSCODES, which the protocol supports."""
        session.host_name = hostname
        extra = ["250-PIPELINING", "250-ENHANCEDSTATUSCODES"]
        return [responses[0], *extra, *responses[1:]]

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self.gate.closing:
            return self._reject(session, REPLY_SHUTTING_DOWN)
        if not self.gate.message_allowed(peer_ip(session)):
            return self._reject(session, REPLY_MESSAGE_RATE)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= self.config.max_recipients:
            return self._reject(session, REPLY_TOO_MANY_RECIPIENTS)
        if not self.policy.is_ours(address):
            return self._reject(
                session, REPLY_NO_MAILBOX.format(address=address), recipient=address
            )
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if isinstance(server, MailgateSMTP):  # the body is in: the DATA deadline is met
            server.receiving = False
        reply = await self._store(server, session, envelope)
        if self.lmtp:  # RFC 2033: one reply per accepted recipient
            return "\r\n".join(reply for _ in envelope.rcpt_tos)
        return reply

    async def _store(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        peer = peer_ip(session)
        source = f"{self.source}:{peer}"
        framed = server.data_buffer if isinstance(server, MailgateSMTP) else None
        if framed is not None:
            received = Received.in_buffer(
                framed[0], framed[1], source, envelope.mail_from or "", tuple(envelope.rcpt_tos)
            )
        else:
            received = Received(
                raw=envelope.original_content or b"",
                source=source,
                envelope_from=envelope.mail_from or "",
                envelope_to=tuple(envelope.rcpt_tos),
                trace=self.trace(session, "ESMTP"),
            )
        raw = received.raw
        try:
            stored = await self.spool.store(received)
        except BadMail as exc:
            return self._reject(session, REPLY_EMPTY, error=str(exc))
        except MailgateError as exc:
            log.error("smtp.deferred", peer=peer, error=str(exc), listener=self.source)
            return self._reject(session, REPLY_TEMPORARY, error=str(exc))
        log.info(
            "smtp.accepted",
            peer=peer,
            spool_id=stored.spool_id,
            size=len(raw),
            recipients=len(envelope.rcpt_tos),
            duplicate=stored.duplicate,
            listener=self.source,
        )
        return REPLY_STORED.format(spool_id=stored.spool_id)

    def trace(self, session: Session, protocol: str) -> bytes:
        """Our Received: header for a mail taken in over this session."""
        helo = (session.host_name or "unknown").replace("\r", "").replace("\n", "")[:100]
        stamp = format_datetime(self.clock.now())
        peer = peer_ip(session)
        return (
            f"Received: from {helo} ([{peer}])\r\n\tby {self.hostname} (mailgate) "
            f"with {protocol};\r\n\t{stamp}\r\n"
        ).encode("ascii", "replace")

    async def handle_exception(self, error: Exception) -> str:
        log.error("smtp.error", error=f"{type(error).__name__}: {error}", exc_info=error)
        return REPLY_TEMPORARY


# aiosmtpd reads ``handle_EHLO``'s signature on every connection (to tell its old form
# from the new); ``inspect.signature`` returns a function's ``__signature__`` as it is.
IntakeHandler.handle_EHLO.__signature__ = inspect.signature(  # type: ignore[attr-defined]
    IntakeHandler.handle_EHLO
)
