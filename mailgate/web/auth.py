"""Who may sign in to the web desk: agents' passwords (argon2id) and the sign-in limit.

Only a configured agent address (``[agents]``) signs in; its password is set with
``mailgate agent add`` or ``passwd`` and kept as an argon2id hash (argon2-cffi's
defaults, RFC 9106's second recommended profile). Checking one costs some 50 ms of CPU,
so it runs off the event loop. Failed attempts are counted per address and per client
address; past ``[web] sign_in_attempts`` in 15 minutes, sign-in answers 429 until the
oldest failure is 15 minutes old. The count is per instance (behind a balancer, each
instance allows its own share), kept in memory, and forgotten at a restart.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection

from mailgate.store.db import Blocking
from mailgate.store.repos.agents import AgentRepo

WINDOW = timedelta(minutes=15)
MIN_LENGTH = 10
_HASHER = PasswordHasher()
# Checked when an address has no password, so that a wrong address costs what a wrong
# password costs and the answer's timing does not tell which agents have one.
_DUMMY = _HASHER.hash("mailgate: no password set for this address")


def weak(password: str) -> str | None:
    """Why ``password`` may not be set, or None."""
    if len(password) < MIN_LENGTH:
        return f"a password needs at least {MIN_LENGTH} characters"
    if password.strip() != password:
        return "a password may not start or end with a space"
    return None


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


@dataclass
class Passwords:
    """Agents' passwords in the database, checked off the event loop."""

    blocking: Blocking

    async def check(self, address: str, password: str) -> bool:
        stored = await self.blocking.read(lambda conn: AgentRepo(conn).password_hash(address))
        return await asyncio.to_thread(_verify, stored or _DUMMY, password, stored is not None)

    async def set(self, address: str, password: str, now: datetime) -> bool:
        """Store ``password`` for ``address``; True when it had none before."""
        hashed = await asyncio.to_thread(hash_password, password)

        def store(conn: Connection) -> bool:
            return AgentRepo(conn).set_password_hash(address, hashed, now)

        return await self.blocking.write(store)


def _verify(stored: str, password: str, real: bool) -> bool:
    try:
        return _HASHER.verify(stored, password) and real
    except (VerificationError, InvalidHashError):
        return False


@dataclass
class SignInLimiter:
    """Failed sign-ins per key (an address, a client) within ``WINDOW``."""

    attempts: int
    failures: dict[str, deque[datetime]] = field(default_factory=lambda: defaultdict(deque))

    def _recent(self, key: str, now: datetime) -> deque[datetime]:
        seen = self.failures[key]
        while seen and seen[0] <= now - WINDOW:
            seen.popleft()
        return seen

    def wait(self, keys: list[str], now: datetime) -> timedelta | None:
        """How long until one of ``keys`` may try again, or None when all may now."""
        waits = [
            seen[0] + WINDOW - now
            for key in keys
            if len(seen := self._recent(key, now)) >= self.attempts
        ]
        if not waits:
            return None
        return max(waits)

    def failed(self, keys: list[str], now: datetime) -> None:
        for key in keys:
            self._recent(key, now).append(now)
        if len(self.failures) > 10_000:  # forget quiet keys, so that memory stays bounded
            for key in [k for k, v in self.failures.items() if not self._recent(k, now)]:
                del self.failures[key]

    def succeeded(self, address_key: str) -> None:
        self.failures.pop(address_key, None)
