"""One IMAP connection to a mailbox: connect, log in, select, fetch, move, wait in IDLE.

Every call blocks (the poller runs it on a thread), and every imapclient, socket
and TLS failure leaves this module as mailgate's own error: ``LoginFailed`` for a
refused login, ``SourceUnavailable`` for the rest. ``probe`` logs in once for
``mailgate check``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import structlog
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError
from imapclient.imapclient import SocketTimeout

from mailgate.config import ImapConfig
from mailgate.errors import LoginFailed, SourceUnavailable
from mailgate.ops.oauth import TokenSource, tokens_for

log = structlog.get_logger("mailgate.imap")


@contextmanager
def imap_errors(mailbox: str, what: str) -> Iterator[None]:
    """Translate imapclient, socket and TLS failures into mailgate's errors, here only."""
    try:
        yield
    except LoginError as exc:
        raise LoginFailed(f"{mailbox}: {what}: {_reason(exc)}") from exc
    except (IMAPClientAbortError, ssl.SSLError, TimeoutError, OSError) as exc:
        raise SourceUnavailable(f"{mailbox}: {what}: {_reason(exc)}") from exc
    except IMAPClientError as exc:
        raise SourceUnavailable(f"{mailbox}: {what}: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.replace("b'", "").replace("'", "")[:200]


@dataclass(frozen=True, slots=True)
class FolderState:
    uidvalidity: int
    waiting: int


class Bearer:
    """The client's side of a SASL OAUTHBEARER (RFC 7628) or XOAUTH2 exchange: the token
    at the server's first (empty) challenge; at an error challenge (a JSON status), the
    dummy answer after which the server says NO (RFC 7628 3.2.3: ``\\x01``; an empty line
    for XOAUTH2), not the token again, as imapclient's own logins answer. The error's
    status (``invalid_token``, ...) is kept for the log."""

    def __init__(self, mechanism: str, user: str, token: str) -> None:
        if mechanism == "OAUTHBEARER":
            authzid = user.replace("=", "=3D").replace(",", "=2C")
            self.first = f"n,a={authzid},\x01auth=Bearer {token}\x01\x01".encode()
            self.dummy = b"\x01"
        else:
            self.first = f"user={user}\x01auth=Bearer {token}\x01\x01".encode()
            self.dummy = b""
        self.answered = False
        self.status = ""  # the server's reason for a refusal, from its error challenge

    def __call__(self, challenge: bytes) -> bytes:
        if not self.answered:
            self.answered = True
            return self.first
        try:
            error = json.loads(challenge)
        except ValueError:
            error = None
        self.status = str(error.get("status", "")) if isinstance(error, dict) else ""
        return self.dummy


class ImapConnection:
    """One logged-in connection to one mailbox; every call blocks (run it in a thread)."""

    def __init__(self, config: ImapConfig, tokens: TokenSource | None = None) -> None:
        self.config = config
        self.tokens = tokens  # for ``auth = "oauth2"``; kept by the caller across connections
        self.client: IMAPClient | None = None
        self.delimiter = "/"

    def open(self) -> FolderState:
        cfg = self.config
        context = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
        timeout = SocketTimeout(connect=min(cfg.timeout, 30.0), read=cfg.timeout)
        with imap_errors(cfg.name, "connect"):
            client = IMAPClient(
                cfg.host,
                port=cfg.port,
                ssl=cfg.security == "tls",
                ssl_context=context,
                timeout=timeout,
            )
        self.client = client
        if cfg.security == "starttls":
            with imap_errors(cfg.name, "starttls"):
                client.starttls(context)
        with imap_errors(cfg.name, "login"):
            try:
                if self.tokens is None:
                    client.login(cfg.username, cfg.password)
                else:
                    self._oauth2_login(client, self.tokens)
            except IMAPClientError as exc:
                if isinstance(exc, IMAPClientAbortError):
                    raise
                raise LoginError(str(exc)) from exc
        with imap_errors(cfg.name, "select"):
            namespace = client.namespace()
            if namespace.personal and namespace.personal[0][1]:
                self.delimiter = str(namespace.personal[0][1])
            for folder in (cfg.processed_folder, cfg.failed_folder):
                path = self.path(folder)
                if not client.folder_exists(path):
                    client.create_folder(path)
            selected = client.select_folder(self.path(cfg.folder))
        return FolderState(int(selected[b"UIDVALIDITY"]), int(selected.get(b"EXISTS", 0)))

    def _oauth2_login(self, client: IMAPClient, tokens: TokenSource) -> None:
        """SASL OAUTHBEARER (RFC 7628) where the server offers it, else XOAUTH2, with the
        kept token; refused, once more with a fresh one (the kept one may have been
        revoked or expired early), then the refusal stands."""
        mechanism = "OAUTHBEARER" if b"AUTH=OAUTHBEARER" in client.capabilities() else "XOAUTH2"
        user = self.config.username
        kept = Bearer(mechanism, user, tokens.token())
        try:
            client.sasl_login(mechanism, kept)
        except LoginError:
            log.info("imap.token_refused", mailbox=self.config.name, status=kept.status)
            client.sasl_login(mechanism, Bearer(mechanism, user, tokens.token(fresh=True)))

    def path(self, folder: str) -> str:
        """A configured folder name (with ``/``) in the server's own hierarchy delimiter."""
        return folder if folder.upper() == "INBOX" else folder.replace("/", self.delimiter)

    @property
    def connected(self) -> IMAPClient:
        assert self.client is not None
        return self.client

    def waiting(self) -> list[int]:
        with imap_errors(self.config.name, "search"):
            return sorted(int(uid) for uid in self.connected.search(["NOT", "DELETED"]))

    def sizes(self, uids: list[int]) -> dict[int, int]:
        with imap_errors(self.config.name, "fetch sizes"):
            found = self.connected.fetch(uids, ["RFC822.SIZE"])
        return {int(uid): int(data.get(b"RFC822.SIZE", 0)) for uid, data in found.items()}

    def bodies(self, uids: list[int]) -> dict[int, bytes]:
        with imap_errors(self.config.name, "fetch"):
            found = self.connected.fetch(uids, ["BODY.PEEK[]"])
        return {int(uid): bytes(data.get(b"BODY[]") or b"") for uid, data in found.items()}

    def move(self, uids: list[int], folder: str) -> None:
        if not uids:
            return
        client = self.connected
        target = self.path(folder)
        with imap_errors(self.config.name, f"move to {folder}"):
            if client.has_capability("MOVE"):
                client.move(uids, target)
                return
            client.copy(uids, target)
            client.add_flags(uids, [b"\\Deleted"])
            if client.has_capability("UIDPLUS"):
                client.uid_expunge(uids)
            else:
                client.expunge()

    def can_idle(self) -> bool:
        return self.config.idle and self.connected.has_capability("IDLE")

    def idle(self, renew: float, stopped: threading.Event) -> None:
        """Wait in IDLE until the folder changes, ``renew`` seconds pass, or we are stopped."""
        client = self.connected
        with imap_errors(self.config.name, "idle"):
            client.idle()
            log.debug("imap.idling", mailbox=self.config.name, renew=renew)
            try:
                began = time.monotonic()
                while not stopped.is_set() and time.monotonic() - began < renew:
                    responses = client.idle_check(timeout=1)
                    if any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses):
                        return
            finally:
                client.idle_done()

    def noop(self) -> None:
        with imap_errors(self.config.name, "noop"):
            self.connected.noop()

    def close(self) -> None:
        if self.client is None:
            return
        try:
            self.client.logout()
        except Exception:  # already broken: just drop the socket
            with contextlib.suppress(Exception):
                self.client.shutdown()
        self.client = None


async def probe(config: ImapConfig) -> FolderState:
    """Log in and look at the watched folder once (for ``mailgate check``)."""

    def look() -> FolderState:
        connection = ImapConnection(config, tokens_for(config))
        try:
            return connection.open()
        finally:
            connection.close()

    return await asyncio.to_thread(look)
