"""Shared fixtures: a config per test, a database per test on SQLite and on PostgreSQL.

Every test that touches the database runs twice, once on a real SQLite file and
once on a throwaway PostgreSQL cluster this suite starts itself. With
MAILGATE_REQUIRE_SERVERS=1 (CI) a missing server is a failure, never a skip.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mailgate.app import App, build_app
from mailgate.clock import FrozenClock
from mailgate.config import Config, parse_config
from mailgate.intake.spool import Received
from mailgate.runners.worker import Outcome

SUPPORT = Path(__file__).parent / "support"
# The shared corpus of real mails lives beside the repository (or where MAILGATE_CORPUS says).
CORPUS = Path(
    os.environ.get("MAILGATE_CORPUS") or Path(__file__).resolve().parents[2] / "shared" / "corpus"
)


def corpus_mails() -> list[dict[str, Any]]:  # the entries; tests.hostile.corpus_raws: bytes
    """The whole mails of the corpus manifest (not bare bodies), in manifest order."""
    manifest = CORPUS / "manifest.jsonl"
    if not manifest.exists():
        return []
    entries = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    return [e for e in entries if str(e["format"]).startswith("rfc822")]


REQUIRE_SERVERS = os.environ.get("MAILGATE_REQUIRE_SERVERS") == "1"
TEST_SECRET = "test-secret-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_available() -> bool:
    return any(Path("/usr/lib/postgresql").glob("*/bin/initdb"))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster for the whole session; yields its base DSN."""
    if not _pg_available():
        if REQUIRE_SERVERS:
            pytest.fail("PostgreSQL server binaries are missing and MAILGATE_REQUIRE_SERVERS=1")
        pytest.skip("PostgreSQL server binaries are missing")
    # Not under pytest's private tmp dir: as root the cluster runs as the postgres user.
    directory = Path(tempfile.mkdtemp(prefix="mailgate-pg-"))
    os.chmod(directory, 0o755)
    port = free_port()
    script = str(SUPPORT / "pg-cluster.sh")
    dsn = (
        subprocess.run(
            ["bash", script, "start", str(directory / "cluster"), str(port)],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    try:
        yield dsn
    finally:
        subprocess.run(
            ["bash", script, "stop", str(directory / "cluster")],
            check=False,
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(directory, ignore_errors=True)


async def _pg_admin(dsn: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database for one test."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'mailgate.db'}"
        return
    dsn: str = request.getfixturevalue("pg_server")
    name = f"t_{uuid.uuid4().hex[:16]}"
    asyncio.run(_pg_admin(dsn, f"CREATE DATABASE {name}"))
    base = dsn.rsplit("/", 1)[0]
    try:
        yield f"postgresql+asyncpg://{base.split('://', 1)[1]}/{name}"
    finally:
        asyncio.run(_pg_admin(dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def test_environ() -> dict[str, str]:
    """The process environment for configs built in tests, with the test secret."""
    environ = {k: v for k, v in os.environ.items() if k != "MAILGATE_DATABASE_URL"}
    environ["MAILGATE_SECRET"] = TEST_SECRET
    return environ


def config_document(db_url: str, **sections: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "general": {"data_dir": "var", "log_level": "debug", "log_format": "json"},
        "database": {"url": db_url, "busy_timeout": 2.0},
        "agents": {"domains": ["example.com"]},
        "worker": {"poll_interval": 0.1, "retry_delay": 0.0},
        "web": {"port": 0},
        "queues": [
            {
                "name": "support",
                "addresses": ["support@example.com"],
                "team_address": "team@example.com",
            },
            {
                "name": "sitedown",
                "addresses": ["sitedown@example.com"],
                "team_address": "oncall@example.com",
                "default_type": "bug",
                "default_priority": "critical",
            },
        ],
    }
    for name, values in sections.items():
        if isinstance(values, list):  # arrays of tables: [[imap]]
            document[name] = values
        else:
            document.setdefault(name, {}).update(values)
    return document


@pytest.fixture
def make_config(db_url: str, tmp_path: Path) -> Callable[..., Config]:
    def build(**sections: dict[str, Any]) -> Config:
        return parse_config(
            config_document(db_url, **sections),
            name="config.toml",
            base=tmp_path,
            environ=test_environ(),
        )

    return build


@pytest.fixture
def config(make_config: Callable[..., Config]) -> Config:
    return make_config()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def app(config: Config, clock: FrozenClock) -> AsyncIterator[App]:
    application = await build_app(config, clock)
    try:
        yield application
    finally:
        await application.close()


@pytest.fixture
async def desk(
    make_config: Callable[..., Config], clock: FrozenClock
) -> AsyncIterator[Callable[..., Any]]:
    """Build an app with extra config sections; closed at the end of the test."""
    apps: list[App] = []

    async def build(**sections: Any) -> App:
        app = await build_app(make_config(**sections), clock)
        apps.append(app)
        return app

    yield build
    for app in apps:
        await app.close()


async def deliver(
    app: App, raw: bytes, *, to: tuple[str, ...] = (), source: str = "test"
) -> Outcome:
    """The whole intake path for one mail: store, then process; returns the outcome."""
    stored = await app.spool.store(Received(raw, source, envelope_to=to))
    assert not stored.duplicate, "deliver() expects a new mail"
    outcome = await app.processor.process(stored.spool_id)
    assert outcome is not None
    return outcome


def write_config_file(path: Path, db_url: str, **sections: Any) -> Path:
    """config.toml for a subprocess or in-process CLI test."""
    document = config_document(db_url, **sections)
    lines: list[str] = []
    for name, values in document.items():
        if isinstance(values, list):
            continue
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml(v)}" for k, v in values.items()]
    for name, values in document.items():
        if not isinstance(values, list):
            continue
        for table in values:
            lines.append(f"[[{name}]]")
            lines += [f"{k} = {_toml(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def have(command: str) -> bool:
    return shutil.which(command) is not None


def inbound_per_message_id(database: Path) -> dict[str, int]:
    """How many inbound messages each Message-ID has in a SQLite database."""
    import sqlite3

    with sqlite3.connect(database) as conn:
        rows = conn.execute(
            "SELECT message_id, count(*) FROM messages WHERE direction = 'in' GROUP BY message_id"
        ).fetchall()
    return {str(mid): int(count) for mid, count in rows}


class ThrowawayCluster:
    """A PostgreSQL cluster of one test's own, which the test may stop and start again."""

    def __init__(self) -> None:
        if not _pg_available():
            if REQUIRE_SERVERS:
                pytest.fail("PostgreSQL server binaries are missing and MAILGATE_REQUIRE_SERVERS=1")
            pytest.skip("PostgreSQL server binaries are missing")
        self.directory = Path(tempfile.mkdtemp(prefix="mailgate-pg-own-"))
        os.chmod(self.directory, 0o755)
        self.port = free_port()
        self.dsn = self.run("start").splitlines()[-1]
        self.url = self.dsn.replace("postgresql://", "postgresql+asyncpg://")

    def run(self, command: str) -> str:
        return subprocess.run(
            ["bash", str(SUPPORT / "pg-cluster.sh"), command, str(self.directory / "c"),
             str(self.port)],
            check=True, capture_output=True, text=True, timeout=120,
        ).stdout.strip()  # fmt: skip

    def stop(self) -> None:
        self.run("stop")

    def start(self) -> None:
        self.run("start")

    def remove(self) -> None:
        subprocess.run(
            ["bash", str(SUPPORT / "pg-cluster.sh"), "stop", str(self.directory / "c")],
            check=False, capture_output=True, timeout=60,
        )  # fmt: skip
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def own_cluster() -> Iterator[ThrowawayCluster]:
    cluster = ThrowawayCluster()
    try:
        yield cluster
    finally:
        cluster.remove()
