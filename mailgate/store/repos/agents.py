"""Agents' web desk passwords (argon2 hashes). Blocking, on one ``Connection``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, insert, select, update

from mailgate.store.tables import table

PASSWORDS = table("agent_passwords")


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
