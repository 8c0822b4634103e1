"""Access tokens for OAuth2 logins (SASL XOAUTH2) to hosted mailboxes and relays.

A mailbox or the relay with ``auth = "oauth2"`` logs in with a token instead of a
password, from one ``TokenSource`` each (decision 0019): ``MicrosoftTokens`` (Microsoft
365 app-only through MSAL, a client secret or certificate), ``GoogleTokens`` (a Google
Workspace service account with domain-wide delegation through google-auth), or
``CommandTokens`` (``token_command``: whatever prints a token, as mutt, isync and aerc
users already have; run through ``/bin/sh`` with a timeout; a bare token or a JSON
object with ``access_token`` and ``expires_in``). A token is kept in memory until a
minute before it expires and fetched afresh when a login with it is refused. A source
that fails is a refused login (``LoginFailed``: ``imap.login_failed`` and the slow retry
for a mailbox, a deferred mail for the relay), logged as ``oauth.token_failed`` with the
command's stderr or the service's error; a token or a secret is never logged.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from mailgate.config import ImapConfig, OAuth2Config, RelayConfig
from mailgate.errors import LoginFailed

log = structlog.get_logger("mailgate.oauth")
EARLY = 60.0  # seconds before its expiry that a token is fetched anew
MICROSOFT_SCOPE = "https://outlook.office365.com/.default"
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
GOOGLE_SCOPE = "https://mail.google.com/"


class TokenSource(Protocol):
    def token(self, *, fresh: bool = False) -> str:
        """An access token; ``fresh``: not the one kept (the server refused it)."""
        ...


@dataclass
class CommandTokens:
    """Tokens printed by ``command`` (blocking: called on the poller's thread)."""

    mailbox: str
    command: str
    timeout: float
    lifetime: float
    _token: str = field(default="", repr=False)
    _until: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def token(self, *, fresh: bool = False) -> str:
        with self._lock:
            if fresh or not self._token or time.monotonic() >= self._until:
                self._token, lifetime = self._run()
                self._until = time.monotonic() + max(lifetime - EARLY, 0.0)
            return self._token

    def _run(self) -> tuple[str, float]:
        try:
            done = subprocess.run(  # noqa: S603 - the sysadmin's own configured command
                ["/bin/sh", "-c", self.command],
                capture_output=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise LoginFailed(
                f"{self.mailbox}: token_command printed no token within {self.timeout:g} s"
            ) from exc
        except OSError as exc:
            raise LoginFailed(f"{self.mailbox}: token_command: {exc.strerror or exc}") from exc
        stderr = done.stderr.decode("utf-8", "replace").strip()
        if done.returncode != 0:
            log.error("oauth.token_failed", source=self.mailbox, status=done.returncode,
                      stderr=stderr[-1000:])  # fmt: skip
            last = stderr.splitlines()[-1][:200] if stderr else "no message"
            raise LoginFailed(
                f"{self.mailbox}: token_command exited with status {done.returncode}: {last}"
            )
        return _parse(self.mailbox, done.stdout.decode("utf-8", "replace").strip(), self.lifetime)


def _parse(mailbox: str, output: str, lifetime: float) -> tuple[str, float]:
    """The token and how long it lives: a bare token, or a JSON token response."""
    if output.startswith("{"):
        try:
            data = json.loads(output)
            token, lifetime = str(data["access_token"]), float(data.get("expires_in", lifetime))
        except (ValueError, KeyError, TypeError) as exc:
            raise LoginFailed(
                f"{mailbox}: token_command printed JSON without access_token"
            ) from exc
        output = token.strip()
    if not output or any(ch.isspace() for ch in output):
        raise LoginFailed(f"{mailbox}: token_command printed no token (one line, no spaces)")
    return output, lifetime


@dataclass
class MicrosoftTokens:
    """Microsoft 365, app-only: the client credentials grant through MSAL for
    ``https://outlook.office365.com/.default`` (IMAP and SMTP AUTH of Exchange Online),
    with a client secret or a certificate. MSAL keeps the token until shortly before it
    expires; ``fresh`` drops it first."""

    name: str
    config: OAuth2Config
    _app: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def token(self, *, fresh: bool = False) -> str:
        with self._lock:
            try:
                app = self._client()
                if fresh:
                    app.remove_tokens_for_client()
                result = app.acquire_token_for_client(scopes=[MICROSOFT_SCOPE])
            except (OSError, ValueError) as exc:  # unreachable endpoint, a broken answer
                raise LoginFailed(f"{self.name}: Microsoft token endpoint: {exc}") from exc
        if "access_token" not in result:
            error = str(result.get("error", "no token"))
            detail = "".join(str(result.get("error_description", "")).splitlines()[:1])
            log.error("oauth.token_failed", source=self.name, provider="microsoft", error=error)
            raise LoginFailed(f"{self.name}: Microsoft token endpoint: {error}: {detail}")
        return str(result["access_token"])

    def _client(self) -> Any:
        if self._app is None:
            import msal

            cfg = self.config
            credential: Any = cfg.client_secret
            if cfg.certificate is not None:
                credential = _certificate(cfg.certificate)
            self._app = msal.ConfidentialClientApplication(
                cfg.client_id,
                client_credential=credential,
                authority=f"{cfg.authority}/{cfg.tenant}",
                timeout=cfg.timeout,
                # Another token service (a national cloud, a test's) is not asked about
                # at Microsoft's public instance discovery endpoint.
                instance_discovery=cfg.authority == MICROSOFT_AUTHORITY,
            )
        return self._app


def _certificate(path: Path) -> dict[str, str]:
    """MSAL's certificate credential from one PEM file holding the key and certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    pem = path.read_bytes()
    certificate = x509.load_pem_x509_certificate(pem)
    thumbprint = certificate.fingerprint(hashes.SHA1()).hex()  # noqa: S303 - MSAL's x5t
    return {"private_key": pem.decode(), "thumbprint": thumbprint}


@dataclass
class GoogleTokens:
    """Google Workspace: a service account with domain-wide delegation, through
    google-auth, impersonating the mailbox (``subject``) for ``https://mail.google.com/``.
    The credentials keep their token until shortly before it expires."""

    name: str
    key_file: Path
    subject: str
    _credentials: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def token(self, *, fresh: bool = False) -> str:
        from google.auth.exceptions import GoogleAuthError
        from google.auth.transport.requests import Request

        with self._lock:
            try:
                credentials = self._load()
                if fresh or not credentials.valid:
                    credentials.refresh(Request())
            except (GoogleAuthError, OSError, ValueError) as exc:
                reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
                log.error("oauth.token_failed", source=self.name, provider="google", error=reason)
                raise LoginFailed(f"{self.name}: Google token endpoint: {reason}") from exc
            return str(credentials.token)

    def _load(self) -> Any:
        if self._credentials is None:
            from google.oauth2 import service_account

            load: Any = service_account.Credentials.from_service_account_file  # untyped
            self._credentials = load(
                str(self.key_file), scopes=[GOOGLE_SCOPE], subject=self.subject
            )
        return self._credentials


def tokens_for(config: ImapConfig | RelayConfig) -> TokenSource | None:
    """The token source of a mailbox or relay that logs in with OAuth2; None for a
    password."""
    oauth2 = config.oauth2
    if oauth2 is None:
        return None
    name = config.name if isinstance(config, ImapConfig) else f"relay {config.host}"
    if oauth2.provider == "microsoft":
        return MicrosoftTokens(name, oauth2)
    if oauth2.provider == "google" and oauth2.service_account is not None:
        return GoogleTokens(name, oauth2.service_account, config.username)
    return CommandTokens(name, oauth2.command, oauth2.timeout, oauth2.lifetime)
