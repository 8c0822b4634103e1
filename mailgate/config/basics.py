"""The small sections of config.toml: general, database, tokens, agents, worker, intake and more.

Each reads its section through the ``Reader`` (which collects every problem) and
returns its settings type; the larger sections are ``mail``'s and ``desk``'s.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from pathlib import Path

from mailgate.config.mail import database_url
from mailgate.config.reader import ADDRESS, DOMAIN, PREFIX, Reader, show
from mailgate.config.settings import (
    ENV_DATABASE_URL,
    ENV_SECRET,
    LOG_FORMATS,
    LOG_LEVELS,
    AddressConfig,
    AgentConfig,
    DatabaseConfig,
    GeneralConfig,
    HttpConfig,
    IntakeConfig,
    LmtpConfig,
    TokenConfig,
    WebConfig,
    WorkerConfig,
)


def general_section(reader: Reader) -> GeneralConfig:
    s = reader.section("general")
    general = GeneralConfig(
        data_dir=s.path("data_dir", "var"),
        log_level=s.string("log_level", "info", choices=LOG_LEVELS),
        log_format=s.string("log_format", "auto", choices=LOG_FORMATS),
        blobs=s.string("blobs", "files", choices=("files", "database")),
        files_from=s.integer("files_from", 65536, low=0, high=2**31),
    )
    s.finish()
    return general


def database_section(reader: Reader, environ: Mapping[str, str]) -> DatabaseConfig:
    """``MAILGATE_DATABASE_URL`` wins over ``url`` (a relative SQLite path in it is
    relative to the working directory, in the file to the file)."""
    s = reader.section("database")
    url = s.string("url", "sqlite+aiosqlite:///var/mailgate.db")
    env_url = environ.get(ENV_DATABASE_URL)
    database = DatabaseConfig(
        url=database_url(s, env_url or url, Path.cwd() if env_url else reader.base),
        busy_timeout=s.number("busy_timeout", 5.0, low=0.0, high=600.0),
        echo=s.boolean("echo", False),
        pool_size=s.integer("pool_size", 5, low=1, high=1000),
        max_overflow=s.integer("max_overflow", 5, low=0, high=1000),
        statement_timeout=s.number("statement_timeout", 30.0, low=0.0, high=86400.0),
    )
    s.finish()
    return database


def tokens_section(reader: Reader, environ: Mapping[str, str]) -> TokenConfig:
    s = reader.section("tokens")
    secret_text = environ.get(ENV_SECRET)
    if secret_text is not None and len(secret_text) < 16:
        reader.problems.append(f"environment {ENV_SECRET}: must be at least 16 characters")
    tokens = TokenConfig(
        prefix=s.string("prefix", "", pattern=PREFIX),
        secret=secret_text.encode() if secret_text else None,
    )
    s.finish()
    return tokens


def addresses_section(reader: Reader) -> AddressConfig:
    s = reader.section("addresses")
    addresses = AddressConfig(
        plus_addressing=s.boolean("plus_addressing", True),
        plus_separator=s.string("plus_separator", "+", choices=("+", "-", "=")),
        case_sensitive_local_part=s.boolean("case_sensitive_local_part", False),
    )
    s.finish()
    return addresses


def agents_section(reader: Reader) -> AgentConfig:
    s = reader.section("agents")
    agents = AgentConfig(
        domains=tuple(d.lower() for d in s.strings("domains", (), pattern=DOMAIN)),
        addresses=tuple(a.lower() for a in s.strings("addresses", (), pattern=ADDRESS)),
    )
    s.finish()
    return agents


def worker_section(reader: Reader) -> WorkerConfig:
    s = reader.section("worker")
    worker = WorkerConfig(
        poll_interval=s.number("poll_interval", 2.0, low=0.05, high=3600.0),
        retry_delay=s.number("retry_delay", 30.0, low=0.0, high=86400.0),
        max_retry_delay=s.number("max_retry_delay", 3600.0, low=0.0, high=86400.0),
        batch_size=s.integer("batch_size", 32, low=1, high=1000),
        batch_time=s.number("batch_time", 0.25, low=0.01, high=10.0),
        lanes=s.integer("lanes", 1, low=1, high=16),
        processes=s.integer("processes", 2, low=0, high=64),
    )
    s.finish()
    return worker


def intake_section(reader: Reader) -> IntakeConfig:
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
        forwarded_requester=s.boolean("forwarded_requester", True),
    )
    s.finish()
    return intake


def lmtp_section(reader: Reader) -> LmtpConfig:
    s = reader.section("lmtp")
    socket_path = s.string("socket", "")
    lmtp = LmtpConfig(
        enabled=s.boolean("enabled", False),
        host=s.string("host", "127.0.0.1"),
        port=s.integer("port", 2424, low=0, high=65535),
        socket=(reader.base / socket_path) if socket_path else None,
    )
    s.finish()
    return lmtp


def http_section(reader: Reader) -> HttpConfig:
    h = reader.section("http")
    http = HttpConfig(
        enabled=h.boolean("enabled", False),
        host=h.string("host", "127.0.0.1"),
        port=h.integer("port", 9465, low=0, high=65535),
    )
    h.finish()
    return http


def web_section(reader: Reader) -> WebConfig:
    w = reader.section("web")
    public_url = w.string("public_url", "")
    if public_url and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", public_url):
        w.problem("public_url", f"must be an http:// or https:// address, not {public_url!r}")
    web = WebConfig(
        enabled=w.boolean("enabled", True),
        host=w.string("host", "127.0.0.1"),
        port=w.integer("port", 9480, low=0, high=65535),
        public_url=public_url,
        session_hours=w.number("session_hours", 12.0, low=0.1, high=24.0 * 30),
        sign_in_attempts=w.integer("sign_in_attempts", 5, low=1, high=1000),
        link_days=w.number("link_days", 90.0, low=0.0, high=36500.0),
    )
    w.finish()
    return web


def retention_section(reader: Reader) -> float:
    """``purge_archived_after_days`` (0: never)."""
    r = reader.section("retention")
    purge_days = r.number("purge_archived_after_days", 0.0, low=0.0, high=36500.0)
    r.finish()
    return purge_days
