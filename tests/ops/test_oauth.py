"""Access tokens from ``token_command``: printed, refused with a reason, kept, refreshed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mailgate.errors import LoginFailed
from mailgate.ops.oauth import CommandTokens


def tokens(command: str, *, timeout: float = 5.0, lifetime: float = 3000.0) -> CommandTokens:
    return CommandTokens("hosted", command, timeout, lifetime)


def test_a_token_command_prints_the_token_or_says_why_not(tmp_path: Path) -> None:
    assert tokens("printf 'tok-123\\n'").token() == "tok-123"
    answer = json.dumps({"access_token": "tok-json", "expires_in": 3600, "token_type": "Bearer"})
    assert tokens(f"printf '%s' '{answer}'").token() == "tok-json"
    for command, reason in (
        ("echo 'refresh token revoked' >&2; exit 3", "exited with status 3: refresh token revoked"),
        ("sleep 5", "printed no token within 0.5 s"),
        ("true", "printed no token"),
        ("echo 'two words'", "printed no token"),
        ('echo \'{"error": "invalid_grant"}\'', "JSON without access_token"),
    ):
        with pytest.raises(LoginFailed) as refused:
            tokens(command, timeout=0.5).token()
        assert reason in str(refused.value) and str(refused.value).startswith("hosted: ")


def test_a_token_is_kept_until_shortly_before_it_expires_and_fetched_afresh_when_refused(
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs"
    counting = f"echo x >> {runs}; printf 'tok-%s' $(wc -l < {runs})"
    kept = tokens(counting)
    assert [kept.token(), kept.token()] == ["tok-1", "tok-1"]
    assert kept.token(fresh=True) == "tok-2"
    short = f'echo x >> {runs}; printf \'{{"access_token": "tok-%s", "expires_in": 61}}\' $(wc -l < {runs})'  # noqa: E501
    expiring = tokens(short)
    first = expiring.token()
    time.sleep(1.2)  # 61 s minus the minute kept in hand: one second
    assert expiring.token() != first
