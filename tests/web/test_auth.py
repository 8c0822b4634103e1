"""Agents' passwords and the sign-in limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailgate.app import App
from mailgate.web.auth import Passwords, SignInLimiter, weak

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_the_limit_counts_failures_per_key_for_fifteen_minutes() -> None:
    limiter = SignInLimiter(3)
    keys = ["address a@example.com", "client 10.0.0.1"]
    for n in range(3):
        assert limiter.wait(keys, NOW + timedelta(minutes=n)) is None
        limiter.failed(keys, NOW + timedelta(minutes=n))
    assert limiter.wait(keys, NOW + timedelta(minutes=3)) == timedelta(minutes=12)
    # another address from the same client waits too; another client for it as well
    assert limiter.wait(["address b@example.com", "client 10.0.0.1"], NOW) is not None
    assert limiter.wait(["address a@example.com", "client 10.0.0.2"], NOW) is not None
    assert limiter.wait(keys, NOW + timedelta(minutes=15, seconds=1)) is None
    limiter.succeeded(keys[0])
    assert "address a@example.com" not in limiter.failures


def test_short_or_padded_passwords_are_refused() -> None:
    assert weak("short") is not None
    assert weak(" padded password ") is not None
    assert weak("correct horse battery") is None


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_password_is_stored_hashed_and_checked(app: App) -> None:
    passwords = Passwords(app.blocking)
    assert await passwords.set("Anna@example.com", "correct horse battery", NOW) is True
    assert await passwords.set("anna@example.com", "another good password", NOW) is False
    assert await passwords.check("anna@example.com", "another good password")
    assert not await passwords.check("anna@example.com", "correct horse battery")
    assert not await passwords.check("nobody@example.com", "another good password")
    async with app.engine.connect() as conn:
        from sqlalchemy import text

        stored = (await conn.execute(text("SELECT hash FROM agent_passwords"))).scalar()
    assert str(stored).startswith("$argon2id$") and "another" not in str(stored)
