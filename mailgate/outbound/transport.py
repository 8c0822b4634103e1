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
import structlog

from mailgate.config import RelayConfig
from mailgate.errors import DeliveryDeferred, DeliveryFailed, LoginFailed
from mailgate.ops.oauth import TokenSource, tokens_for
from mailgate.store.files import fsync_dir, private_dir

log = structlog.get_logger("mailgate.outbox")


class Transport(Protocol):
    """Delivers mails, a round at a time: ``send`` each, then ``settle``."""

    # Whether a second delivery of the same mail (same ``key``) is found and written no
    # more: then the sender may record a round's deliveries together; otherwise it records
    # each before it sends the next, so that a crash can repeat one mail at most.
    at_most_once: bool

    async def send(
        self,
        envelope_from: str,
        recipients: Sequence[str],
        raw: bytes,
        *,
        key: str = "",
        again: bool = True,
    ) -> str:
        """Deliver one mail; a short receipt (the server's reply or the file). ``key`` names
        the mail (stable across tries, unique per mail) where the transport can use it to
        deliver each mail at most once; ``again``: an earlier try may have delivered it."""
        ...

    async def settle(self) -> None:
        """Make the deliveries so far durable (a maildir's renames); the sender records
        mails sent only after this returns."""
        ...

    async def close(self) -> None:
        """End the round (the relay's connection: QUIT)."""
        ...


class MaildirTransport:
    """Writes each mail as a file into ``new/`` of a maildir (tmp, fsync, rename), private to
    mailgate's user (directories 0700, files 0600); ``settle`` makes a round's renames
    durable with one fsync of ``new/``.

    The file name is derived from the mail's Message-ID, so delivering the same outbox mail
    twice (after a failure to record the first delivery) finds the file already there and
    writes nothing: the maildir holds each mail once. Only a mail tried before is looked
    for (``again``): a first try cannot have a file.
    """

    at_most_once = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self._made = False
        self._unsettled = False

    def _write(self, name: str, raw: bytes, again: bool) -> tuple[Path, bool]:
        if not self._made:
            for sub in ("tmp", "new", "cur"):
                private_dir(self.root / sub)
            self._made = True
        target = self.root / "new" / name
        # A reader may have moved it to cur/, adding ":2,<flags>" to the name.
        if again and (target.exists() or any((self.root / "cur").glob(f"{name}:*"))):
            return target, False
        tmp = self.root / "tmp" / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(target)
        self._unsettled = True
        return target, True

    async def send(
        self,
        envelope_from: str,
        recipients: Sequence[str],
        raw: bytes,
        *,
        key: str = "",
        again: bool = True,
    ) -> str:
        name = _maildir_name(key or hashlib.sha256(raw).hexdigest())
        header = (
            f"Return-Path: <{envelope_from}>\r\nDelivered-To: {', '.join(recipients)}\r\n"
        ).encode()
        try:
            path, written = await asyncio.to_thread(self._write, name, header + raw, again)
        except OSError as exc:
            self._made = False  # the directory may have gone: make it again next time
            raise DeliveryDeferred(f"maildir {self.root}: {exc.strerror}") from exc
        return f"maildir {path.name}" + ("" if written else " (already there)")

    async def settle(self) -> None:
        if not self._unsettled:
            return
        try:
            await asyncio.to_thread(fsync_dir, self.root / "new")
        except OSError as exc:
            raise DeliveryDeferred(f"maildir {self.root}: {exc.strerror}") from exc
        self._unsettled = False

    async def close(self) -> None:
        return


def _maildir_name(key: str) -> str:
    """A maildir file name for the mail named ``key``: the same on every try, free of "/"
    and ":" (which maildir readers treat specially)."""
    return "mailgate." + re.sub(r"[^A-Za-z0-9._-]", "_", key)[:200]


class SmtpRelay:
    """Sends through the configured SMTP relay with aiosmtplib, one connection a round: the
    next mail of the round goes over the connection the last one used (``RSET`` is not
    needed: each delivered mail ends its transaction), and ``close`` says QUIT. A relay's
    250 is final: ``settle`` has nothing to do. A
    connection that failed in any way is closed, never used again; a kept connection
    the relay closed meanwhile is replaced once before the mail counts as deferred."""

    at_most_once = False  # a relay's 250 cannot be taken back, nor asked about

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.tokens = tokens_for(config)  # ``auth = "oauth2"``: kept across rounds
        self._client: aiosmtplib.SMTP | None = None

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
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
            try:
                if self.tokens is not None:
                    await self._xoauth2(client, self.tokens)
                elif cfg.username:
                    await client.login(cfg.username, cfg.password)
            except aiosmtplib.SMTPAuthenticationError as exc:
                # Our credentials, not the mail: it waits (and is retried) rather than dying.
                refused = f"relay {cfg.host}: login refused: {exc.code} {exc.message}"
                raise DeliveryDeferred(refused) from exc
        except BaseException:
            client.close()
            raise
        self._client = client
        return client

    async def _xoauth2(self, client: aiosmtplib.SMTP, tokens: TokenSource) -> None:
        """AUTH XOAUTH2 with the kept token; refused, once more with a fresh one. A token
        that cannot be had defers the mail (the relay is not at fault, nor the mail)."""
        user = self.config.username
        try:
            token = await asyncio.to_thread(tokens.token)
            try:
                await client.auth_xoauth2(user, token)
            except aiosmtplib.SMTPAuthenticationError:
                log.info("relay.token_refused", relay=self.config.host)
                await client.auth_xoauth2(user, await asyncio.to_thread(tokens.token, fresh=True))
        except LoginFailed as exc:
            raise DeliveryDeferred(str(exc)) from exc

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def send(
        self,
        envelope_from: str,
        recipients: Sequence[str],
        raw: bytes,
        *,
        key: str = "",
        again: bool = True,
    ) -> str:
        kept = self._client is not None and self._client.is_connected
        try:
            try:
                client = await self._connected()
                errors, reply = await client.sendmail(envelope_from, list(recipients), raw)
            except aiosmtplib.SMTPServerDisconnected:
                if not kept:
                    raise
                self._drop()  # the relay closed the kept connection (idle timeout): once more
                client = await self._connected()
                errors, reply = await client.sendmail(envelope_from, list(recipients), raw)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            self._drop()
            codes = [r.code for r in exc.recipients]
            detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            if all(500 <= c < 600 for c in codes):
                raise DeliveryFailed(detail) from exc
            raise DeliveryDeferred(detail) from exc
        except aiosmtplib.SMTPResponseException as exc:
            self._drop()
            detail = f"{exc.code} {exc.message}"
            if 500 <= exc.code < 600:
                raise DeliveryFailed(detail) from exc
            raise DeliveryDeferred(detail) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self._drop()
            raise DeliveryDeferred(f"relay {self.config.host}:{self.config.port}: {exc}") from exc
        except BaseException:
            self._drop()
            raise
        refused = "; ".join(f"{rcpt}: {r.code} {r.message}" for rcpt, r in errors.items())
        return f"{reply}" + (f" (refused: {refused})" if refused else "")

    async def settle(self) -> None:
        return

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if client.is_connected:
                await client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass  # every mail of the round has its 250 already
        finally:
            client.close()


def transport_for(relay: RelayConfig, maildir: Path) -> Transport:
    """The relay when one is configured, else the local maildir."""
    if relay.host:
        return SmtpRelay(relay)
    return MaildirTransport(maildir)
