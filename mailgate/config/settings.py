"""The settings, as the rest of mailgate reads them: frozen dataclasses, one per section."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path

from mailgate.core.fields import ReferenceField
from mailgate.core.sla import (
    DEFAULT_TARGETS,
    SlaPolicy,
    policy_from,
)
from mailgate.core.submission import KeywordRule
from mailgate.core.workflow import (
    DEFAULT_WORKFLOW,
    Workflow,
)

DEFAULT_CONFIG = "config.toml"


ENV_CONFIG = "MAILGATE_CONFIG"


ENV_DATABASE_URL = "MAILGATE_DATABASE_URL"


ENV_SECRET = "MAILGATE_SECRET"  # noqa: S105 - the variable name, not a secret


LANGUAGES = ("nl", "en")


LOG_LEVELS = ("debug", "info", "warning", "error")


LOG_FORMATS = ("auto", "json", "console")


@dataclass(frozen=True, slots=True)
class GeneralConfig:
    data_dir: Path
    log_level: str
    log_format: str
    blobs: str = "files"  # files | database
    files_from: int = 65536  # blobs = files: smaller blobs stay in the database


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
    lanes: int = 1  # PostgreSQL: batches applied side by side (SQLite has one writer)
    processes: int = 2  # PostgreSQL: worker processes; SQLite: parsing processes (0: none)


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
class OAuth2Config:
    """Where a mailbox's or the relay's access tokens come from (``auth = "oauth2"``)."""

    provider: str  # command | microsoft | google
    command: str = field(default="", repr=False)  # command: prints a token
    timeout: float = 30.0  # seconds a token may take to come
    lifetime: float = 3000.0  # seconds a bare printed token is kept
    tenant: str = ""  # microsoft: the directory (tenant) id or domain
    client_id: str = ""  # microsoft: the app registration's id
    client_secret: str = field(default="", repr=False)  # microsoft: from the environment
    certificate: Path | None = None  # microsoft: PEM with the private key and certificate
    authority: str = "https://login.microsoftonline.com"
    service_account: Path | None = None  # google: the service account's JSON key file


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
    oauth2: OAuth2Config | None = None  # ``auth = "oauth2"``: SASL XOAUTH2 with a token


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Where outgoing mail goes; no host means the local maildir."""

    host: str
    port: int
    security: str  # starttls | tls | none
    username: str
    password: str = field(repr=False)
    timeout: float
    oauth2: OAuth2Config | None = None  # ``auth = "oauth2"``: AUTH XOAUTH2 with a token


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
    acknowledge_cc: bool = True  # the people in Cc of a new ticket's mail are acknowledged too


@dataclass(frozen=True, slots=True)
class IntakeConfig:
    fallback_charsets: tuple[str, ...]
    max_attachment_size: int
    max_attachments_size: int
    max_attachments: int
    max_parts: int
    unknown_sender: str = "hold"  # accept | new_ticket | hold
    trusted_authserv_ids: tuple[str, ...] = ()
    forwarded_requester: bool = True  # an agent's forward opens the ticket for the customer


@dataclass(frozen=True, slots=True)
class QueueConfig:
    name: str
    addresses: tuple[str, ...]
    team_address: str
    default_type: str
    default_priority: str
    language: str
    fields: tuple[ReferenceField, ...] = ()  # the identifiers this queue's customers give


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """The monitoring endpoint: /healthz and /metrics."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 9465


@dataclass(frozen=True, slots=True)
class WebConfig:
    """The web desk: the team's pages (signed in) and each customer's status page (by link)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9480
    public_url: str = ""  # how people reach it ("https://desk.example.com"); "": http://host:port
    session_hours: float = 12.0  # a sign-in lasts this long
    sign_in_attempts: int = 5  # failed sign-ins per address, and per client, per 15 minutes
    link_days: float = 90.0  # a customer's link works until its ticket is archived this long

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def secure(self) -> bool:
        """Whether people reach it over TLS (a proxy in front): cookies are then Secure."""
        return self.base_url.startswith("https://")


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
    web: WebConfig = WebConfig()
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
