"""Agents' web desk passwords (argon2 hashes). Blocking, on one ``Connection``."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from mailgate.store.tables import table

PASSWORDS = table("agent_passwords")
USED = table("used_sign_in_links")


class AgentRepo:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def password_hash(self, address: str) -> str | None:
        row = self.conn.execute(
            select(PASSWORDS.c.hash).where(PASSWORDS.c.address == address.lower())
        ).first()
        return None if row is None else str(row.hash)

    def set_password_hash(self, address: str, hashed: str, now: datetime) -> bool:
        """Store ``hashed`` for ``address``; True when the agent had no password before."""
        address = address.lower()
        changed = self.conn.execute(
            update(PASSWORDS)
            .where(PASSWORDS.c.address == address)
            .values(hash=hashed, changed_at=now)
        ).rowcount
        if changed:
            return False
        self.conn.execute(insert(PASSWORDS).values(address=address, hash=hashed, changed_at=now))
        return True

    def remove(self, address: str) -> bool:
        """Forget the password of ``address``; whether there was one."""
        gone = self.conn.execute(delete(PASSWORDS).where(PASSWORDS.c.address == address.lower()))
        return bool(gone.rowcount)

    def with_password(self) -> list[tuple[str, datetime]]:
        rows = self.conn.execute(
            select(PASSWORDS.c.address, PASSWORDS.c.changed_at).order_by(PASSWORDS.c.address)
        )
        return [(str(r.address), r.changed_at) for r in rows]

    def use_link(self, nonce: str, now: datetime) -> bool:
        """Record a sign-in link's use; False when it was used before. Uses older than a
        day are forgotten (their links expired long before)."""
        self.conn.execute(delete(USED).where(USED.c.used_at < now - timedelta(days=1)))
        try:
            with self.conn.begin_nested():
                self.conn.execute(insert(USED).values(nonce=nonce, used_at=now))
        except IntegrityError:
            return False
        return True
