"""Turn config.toml and the environment into frozen, validated settings objects.

Every problem is collected and raised together as one ``ConfigError``, each line
naming the file, the key and the reason, so a sysadmin fixes all of them in one
go. Unknown keys are errors: a typo must not pass silently. Relative paths
resolve against the directory of the config file. Secrets never live in the
file; they come from environment variables.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from mailgate.core.model import PRIORITIES, TICKET_TYPES
from mailgate.core.notify import Kind
from mailgate.core.sla import (
    DEFAULT_TARGETS,
    NA,
    TO_AGREE,
    SlaPolicy,
    parse_duration,
    policy_from,
)
from mailgate.core.submission import KeywordRule
from mailgate.core.terms import priority, ticket_type
from mailgate.core.workflow import (
    DEFAULT_WORKFLOW,
    ClosedReply,
    Group,
    Party,
    State,
    Timer,
    Transition,
    Trigger,
    Workflow,
    problems,
)
from mailgate.errors import ConfigError

DEFAULT_CONFIG = "config.toml"
ENV_CONFIG = "MAILGATE_CONFIG"
ENV_DATABASE_URL = "MAILGATE_DATABASE_URL"
ENV_SECRET = "MAILGATE_SECRET"  # noqa: S105 - the variable name, not a secret

_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DOMAIN = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")
_DOMAIN_OR_EMPTY = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)?$")
_PREFIX = re.compile(r"^[A-Za-z0-9]{0,16}$")
_QUEUE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
LANGUAGES = ("nl", "en")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")


@dataclass(frozen=True, slots=True)
class GeneralConfig:
    data_dir: Path
    log_level: str
    log_format: str
    blobs: str = "files"  # files | database


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    url: str
    busy_timeout: float
    echo: bool
    pool_size: int = 5
    max_overflow: int = 5
    statement_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class TokenConfig:
    prefix: str
    secret: bytes | None


@dataclass(frozen=True, slots=True)
class AddressConfig:
    plus_addressing: bool
    plus_separator: str
    case_sensitive_local_part: bool


@dataclass(frozen=True, slots=True)
class AgentConfig:
    domains: tuple[str, ...]
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    poll_interval: float
    retry_delay: float
    max_retry_delay: float
    batch_size: int = 32  # mails applied in one transaction, a savepoint each
    batch_time: float = 0.25  # seconds a batch may hold the write lock before it commits
    lanes: int = 2  # PostgreSQL: batches applied side by side (SQLite has one writer)


@dataclass(frozen=True, slots=True)
class SmtpAccount:
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """The SMTP listener, and the limits that the LMTP listener shares."""

    enabled: bool
    host: str
    port: int
    tls_port: int  # implicit TLS (SMTPS); 0 = off
    hostname: str
    tls_cert: Path | None
    tls_key: Path | None
    require_tls: bool
    auth_required: bool
    accounts: tuple[SmtpAccount, ...]
    max_message_size: int
    max_recipients: int
    max_connections: int
    max_connections_per_ip: int
    connections_per_ip_per_minute: int
    messages_per_ip_per_minute: int
    timeout: float
    data_timeout: float
    max_line_length: int
    shutdown_grace: float


@dataclass(frozen=True, slots=True)
class LmtpConfig:
    enabled: bool
    host: str
    port: int
    socket: Path | None


@dataclass(frozen=True, slots=True)
class ImapConfig:
    """One watched IMAP mailbox."""

    name: str
    host: str
    port: int
    security: str  # tls | starttls | none
    username: str
    password: str = field(repr=False)
    password_env: str
    ca_file: Path | None
    folder: str
    processed_folder: str
    failed_folder: str
    poll_interval: float
    idle: bool
    idle_renew: float
    batch_size: int
    timeout: float
    max_message_size: int
    queue: str | None


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Where outgoing mail goes; no host means the local maildir."""

    host: str
    port: int
    security: str  # starttls | tls | none
    username: str
    password: str = field(repr=False)
    timeout: float


