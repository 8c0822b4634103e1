"""Find, read and validate config.toml: every problem at once, as one ``ConfigError``."""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mailgate.config.desk import calendar_section, sla_section, submission_section, workflow_section
from mailgate.config.mail import (
    database_url,
    imap_section,
    outbound_section,
    queues_section,
    smtp_section,
)
from mailgate.config.reader import ADDRESS, DOMAIN, PREFIX, Reader, show
from mailgate.config.settings import (
    DEFAULT_CONFIG,
    ENV_CONFIG,
    ENV_DATABASE_URL,
    ENV_SECRET,
    LOG_FORMATS,
    LOG_LEVELS,
    AddressConfig,
    AgentConfig,
    Config,
    DatabaseConfig,
    GeneralConfig,
    HttpConfig,
    IntakeConfig,
    LmtpConfig,
    TokenConfig,
    WorkerConfig,
)
from mailgate.errors import ConfigError


def resolve_config_path(explicit: str | None, environ: Mapping[str, str]) -> Path:
    """The config file to read: ``--config``, else ``MAILGATE_CONFIG``, else ./config.toml."""
    chosen = explicit or environ.get(ENV_CONFIG) or DEFAULT_CONFIG
    return Path(chosen).expanduser().resolve()


def load_config(
    path: Path, environ: Mapping[str, str] | None = None, *, holidays: bool = True
) -> Config:
    """Read, validate and convert ``path``; raise ``ConfigError`` listing every problem.
    ``holidays=False`` leaves the holiday calendar it names unchecked (and the ``holidays``
    package unloaded): for the MTA pipe, which applies no calendar."""
    env = os.environ if environ is None else environ
    name = path.name
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError([f"{path}: file not found"]) from exc
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{name}: not valid TOML: {exc}"]) from exc
    return parse_config(
        document, name=name, base=path.parent, environ=env, path=path, holidays=holidays
    )


def parse_config(
    document: Mapping[str, Any],
    *,
    name: str,
    base: Path,
    environ: Mapping[str, str],
    path: Path | None = None,
    holidays: bool = True,
) -> Config:
    """Validate an already-parsed TOML document; all problems at once."""
    return _parse(Reader(name, base, document), environ, path, holidays)


