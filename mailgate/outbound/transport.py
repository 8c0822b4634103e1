"""Hand a composed mail to the world: an SMTP relay, or a local maildir when none is set.

Both raise ``DeliveryDeferred`` for what may pass (4xx, no connection,
timeouts) and ``DeliveryFailed`` for a permanent refusal (5xx), translating
aiosmtplib's and the OS's exceptions here and nowhere else.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import aiosmtplib

from mailgate.config import RelayConfig
from mailgate.errors import DeliveryDeferred, DeliveryFailed


class Transport(Protocol):
    """Delivers one mail; returns a short receipt (the server's reply or the file)."""

    async def send(self, envelope_from: str, recipients: Sequence[str], raw: bytes) -> str: ...


class MaildirTransport:
    """Writes each mail as a file into ``new/`` of a maildir (tmp, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _write(self, name: str, raw: bytes) -> Path:
        for sub in ("tmp", "new", "cur"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        tmp = self.root / "tmp" / name
        with tmp.open("wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        target = self.root / "new" / name
        tmp.replace(target)
        return target

    async def send(self, envelope_from: str, recipients: Sequence[str], raw: bytes) -> str:
        name = f"{time.time_ns()}.M{os.getpid()}.{socket.gethostname().replace('/', '_')}"
        header = (
            f"Return-Path: <{envelope_from}>\r\nDelivered-To: {', '.join(recipients)}\r\n"
        ).encode()
        try:
            path = await asyncio.to_thread(self._write, name, header + raw)
        except OSError as exc:
            raise DeliveryDeferred(f"maildir {self.root}: {exc.strerror}") from exc
        return f"maildir {path.name}"


class SmtpRelay:
    """Sends through the configured SMTP relay with aiosmtplib."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config

    async def send(self, envelope_from: str, recipients: Sequence[str], raw: bytes) -> str:
        cfg = self.config
        client = aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.port,
            timeout=cfg.timeout,
            use_tls=cfg.security == "tls",
            start_tls=cfg.security == "starttls",
        )
        try:
            await client.connect()
            if cfg.username:
                await client.login(cfg.username, cfg.password)
            errors, reply = await client.sendmail(envelope_from, list(recipients), raw)
            await client.quit()
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            if all(500 <= c < 600 for c in codes):
                raise DeliveryFailed(detail) from exc
            raise DeliveryDeferred(detail) from exc
        except aiosmtplib.SMTPResponseException as exc:
            detail = f"{exc.code} {exc.message}"
            if 500 <= exc.code < 600:
                raise DeliveryFailed(detail) from exc
            raise DeliveryDeferred(detail) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryDeferred(f"relay {cfg.host}:{cfg.port}: {exc}") from exc
        finally:
            client.close()
        refused = "; ".join(f"{rcpt}: {r.code} {r.message}" for rcpt, r in errors.items())
        return f"{reply}" + (f" (refused: {refused})" if refused else "")


def transport_for(relay: RelayConfig, maildir: Path) -> Transport:
    """The relay when one is configured, else the local maildir."""
    if relay.host:
        return SmtpRelay(relay)
    return MaildirTransport(maildir)