@dataclass(frozen=True, slots=True)
class OutboundConfig:
    from_name: str
    domain: str
    template_dir: Path | None
    maildir: Path
    max_attempts: int
    retry_delay: float
    max_retry_delay: float
    poll_interval: float
    organisation_languages: dict[str, str]
    max_automatic_per_recipient_per_hour: int
    max_automatic_per_ticket_per_hour: int
    max_automatic_per_domain_per_hour: int
    suppress_after_bounce_days: float
    relay: RelayConfig
    claim_timeout: float = 300.0
    keep_sent_days: float = 30.0  # the bytes of a sent mail; its row stays


@dataclass(frozen=True, slots=True)
class IntakeConfig:
    fallback_charsets: tuple[str, ...]
    max_attachment_size: int
    max_attachments_size: int
    max_attachments: int
    max_parts: int
    unknown_sender: str = "hold"  # accept | new_ticket | hold
    trusted_authserv_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class QueueConfig:
    name: str
    addresses: tuple[str, ...]
    team_address: str
    default_type: str
    default_priority: str
    language: str


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """The monitoring endpoint: /healthz and /metrics."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 9465


@dataclass(frozen=True, slots=True)
class CalendarConfig:
    """When the desk works: its zone, workdays, office hours, holidays, closed and half days."""

    timezone: str
    workdays: tuple[int, ...]  # Monday = 0
    closed_days: tuple[date, ...]
    opens: time = time(9, 0)
    closes: time = time(17, 30)
    holidays_country: str = "NL"
    holidays_subdivision: str = ""
    half_days: tuple[tuple[date, time], ...] = ()


@dataclass(frozen=True, slots=True)
class SlaConfig:
    """Answer and solve targets per (type, priority), as written, and the warning share."""

    warn_at: float
    targets: tuple[tuple[str, str, str, str], ...]  # type, priority, answer, solve

    def policy(self) -> SlaPolicy:
        return policy_from({(t, p): (a, s) for t, p, a, s in self.targets}, self.warn_at)


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    general: GeneralConfig
    database: DatabaseConfig
    tokens: TokenConfig
    addresses: AddressConfig
    agents: AgentConfig
    worker: WorkerConfig
    intake: IntakeConfig
    smtp: SmtpConfig
    lmtp: LmtpConfig
    imap: tuple[ImapConfig, ...]
    outbound: OutboundConfig
    queues: tuple[QueueConfig, ...]
    workflow: Workflow = DEFAULT_WORKFLOW
    submission: tuple[KeywordRule, ...] = ()
    calendar: CalendarConfig = CalendarConfig("Europe/Amsterdam", (0, 1, 2, 3, 4), ())
    http: HttpConfig = HttpConfig()
    purge_archived_after_days: float = 0.0  # [retention]; 0 = never automatically
    sla: SlaConfig = SlaConfig(
        0.8, tuple((k[0], k[1], v[0], v[1]) for k, v in DEFAULT_TARGETS.items())
    )

    @property
    def spool_dir(self) -> Path:
        return self.general.data_dir / "spool"

    @property
    def attachment_dir(self) -> Path:
        return self.general.data_dir / "attachments"

    @property
    def secret_file(self) -> Path:
        return self.general.data_dir / "secret"


class _Section:
    """Reads one table of the TOML document, recording problems instead of raising."""

    def __init__(self, reader: _Reader, label: str, table: Mapping[str, Any]) -> None:
        self._reader = reader
        self._label = label
        self._table = table
        self._seen: set[str] = set()

    def _get(self, key: str) -> Any:
        self._seen.add(key)
        self._reader.keys.add(f"{self._label} {key}")
        return self._table.get(key)

    def problem(self, key: str, reason: str) -> None:
        self._reader.problems.append(f"{self._reader.name}: {self._label} {key}: {reason}")

    def string(
        self,
        key: str,
        default: str,
        *,
        choices: tuple[str, ...] = (),
        pattern: re.Pattern[str] | None = None,
    ) -> str:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            self.problem(key, f"expected a string, got {_show(value)}")
            return default
        if choices and value not in choices:
            self.problem(key, f"expected one of {', '.join(choices)}, got {_show(value)}")
            return default
        if pattern is not None and not pattern.match(value):
            self.problem(key, f"invalid value {_show(value)}")
            return default
        return value

    def number(self, key: str, default: float, *, low: float, high: float) -> float:
        value = self._get(key)
        if value is None:
            return default
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            self.problem(key, f"expected a number {low:g}-{high:g}, got {_show(value)}")
            return default
        return float(value)

    def integer(self, key: str, default: int, *, low: int, high: int) -> int:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.problem(key, f"expected an integer {low}-{high}, got {_show(value)}")
            return default
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(key, f"expected true or false, got {_show(value)}")
            return default
        return value

    def strings(
        self, key: str, default: tuple[str, ...], *, pattern: re.Pattern[str] | None = None
    ) -> tuple[str, ...]:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(key, f"expected a list of strings, got {_show(value)}")
            return default
        if pattern is not None:
            bad = [v for v in value if not pattern.match(v)]
            if bad:
                self.problem(key, f"invalid value {_show(bad[0])}")
                return default
        return tuple(value)

    def table_list(self, key: str) -> list[dict[str, Any]]:
        value = self._get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.problem(key, "expected an array of tables")
            return []
        return value

    def path(self, key: str, default: str) -> Path:
        raw = self.string(key, default)
        path = Path(raw).expanduser()
        return path if path.is_absolute() else (self._reader.base / path)

    def finish(self) -> None:
        for key in sorted(set(self._table) - self._seen):
            self.problem(key, "unknown key")


class _Reader:
    def __init__(self, name: str, base: Path, document: Mapping[str, Any]) -> None:
        self.name = name
        self.base = base
        self.document = document
        self.problems: list[str] = []
        self.keys: set[str] = set()  # every "[section] key" read: the schema, as used

    def section(self, name: str) -> _Section:
        table = self.document.get(name, {})
        if not isinstance(table, dict):
            self.problems.append(f"{self.name}: [{name}]: expected a table")
            table = {}
        return _Section(self, f"[{name}]", table)


def _show(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


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
    _reader: _Reader | None = None,
) -> Config:
    """Validate an already-parsed TOML document; all problems at once."""
    reader = _reader or _Reader(name, base, document)
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
        url=_database_url(s, env_url or url, Path.cwd() if env_url else base),
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
        prefix=s.string("prefix", "", pattern=_PREFIX),
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
        domains=tuple(d.lower() for d in s.strings("domains", (), pattern=_DOMAIN)),
        addresses=tuple(a.lower() for a in s.strings("addresses", (), pattern=_ADDRESS)),
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
            s.problem("fallback_charsets", f"unknown charset {_show(charset)}")
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

    smtp = _smtp(reader, environ)
    s = reader.section("lmtp")
    socket_path = s.string("socket", "")
    lmtp = LmtpConfig(
        enabled=s.boolean("enabled", False),
        host=s.string("host", "127.0.0.1"),
        port=s.integer("port", 2424, low=0, high=65535),
        socket=(base / socket_path) if socket_path else None,
    )
    s.finish()

    queues = _queues(reader, document.get("queues"))
    imap = _imap(reader, document.get("imap"), environ, {q.name for q in queues})
    outbound = _outbound(reader, environ)
    workflow = _workflow(reader, document.get("workflow"))
    submission = _submission(reader)
    calendar = _calendar(reader, holidays)
    sla = _sla(reader)
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


def _database_url(section: _Section, url: str, base: Path) -> str:
    try:
        parsed = make_url(url)
    except ArgumentError:
        section.problem("url", f"not a database URL: {_show(url)}")
        return url
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.get_driver_name() != "aiosqlite":
            parsed = parsed.set(drivername="sqlite+aiosqlite")
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            db_path = Path(database).expanduser()
            if not db_path.is_absolute():
                parsed = parsed.set(database=str(base / db_path))
    elif backend == "postgresql":
        if parsed.get_driver_name() != "asyncpg":
            parsed = parsed.set(drivername="postgresql+asyncpg")
    else:
        section.problem("url", f"expected a sqlite or postgresql URL, got {_show(backend)}")
    return parsed.render_as_string(hide_password=False)


def _smtp(reader: _Reader, environ: Mapping[str, str]) -> SmtpConfig:
    s = reader.section("smtp")
    raw_accounts = s.table_list("accounts")
    accounts: list[SmtpAccount] = []
    for index, table in enumerate(raw_accounts):
        a = _Section(reader, f"[[smtp.accounts]] #{index + 1}", table)
        username = a.string("username", "")
        password_env = a.string("password_env", "")
        a.finish()
        if not username:
            a.problem("username", "required")
        if not password_env:
            a.problem("password_env", "required (the name of an environment variable)")
        elif not environ.get(password_env):
            a.problem("password_env", f"environment variable {password_env} is not set")
        else:
            accounts.append(SmtpAccount(username, environ[password_env]))
    cert = s.string("tls_cert", "")
    key = s.string("tls_key", "")
    config = SmtpConfig(
        enabled=s.boolean("enabled", True),
        host=s.string("host", "127.0.0.1"),
        port=s.integer("port", 2525, low=0, high=65535),
        tls_port=s.integer("tls_port", 0, low=0, high=65535),
        hostname=s.string("hostname", ""),
        tls_cert=(reader.base / cert) if cert else None,
        tls_key=(reader.base / key) if key else None,
        require_tls=s.boolean("require_tls", False),
        auth_required=s.boolean("auth_required", False),
        accounts=tuple(accounts),
        max_message_size=s.integer("max_message_size", 25 * 1024 * 1024, low=1024, high=2**31),
        max_recipients=s.integer("max_recipients", 50, low=1, high=10000),
        max_connections=s.integer("max_connections", 100, low=1, high=100000),
        max_connections_per_ip=s.integer("max_connections_per_ip", 20, low=1, high=100000),
        connections_per_ip_per_minute=s.integer(
            "connections_per_ip_per_minute", 120, low=1, high=10**6
        ),
        messages_per_ip_per_minute=s.integer("messages_per_ip_per_minute", 240, low=1, high=10**6),
        timeout=s.number("timeout", 300.0, low=1.0, high=3600.0),
        data_timeout=s.number("data_timeout", 600.0, low=1.0, high=86400.0),
        max_line_length=s.integer("max_line_length", 1000, low=78, high=1_000_000),
        shutdown_grace=s.number("shutdown_grace", 30.0, low=0.0, high=3600.0),
    )
    s.finish()
    if (config.tls_cert is None) != (config.tls_key is None):
        s.problem("tls_cert", "tls_cert and tls_key go together")
    for name, path in (("tls_cert", config.tls_cert), ("tls_key", config.tls_key)):
        if path is not None and not path.is_file():
            s.problem(name, f"no such file: {path}")
    if config.tls_port and config.tls_cert is None:
        s.problem("tls_port", "implicit TLS needs tls_cert and tls_key")
    if (config.require_tls or config.auth_required) and config.tls_cert is None:
        s.problem(
            "require_tls" if config.require_tls else "auth_required",
            "needs tls_cert and tls_key (AUTH is only offered over TLS)",
        )
    if config.auth_required and not config.accounts:
        s.problem("auth_required", "needs at least one [[smtp.accounts]] entry")
    return config


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _outbound(reader: _Reader, environ: Mapping[str, str]) -> OutboundConfig:
    r = reader.section("relay")
    security = r.string("security", "starttls", choices=("starttls", "tls", "none"))
    password_env = r.string("password_env", "")
    relay = RelayConfig(
        host=r.string("host", ""),
        port=r.integer("port", 465 if security == "tls" else 587, low=1, high=65535),
        security=security,
        username=r.string("username", ""),
        password=environ.get(password_env, "") if password_env else "",
        timeout=r.number("timeout", 60.0, low=1.0, high=3600.0),
    )
    r.finish()
    if password_env and not relay.password:
        r.problem("password_env", f"environment variable {password_env} is not set")
    if relay.username and not password_env:
        r.problem("password_env", "required with username")
    s = reader.section("outbound")
    template_dir = s.string("template_dir", "")
    languages = s._get("organisation_languages") or {}
    if not isinstance(languages, dict) or not all(
        isinstance(v, str) and v in LANGUAGES for v in languages.values()
    ):
        s.problem("organisation_languages", f"expected a table of domain = one of {LANGUAGES}")
        languages = {}
    config = OutboundConfig(
        from_name=s.string("from_name", "Support"),
        domain=s.string("domain", "", pattern=_DOMAIN_OR_EMPTY),
        template_dir=(reader.base / template_dir) if template_dir else None,
        maildir=s.path("maildir", "var/outbox-maildir"),
        max_attempts=s.integer("max_attempts", 8, low=1, high=100),
        retry_delay=s.number("retry_delay", 60.0, low=0.0, high=86400.0),
        max_retry_delay=s.number("max_retry_delay", 3600.0, low=0.0, high=86400.0),
        poll_interval=s.number("poll_interval", 2.0, low=0.05, high=3600.0),
        organisation_languages={str(k).lower(): str(v) for k, v in languages.items()},
        max_automatic_per_recipient_per_hour=s.integer(
            "max_automatic_per_recipient_per_hour", 10, low=1, high=10000
        ),
        max_automatic_per_ticket_per_hour=s.integer(
            "max_automatic_per_ticket_per_hour", 20, low=1, high=10000
        ),
        max_automatic_per_domain_per_hour=s.integer(
            "max_automatic_per_domain_per_hour", 50, low=1, high=100000
        ),
        keep_sent_days=s.number("keep_sent_days", 30.0, low=0.0, high=36500.0),
        suppress_after_bounce_days=s.number(
            "suppress_after_bounce_days", 7.0, low=0.0, high=3650.0
        ),
        relay=relay,
        claim_timeout=s.number("claim_timeout", 300.0, low=1.0, high=86400.0),
    )
    s.finish()
    if config.template_dir is not None and not config.template_dir.is_dir():
        s.problem("template_dir", f"no such directory: {config.template_dir}")
    return config


def _imap(
    reader: _Reader, raw: object, environ: Mapping[str, str], queue_names: set[str]
) -> tuple[ImapConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        reader.problems.append(f"{reader.name}: [[imap]]: expected an array of tables")
        return ()
    result: list[ImapConfig] = []
    names: set[str] = set()
    for index, table in enumerate(raw):
        s = _Section(reader, f"[[imap]] #{index + 1}", table)
        name = s.string("name", f"imap{index + 1}", pattern=_QUEUE_NAME)
        security = s.string("security", "tls", choices=("tls", "starttls", "none"))
        host = s.string("host", "")
        password_env = s.string("password_env", "")
        ca_file = s.string("ca_file", "")
        queue = s.string("queue", "")
        mailbox = ImapConfig(
            name=name,
            host=host,
            port=s.integer("port", 993 if security == "tls" else 143, low=1, high=65535),
            security=security,
            username=s.string("username", ""),
            password=environ.get(password_env, "") if password_env else "",
            password_env=password_env,
            ca_file=(reader.base / ca_file) if ca_file else None,
            folder=s.string("folder", "INBOX"),
            processed_folder=s.string("processed_folder", "mailgate/processed"),
            failed_folder=s.string("failed_folder", "mailgate/failed"),
            poll_interval=s.number("poll_interval", 60.0, low=0.2, high=86400.0),
            idle=s.boolean("idle", True),
            idle_renew=s.number("idle_renew", 25 * 60.0, low=1.0, high=29 * 60.0),
            batch_size=s.integer("batch_size", 100, low=1, high=10000),
            timeout=s.number("timeout", 60.0, low=1.0, high=3600.0),
            max_message_size=s.integer("max_message_size", 25 * 1024 * 1024, low=1024, high=2**31),
            queue=queue or None,
        )
        s.finish()
        for key, value in (
            ("host", host),
            ("username", mailbox.username),
            ("password_env", password_env),
        ):
            if not value:
                s.problem(key, "required")
        if password_env and not mailbox.password:
            s.problem("password_env", f"environment variable {password_env} is not set")
        if security == "none" and host and host not in _LOOPBACK:
            s.problem("security", '"none" is only allowed for a loopback host')
        if mailbox.ca_file is not None and not mailbox.ca_file.is_file():
            s.problem("ca_file", f"no such file: {mailbox.ca_file}")
        if queue and queue not in queue_names:
            s.problem("queue", f"no queue named {_show(queue)}")
        if name in names:
            s.problem("name", f"duplicate mailbox name {_show(name)}")
        names.add(name)
        if mailbox.folder in (mailbox.processed_folder, mailbox.failed_folder):
            s.problem("folder", "must differ from processed_folder and failed_folder")
        result.append(mailbox)
    return tuple(result)


def _queues(reader: _Reader, raw: object) -> tuple[QueueConfig, ...]:
    name = reader.name
    if raw is None:
        reader.problems.append(f"{name}: [[queues]]: at least one queue is required")
        return ()
    if not isinstance(raw, list) or not all(isinstance(q, dict) for q in raw):
        reader.problems.append(f"{name}: [[queues]]: expected an array of tables")
        return ()
    result: list[QueueConfig] = []
    seen_names: set[str] = set()
    seen_addresses: set[str] = set()
    for index, table in enumerate(raw):
        s = _Section(reader, f"[[queues]] #{index + 1}", table)
        queue = QueueConfig(
            name=s.string("name", f"queue{index + 1}", pattern=_QUEUE_NAME),
            addresses=tuple(a.lower() for a in s.strings("addresses", (), pattern=_ADDRESS)),
            team_address=s.string("team_address", "", pattern=_ADDRESS).lower(),
            default_type=s.string("default_type", "question", choices=TICKET_TYPES),
            default_priority=s.string("default_priority", "medium", choices=PRIORITIES),
            language=s.string("language", "nl", choices=LANGUAGES),
        )
        if "name" not in table:
            s.problem("name", "required")
        if not queue.addresses:
            s.problem("addresses", "at least one address is required")
        if not queue.team_address:
            s.problem("team_address", "required")
        if queue.name in seen_names:
            s.problem("name", f"duplicate queue name {_show(queue.name)}")
        for address in queue.addresses:
            if address in seen_addresses:
                s.problem("addresses", f"{_show(address)} belongs to another queue too")
            seen_addresses.add(address)
        seen_names.add(queue.name)
        s.finish()
        result.append(queue)
    return tuple(result)


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _calendar(reader: _Reader, check_holidays: bool) -> CalendarConfig:
    s = reader.section("calendar")
    zone = s.string("timezone", "Europe/Amsterdam")
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        s.problem("timezone", f"unknown time zone {_show(zone)}")
        zone = "Europe/Amsterdam"
    days = s.strings("workdays", _WEEKDAYS[:5])
    bad = [d for d in days if d.lower() not in _WEEKDAYS]
    if bad:
        s.problem("workdays", f"expected day names {', '.join(_WEEKDAYS)}, got {_show(bad[0])}")
    closed: list[date] = []
    for text in s.strings("closed_days", ()):
        try:
            closed.append(date.fromisoformat(text))
        except ValueError:
            s.problem("closed_days", f"expected YYYY-MM-DD, got {_show(text)}")
    opens = _clock_time(s, "opens", "09:00")
    closes = _clock_time(s, "closes", "17:30")
    if closes <= opens:
        s.problem("closes", "must be later than opens")
    country = s.string("holidays_country", "NL")
    subdivision = s.string("holidays_subdivision", "")
    if country and check_holidays:
        import holidays

        try:
            holidays.country_holidays(country, subdiv=subdivision or None, years=2026)
        except (NotImplementedError, KeyError) as exc:
            s.problem("holidays_country", f"no holiday calendar for {_show(country)}: {exc}")
    half: list[tuple[date, time]] = []
    raw_half = s._get("half_days") or {}
    if not isinstance(raw_half, dict):
        s.problem("half_days", 'expected a table of "YYYY-MM-DD" = "HH:MM"')
        raw_half = {}
    for key, value in raw_half.items():
        try:
            half.append((date.fromisoformat(str(key)), time.fromisoformat(str(value))))
        except ValueError:
            s.problem("half_days", f'expected "YYYY-MM-DD" = "HH:MM", got {_show(key)}')
    s.finish()
    workdays = tuple(sorted({_WEEKDAYS.index(d.lower()) for d in days if d.lower() in _WEEKDAYS}))
    if not workdays:
        s.problem("workdays", "at least one working day is required")
    return CalendarConfig(
        zone, workdays, tuple(closed), opens, closes, country, subdivision, tuple(half)
    )


def _clock_time(s: _Section, key: str, default: str) -> time:
    text = s.string(key, default)
    try:
        return time.fromisoformat(text)
    except ValueError:
        s.problem(key, f'expected "HH:MM", got {_show(text)}')
        return time.fromisoformat(default)


def _sla(reader: _Reader) -> SlaConfig:
    s = reader.section("sla")
    warn_at = s.number("warn_at", 0.8, low=0.05, high=0.99)
    table = dict(DEFAULT_TARGETS)
    raw = s._get("targets")
    if raw is not None:
        if not isinstance(raw, dict):
            s.problem("targets", "expected a table of type = { priority = [answer, solve] }")
            raw = {}
        for kind, row in raw.items():
            key = f"targets.{kind}"
            if kind not in TICKET_TYPES:
                s.problem(key, f"unknown type; known: {', '.join(TICKET_TYPES)}")
                continue
            if not isinstance(row, dict):
                s.problem(key, "expected a table of priority = [answer, solve]")
                continue
            for level, pair in row.items():
                where = f"{key}.{level}"
                if level not in PRIORITIES:
                    s.problem(where, f"unknown priority; known: {', '.join(PRIORITIES)}")
                    continue
                if (
                    not isinstance(pair, list)
                    or len(pair) != 2
                    or not all(isinstance(v, str) for v in pair)
                ):
                    s.problem(where, 'expected ["answer", "solve"], e.g. ["24 hours", "2 days"]')
                    continue
                for value in pair:
                    if value.lower() not in (NA, TO_AGREE) and parse_duration(value) is None:
                        s.problem(
                            where,
                            f"{_show(value)} is not a duration (hours, days, weeks, months), "
                            '"n/a" or "to agree"',
                        )
                table[(kind, level)] = (pair[0], pair[1])
    s.finish()
    return SlaConfig(warn_at, tuple((k[0], k[1], v[0], v[1]) for k, v in table.items()))


def _submission(reader: _Reader) -> tuple[KeywordRule, ...]:
    s = reader.section("submission")
    rules: list[KeywordRule] = []
    for index, table in enumerate(s.table_list("keywords")):
        r = _Section(reader, f"[[submission.keywords]] #{index + 1}", table)
        phrases = r.strings("match", ())
        kind = r.string("type", "")
        level = r.string("priority", "")
        r.finish()
        if not phrases:
            r.problem("match", "at least one phrase is required")
        if kind and ticket_type(kind) is None:
            r.problem("type", f"expected one of {', '.join(TICKET_TYPES)}, got {_show(kind)}")
        if level and priority(level) is None:
            r.problem("priority", f"expected one of {', '.join(PRIORITIES)}, got {_show(level)}")
        if not kind and not level:
            r.problem("type", "a rule needs a type, a priority or both")
        rules.append(
            KeywordRule(
                tuple(p.lower() for p in phrases),
                ticket_type(kind) if kind else None,
                priority(level) if level else None,
            )
        )
    s.finish()
    return tuple(rules)


def _workflow(reader: _Reader, raw: object) -> Workflow:
    """``[workflow]``: each of its parts defaults to the shipped workflow's."""
    if raw is None:
        return DEFAULT_WORKFLOW
    s = reader.section("workflow")
    default = DEFAULT_WORKFLOW
    initial = s.string("initial", default.initial)
    reply_to_closed = ClosedReply(
        s.string(
            "reply_to_closed",
            default.reply_to_closed.value,
            choices=tuple(c.value for c in ClosedReply),
        )
    )
    reopen_to = s.string("reopen_to", default.reopen_to)
    states = default.states
    raw_states = s._get("states")
    if raw_states is not None:
        if not isinstance(raw_states, dict) or not all(
            isinstance(v, dict) for v in raw_states.values()
        ):
            s.problem("states", "expected a table of state = { group, nl, en, next }")
        else:
            parsed: list[State] = []
            for name, table in raw_states.items():
                t = _Section(reader, f"[workflow.states.{name}]", table)
                group = t.string("group", "support", choices=tuple(g.value for g in Group))
                if "group" not in table:
                    t.problem("group", "required")
                parsed.append(
                    State(
                        str(name),
                        Group(group),
                        t.string("nl", str(name)),
                        t.string("en", str(name)),
                        t.strings("next", ()),
                    )
                )
                t.finish()
            states = tuple(parsed)
    transitions = default.transitions
    if s._get("transitions") is not None:
        parsed_rules: list[Transition] = []
        for index, table in enumerate(s.table_list("transitions")):
            t = _Section(reader, f"[[workflow.transitions]] #{index + 1}", table)
            on = t.string("on", "", choices=tuple(x.value for x in Trigger))
            if "on" not in table:
                t.problem("on", "required")
            parsed_rules.append(
                Transition(
                    Trigger(on) if on else Trigger.CUSTOMER_REPLY,
                    t.strings("from", ()),
                    t.string("to", ""),
                    t.string("template", ""),
                    Party(t.string("notify", "customer", choices=tuple(a.value for a in Party))),
                )
            )
            t.finish()
        transitions = tuple(parsed_rules)
    timers = default.timers
    if s._get("timers") is not None:
        parsed_timers: list[Timer] = []
        for index, table in enumerate(s.table_list("timers")):
            t = _Section(reader, f"[[workflow.timers]] #{index + 1}", table)
            fire = t.string("fire", "", choices=tuple(x.value for x in Trigger))
            for key in ("state", "after_days", "fire"):
                if key not in table:
                    t.problem(key, "required")
            parsed_timers.append(
                Timer(
                    t.string("state", ""),
                    t.number("after_days", 1.0, low=0.0, high=3650.0),
                    Trigger(fire) if fire else Trigger.REMIND,
                    t.boolean("business_days", True),
                )
            )
            t.finish()
        timers = tuple(parsed_timers)
    s.finish()
    workflow = Workflow(initial, states, transitions, timers, reply_to_closed, reopen_to)
    for problem in problems(workflow, (k.value for k in Kind)):
        reader.problems.append(f"{reader.name}: [workflow] {problem}")
    return workflow


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
    reader = _Reader("config.toml", Path(), document)
    with contextlib.suppress(ConfigError):  # incomplete on purpose; every key is read anyway
        parse_config(document, name="config.toml", base=Path(), environ={"P": "x"}, _reader=reader)
    found = set()
    for key in reader.keys:
        label, _, name = key.rpartition(" ")
        label = re.sub(r" #\d+$", "", label)
        label = re.sub(r"^\[workflow\.states\.[^\]]+\]$", "[workflow.states.NAME]", label)
        found.add(f"{label} {name}")
    return found
