"""SASL XOAUTH2 against a real Dovecot whose ``oauth2`` passdb asks a token introspection
endpoint served by the test: login, fetch and move, a refused token retried once fresh."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import structlog

from mailgate.app import build_app
from mailgate.cli.check import check_sources
from mailgate.clock import FrozenClock
from mailgate.config import Config, ImapConfig, OAuth2Config
from mailgate.errors import LoginFailed
from mailgate.intake.mailbox import ImapConnection
from mailgate.ops.oauth import tokens_for
from tests.conftest import REQUIRE_SERVERS
from tests.intake.test_imap import DOVECOT, USER, Dovecot, Running
from tests.mails import make_mail
from tests.waiting import eventually


class Introspection:
    """The token introspection endpoint Dovecot's oauth2 passdb posts each token to."""

    def __init__(self) -> None:
        self.valid: set[str] = set()
        self.asked: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                token = parse_qs(body).get("token", [""])[0]
                owner.asked.append(token)
                active = token in owner.valid
                data = json.dumps(
                    {"active": active, "username": USER} if active else {"active": False}
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def oauth_dovecot() -> Iterator[tuple[Dovecot, Introspection]]:
    if not DOVECOT.exists() or shutil.which("openssl") is None:
        if REQUIRE_SERVERS:
            pytest.fail("dovecot is missing and MAILGATE_REQUIRE_SERVERS=1")
        pytest.skip("dovecot is not installed")
    endpoint = Introspection()
    server = Dovecot()
    conf = server.directory / "oauth2.conf.ext"
    conf.write_text(
        "introspection_mode = post\n"
        f"introspection_url = http://127.0.0.1:{endpoint.port}/introspect\n"
        "username_attribute = username\nactive_attribute = active\nactive_value = true\n"
    )
    server.extra = (
        "auth_mechanisms = plain login xoauth2 oauthbearer\n"
        "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
        f"  args = {conf}\n}}\n"
    )
    server.start()
    try:
        yield server, endpoint
    finally:
        server.cleanup()
        endpoint.close()


def mailbox(server: Dovecot, command: str) -> ImapConfig:
    return ImapConfig(
        name="hosted", host="127.0.0.1", port=server.port, security="none", username=USER,
        password="", password_env="", ca_file=None, folder="INBOX",
        processed_folder="mailgate/processed", failed_folder="mailgate/failed",
        poll_interval=1.0, idle=True, idle_renew=60.0, batch_size=10, timeout=10.0,
        max_message_size=10**6, queue=None, oauth2=OAuth2Config("command", command=command),
    )  # fmt: skip


def test_xoauth2_login_fetch_and_move_like_a_password_login(
    oauth_dovecot: tuple[Dovecot, Introspection], tmp_path: Path
) -> None:
    server, endpoint = oauth_dovecot
    endpoint.valid = {"good-token"}
    server.append([make_mail(subject="Via OAuth2")])
    config = mailbox(server, "printf good-token")
    connection = ImapConnection(config, tokens_for(config))
    try:
        connection.open()
        uids = connection.waiting()
        assert b"Via OAuth2" in connection.bodies(uids)[uids[0]]
        connection.move(uids, config.processed_folder)
        assert connection.waiting() == []
    finally:
        connection.close()
    assert endpoint.asked[-1] == "good-token"
    assert "method=OAUTHBEARER" in server.log()  # offered by the server: RFC 7628's mechanism


def test_a_refused_token_is_retried_once_fresh_then_the_refusal_stands(
    oauth_dovecot: tuple[Dovecot, Introspection], tmp_path: Path
) -> None:
    server, endpoint = oauth_dovecot
    current = tmp_path / "token"
    current.write_text("old-token")
    config = mailbox(server, f"cat {current}")
    source = tokens_for(config)
    endpoint.valid = {"old-token"}
    first = ImapConnection(config, source)
    first.open()
    first.close()
    # The kept token is revoked; the command now prints a new one: one retry logs in.
    endpoint.valid, endpoint.asked = {"new-token"}, []
    current.write_text("new-token")
    connection = ImapConnection(config, source)
    connection.open()
    connection.close()
    assert endpoint.asked == ["old-token", "new-token"]
    # Everything revoked: one fresh try, then imap.login_failed's reason.
    endpoint.valid, endpoint.asked = set(), []
    last = ImapConnection(replace(config), source)
    with pytest.raises(LoginFailed) as refused:
        last.open()
    last.close()
    assert "AUTHENTICATIONFAILED" in str(refused.value) or "failed" in str(refused.value)
    assert endpoint.asked == ["new-token", "new-token"]


def oauth_table(server: Dovecot, command: str, **overrides: Any) -> dict[str, Any]:
    """An ``[[imap]]`` table that logs in with XOAUTH2 and ``command``'s token."""
    table: dict[str, Any] = {
        "name": "hosted", "host": "127.0.0.1", "port": server.port, "security": "none",
        "username": USER, "auth": "oauth2", "token_command": command, "timeout": 10.0,
    }  # fmt: skip
    return {**table, **overrides}


async def test_the_poller_idles_fetches_and_moves_with_a_token_as_with_a_password(
    oauth_dovecot: tuple[Dovecot, Introspection],
    make_config: Callable[..., Config],
    clock: FrozenClock,
) -> None:
    server, endpoint = oauth_dovecot
    endpoint.valid = {"good-token"}
    table = oauth_table(server, "printf good-token", poll_interval=3600.0)
    app = await build_app(make_config(smtp={"enabled": False}, imap=[table]), clock)
    instance = Running(app)
    try:
        with structlog.testing.capture_logs() as logs:
            instance.start()
            await eventually(lambda: any(e["event"] == "imap.idling" for e in logs))
        before = await asyncio.to_thread(server.count, "mailgate/processed")
        await asyncio.to_thread(server.append, [make_mail(subject="pushed with a token")])
        await eventually(instance.count, timeout=10)  # IDLE told the poller
        await eventually(
            lambda: asyncio.to_thread(lambda: server.count("mailgate/processed") == before + 1)
        )
        assert "good-token" not in json.dumps(logs, default=str)  # a token is never logged
    finally:
        await instance.halt()
        await app.close()


async def test_check_fetches_a_token_logs_in_and_says_which_step_failed(
    oauth_dovecot: tuple[Dovecot, Introspection], make_config: Callable[..., Config]
) -> None:
    server, endpoint = oauth_dovecot
    endpoint.valid = {"good-token"}
    tables = [
        oauth_table(server, "printf good-token"),
        oauth_table(server, "echo 'refresh token expired' >&2; exit 1", name="broken"),
    ]
    out = io.StringIO()
    code = await check_sources(make_config(imap=tables), out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("imap hosted: ok, ")
    assert lines[1] == (
        "imap broken: login failed: broken: token_command exited with status 1: "
        "refresh token expired"
    )
    assert code == 78


def test_a_token_that_expires_during_the_run_is_renewed_before_the_next_login(
    oauth_dovecot: tuple[Dovecot, Introspection], tmp_path: Path
) -> None:
    server, endpoint = oauth_dovecot
    runs = tmp_path / "runs"
    # Each run prints a new token that lives 61 s: kept for one second (a minute early).
    command = (
        f"echo x >> {runs}; n=$(wc -l < {runs}); "
        'printf \'{"access_token": "short-%s", "expires_in": 61}\' "$n"'
    )
    config = mailbox(server, command)
    source = tokens_for(config)
    endpoint.valid, endpoint.asked = {"short-1", "short-2"}, []
    for _ in range(2):
        connection = ImapConnection(config, source)
        connection.open()
        connection.close()
        time.sleep(1.2)
    assert endpoint.asked == ["short-1", "short-2"]  # renewed ahead, never refused first
