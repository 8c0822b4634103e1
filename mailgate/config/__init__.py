"""Turn config.toml and the environment into frozen, validated settings objects.

Every problem is collected and raised together as one ``ConfigError``, each line
naming the file, the key and the reason, so a sysadmin fixes all of them in one
go. Unknown keys are errors: a typo must not pass silently. Relative paths
resolve against the directory of the config file. Secrets never live in the
file; they come from environment variables. Three layers: ``settings`` (what the
rest of mailgate reads), ``reader`` (reading a table key by key), and the section
parsers (``mail``, ``desk``) that ``load`` runs over a document.
"""

from mailgate.config.load import config_keys, load_config, parse_config, resolve_config_path
from mailgate.config.settings import (
    DEFAULT_CONFIG,
    ENV_CONFIG,
    ENV_DATABASE_URL,
    ENV_SECRET,
    LANGUAGES,
    AddressConfig,
    AgentConfig,
    CalendarConfig,
    Config,
    DatabaseConfig,
    GeneralConfig,
    HttpConfig,
    ImapConfig,
    IntakeConfig,
    LmtpConfig,
    OAuth2Config,
    OutboundConfig,
    QueueConfig,
    RelayConfig,
    SlaConfig,
    SmtpAccount,
    SmtpConfig,
    TokenConfig,
    WebConfig,
    WorkerConfig,
)

__all__ = [
    "DEFAULT_CONFIG",
    "ENV_CONFIG",
    "ENV_DATABASE_URL",
    "ENV_SECRET",
    "LANGUAGES",
    "AddressConfig",
    "AgentConfig",
    "CalendarConfig",
    "Config",
    "DatabaseConfig",
    "GeneralConfig",
    "HttpConfig",
    "ImapConfig",
    "IntakeConfig",
    "LmtpConfig",
    "OAuth2Config",
    "OutboundConfig",
    "QueueConfig",
    "RelayConfig",
    "SlaConfig",
    "SmtpAccount",
    "SmtpConfig",
    "TokenConfig",
    "WebConfig",
    "WorkerConfig",
    "config_keys",
    "load_config",
    "parse_config",
    "resolve_config_path",
]