def _parse(reader: Reader, environ: Mapping[str, str], path: Path | None, holidays: bool) -> Config:
    """Every section read through ``reader``; ``ConfigError`` with all its problems."""
    name, base, document = reader.name, reader.base, reader.document
    known = {
        *("general", "database", "tokens", "addresses", "agents", "worker", "intake", "smtp"),
        *("lmtp", "imap", "outbound", "relay", "queues", "workflow", "submission", "calendar"),
        "sla",
        "http",
        "retention",
    }
    for key in sorted(set(document) - known):
        reader.problems.append(f"{name}: [{key}]: unknown section")

    s = reader.section("general")
    general = GeneralConfig(
        data_dir=s.path("data_dir", "var"),
        log_level=s.string("log_level", "info", choices=LOG_LEVELS),
        log_format=s.string("log_format", "auto", choices=LOG_FORMATS),
        blobs=s.string("blobs", "files", choices=("files", "database")),
    )
    s.finish()

    s = reader.section("database")
    url = s.string("url", "sqlite+aiosqlite:///var/mailgate.db")
    env_url = environ.get(ENV_DATABASE_URL)
    database = DatabaseConfig(
        url=database_url(s, env_url or url, Path.cwd() if env_url else base),
        busy_timeout=s.number("busy_timeout", 5.0, low=0.0, high=600.0),
        echo=s.boolean("echo", False),
        pool_size=s.integer("pool_size", 5, low=1, high=1000),
        max_overflow=s.integer("max_overflow", 5, low=0, high=1000),
        statement_timeout=s.number("statement_timeout", 30.0, low=0.0, high=86400.0),
    )
    s.finish()

    s = reader.section("tokens")
    secret_text = environ.get(ENV_SECRET)
    if secret_text is not None and len(secret_text) < 16:
        reader.problems.append(f"environment {ENV_SECRET}: must be at least 16 characters")
    tokens = TokenConfig(
        prefix=s.string("prefix", "", pattern=PREFIX),
        secret=secret_text.encode() if secret_text else None,
    )
    s.finish()

    s = reader.section("addresses")
    addresses = AddressConfig(
        plus_addressing=s.boolean("plus_addressing", True),
        plus_separator=s.string("plus_separator", "+", choices=("+", "-", "=")),
        case_sensitive_local_part=s.boolean("case_sensitive_local_part", False),
    )
    s.finish()

    s = reader.section("agents")
    agents = AgentConfig(
        domains=tuple(d.lower() for d in s.strings("domains", (), pattern=DOMAIN)),
        addresses=tuple(a.lower() for a in s.strings("addresses", (), pattern=ADDRESS)),
    )
    s.finish()

    s = reader.section("worker")
    worker = WorkerConfig(
        poll_interval=s.number("poll_interval", 2.0, low=0.05, high=3600.0),
        retry_delay=s.number("retry_delay", 30.0, low=0.0, high=86400.0),
        max_retry_delay=s.number("max_retry_delay", 3600.0, low=0.0, high=86400.0),
        batch_size=s.integer("batch_size", 32, low=1, high=1000),
        batch_time=s.number("batch_time", 0.25, low=0.01, high=10.0),
        lanes=s.integer("lanes", 2, low=1, high=16),
    )
    s.finish()

    s = reader.section("intake")
    charsets = s.strings("fallback_charsets", ("utf-8", "windows-1252"))
    for charset in charsets:
        try:
            codecs.lookup(charset)
        except LookupError:
            s.problem("fallback_charsets", f"unknown charset {show(charset)}")
    intake = IntakeConfig(
        fallback_charsets=charsets,
        max_attachment_size=s.integer("max_attachment_size", 25 * 1024 * 1024, low=1, high=2**31),
        max_attachments_size=s.integer("max_attachments_size", 50 * 1024 * 1024, low=1, high=2**33),
        max_attachments=s.integer("max_attachments", 100, low=0, high=100000),
        max_parts=s.integer("max_parts", 500, low=1, high=1000000),
        unknown_sender=s.string("unknown_sender", "hold", choices=("accept", "new_ticket", "hold")),
        trusted_authserv_ids=tuple(t.lower() for t in s.strings("trusted_authserv_ids", ())),
    )
    s.finish()

    smtp = smtp_section(reader, environ)
    s = reader.section("lmtp")
    socket_path = s.string("socket", "")
    lmtp = LmtpConfig(
        enabled=s.boolean("enabled", False),
        host=s.string("host", "127.0.0.1"),
        port=s.integer("port", 2424, low=0, high=65535),
        socket=(base / socket_path) if socket_path else None,
    )
    s.finish()

    queues = queues_section(reader, document.get("queues"))
    imap = imap_section(reader, document.get("imap"), environ, {q.name for q in queues})
    outbound = outbound_section(reader, environ)
    workflow = workflow_section(reader, document.get("workflow"))
    submission = submission_section(reader)
    calendar = calendar_section(reader, holidays)
    sla = sla_section(reader)
    h = reader.section("http")
    http = HttpConfig(
        enabled=h.boolean("enabled", False),
        host=h.string("host", "127.0.0.1"),
        port=h.integer("port", 9465, low=0, high=65535),
    )
    h.finish()
    r = reader.section("retention")
    purge_days = r.number("purge_archived_after_days", 0.0, low=0.0, high=36500.0)
    r.finish()
    if reader.problems:
        raise ConfigError(reader.problems)
    return Config(
        path=path or base / name,
        general=general,
        database=database,
        tokens=tokens,
        addresses=addresses,
        agents=agents,
        worker=worker,
        intake=intake,
        smtp=smtp,
        lmtp=lmtp,
        imap=imap,
        outbound=outbound,
        queues=queues,
        workflow=workflow,
        submission=submission,
        calendar=calendar,
        sla=sla,
        http=http,
        purge_archived_after_days=purge_days,
    )


def config_keys() -> set[str]:
    """Every key config.toml may hold, as ``[section] key`` (array tables as ``[[name]]``,
    workflow states as ``[workflow.states.NAME]``): read off the parser itself, so the
    reference in the README can be checked against it."""
    document: dict[str, Any] = {
        "queues": [{"name": "q", "addresses": ["q@example.com"], "team_address": "t@example.com"}],
        "imap": [{"name": "m", "host": "127.0.0.1", "username": "u", "password_env": "P"}],
        "smtp": {"accounts": [{"username": "u", "password_env": "P"}]},
        "submission": {"keywords": [{"match": ["x"], "type": "bug"}]},
        "workflow": {
            "states": {"s": {"group": "support"}},
            "transitions": [{"on": "remind"}],
            "timers": [{"state": "s", "after_days": 1, "fire": "remind"}],
        },
    }
    reader = Reader("config.toml", Path(), document)
    with contextlib.suppress(ConfigError):  # incomplete on purpose; every key is read anyway
        _parse(reader, {"P": "x"}, None, holidays=False)
    found = set()
    for key in reader.keys:
        label, _, name = key.rpartition(" ")
        label = re.sub(r" #\d+$", "", label)
        label = re.sub(r"^\[workflow\.states\.[^\]]+\]$", "[workflow.states.NAME]", label)
        found.add(f"{label} {name}")
    return found
