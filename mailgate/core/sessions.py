"""What the web desk signs: a session, a form's CSRF token, a sign-in link, a customer's link.

All three are HMAC-SHA256 under keys derived from the installation's token secret, one
key per purpose, so a value made for one purpose never verifies as another (a customer's
link is not a session, a session is not a form token). Nothing here reads a clock or draws
randomness: the moment and the nonce are arguments.

- A **session** is the cookie ``agent|expires|nonce|language|mac``; it is valid until
  ``expires`` and only for an address that is still an agent (the caller checks that).
- A form's **CSRF token** is the MAC of the session's nonce: a page of another site
  cannot know it, and signing out (a new nonce at the next sign-in) ends it.
- A **sign-in link** mailed to an agent carries ``agent|expires|nonce|mac``; it works
  until it expires, and once (the caller records its nonce when it is used).
- A customer's **link** names a ticket and carries the MAC of (ticket, the participant's
  address): unguessable (128 bits), one per participant, checked against the ticket's
  participants as they are now, so removing a participant revokes their link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

LINK_BYTES = 16  # 128 bits of MAC in a customer's link


@dataclass(frozen=True, slots=True)
class WebSession:
    """A signed-in agent: who, until when, and in which language the pages speak."""

    agent: str
    expires: datetime
    nonce: str
    language: str


@dataclass(frozen=True, slots=True)
class Signer:
    """Signs and checks the web desk's values under keys derived from ``secret``."""

    secret: bytes

    def _key(self, purpose: str) -> bytes:
        return hmac.new(self.secret, f"mailgate web {purpose}".encode(), hashlib.sha256).digest()

    def _mac(self, purpose: str, text: str, size: int = 32) -> str:
        digest = hmac.new(self._key(purpose), text.encode(), hashlib.sha256).digest()[:size]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    # --- sessions ----------------------------------------------------------------------

    def session(
        self, agent: str, now: datetime, lifetime: timedelta, language: str, nonce: str
    ) -> str:
        """A new session cookie's value for ``agent``; ``nonce``: fresh random text."""
        expires = int((now + lifetime).timestamp())
        body = f"{agent.lower()}|{expires}|{nonce}|{language}"
        return f"{body}|{self._mac('session', body)}"

    def read_session(self, value: str, now: datetime) -> WebSession | None:
        """The session ``value`` carries, or None when forged, malformed or expired."""
        body, _, mac = value.rpartition("|")
        if not body or not hmac.compare_digest(mac.encode(), self._mac("session", body).encode()):
            return None
        parts = body.split("|")
        if len(parts) != 4 or not parts[1].isdigit():
            return None
        agent, expires_at, nonce, language = parts
        expires = datetime.fromtimestamp(int(expires_at), UTC)
        if expires <= now:
            return None
        return WebSession(agent, expires, nonce, language)

    def csrf(self, session: WebSession) -> str:
        """The token every form of ``session`` carries."""
        return self._mac("csrf", f"{session.agent}|{session.nonce}")

    def csrf_ok(self, session: WebSession, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.csrf(session).encode())

    def form_check(self, nonce: str) -> str:
        """The sign-in form's check of ``nonce`` (its cookie): before there is a session."""
        return self._mac("sign-in form", nonce)

    # --- sign-in links by mail --------------------------------------------------------

    def sign_in_link(self, agent: str, now: datetime, lifetime: timedelta, nonce: str) -> str:
        """The token of a one-time sign-in link for ``agent`` (``nonce``: fresh, random;
        the caller records it when used, so that the link works once)."""
        body = f"{agent.lower()}|{int((now + lifetime).timestamp())}|{nonce}"
        token = f"{body}|{self._mac('sign-in link', body)}".encode()
        return base64.urlsafe_b64encode(token).decode().rstrip("=")

    def read_sign_in_link(self, token: str, now: datetime) -> tuple[str, str] | None:
        """(agent, nonce) of a sign-in link's token, or None when forged or expired."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        body, _, mac = raw.rpartition("|")
        expected = self._mac("sign-in link", body)
        if not body or not hmac.compare_digest(mac.encode(), expected.encode()):
            return None
        parts = body.split("|")
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        if datetime.fromtimestamp(int(parts[1]), UTC) <= now:
            return None
        return parts[0], parts[2]

    # --- customers' links --------------------------------------------------------------

    def link_key(self, ticket: int, address: str) -> str:
        """The secret part of ``address``'s link to ``ticket``."""
        return self._mac("customer link", f"{ticket}|{address.lower()}", LINK_BYTES)

    def link_path(self, ticket: int, address: str) -> str:
        return f"/c/{ticket}/{self.link_key(ticket, address)}"

    def link_owner(self, ticket: int, key: str, participants: list[str]) -> str | None:
        """Which of ``participants`` the link key is for, or None (forged, or revoked)."""
        for address in participants:
            if hmac.compare_digest(key.encode(), self.link_key(ticket, address).encode()):
                return address
        return None
