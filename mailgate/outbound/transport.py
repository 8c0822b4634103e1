"""Hand a composed mail to the world: an SMTP relay, or a local maildir when none is set.

Both raise ``DeliveryDeferred`` for what may pass (4xx, no connection,
timeouts) and ``DeliveryFailed`` for a permanent refusal (5xx), translating
aiosmtplib's and the OS's exceptions here and nowhere else.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import aiosmtplib

from mailgate.config import RelayConfig
from mailgate.errors import DeliveryDeferred, DeliveryFailed
from mailgate.store.files import private_dir


class Transport(Protocol):
    """Delivers one mail; returns a short receipt (the server's reply or the file)."""

    async def send(
        self, envelope_from: str, recipients: Sequence[str], raw: bytes, *, key: str = ""
    ) -> str:
        """``key`` names the mail (stable across tries, unique per mail) where the transport
        can use it to deliver each mail at most once."""
        ...


class MaildirTransport:
    """Writes each mail as a file into ``new/`` of a maildir (tmp, fsync, rename), private to
    mailgate's user (directories 0700, files 0600).

    The file name is derived from the mail's Message-ID, so delivering the same outbox mail
    twice (after a failure to record the first delivery) finds the file already there and
    writes nothing: the maildir holds each mail once.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def _write(self, name: str, raw: bytes) -> tuple[Path, bool]:
        for sub in ("tmp", "new", "cur"):
            private_dir(self.root / sub)
        target = self.root / "new" / name
        # A reader may have moved it to cur/, adding ":2,<flags>" to the name.
        if target.exists() or any((self.root / "cur").glob(f"{name}:*")):
            return target, False
        tmp = self.root / "tmp" / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(target)
        return target, True

    async def send(
        self, envelope_from: str, recipients: Sequence[str], raw: bytes, *, key: str = ""
    ) -> str:
        name = _maildir_name(key or hashlib.sha256(raw).hexdigest())
        header = (
            f"Return-Path: <{envelope_from}>\r\nDelivered-To: {', '.join(recipients)}\r\n"
        ).encode()
        try:
            path, written = await asyncio.to_thread(self._write, name, header + raw)
        except OSError as exc:
            raise DeliveryDeferred(f"maildir {self.root}: {exc.strerror}") from exc
        return f"maildir {path.name}" + ("" if written else " (already there)")


def _maildir_name(key: str) -> str:
    """A maildir file name for the mail named ``key``: the same on every try, free of "/"
    and ":" (which maildir readers treat specially)."""
    return "mailgate." + re.sub(r"[^A-Za-z0-9._-]", "_", key)[:200]


class SmtpRelay:
    """Sends through the configured SMTP relay with aiosmtplib."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config

    async def send(
        self, envelope_from: str, recipients: Sequence[str], raw: bytes, *, key: str = ""
    ) -> str:
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
