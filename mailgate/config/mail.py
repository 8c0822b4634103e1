"""The sections about mail going in and out: database, listeners, outbound, mailboxes, queues."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from mailgate.config.reader import ADDRESS, DOMAIN_OR_EMPTY, QUEUE_NAME, Reader, Section, show
from mailgate.config.settings import (
    LANGUAGES,
    ImapConfig,
    OAuth2Config,
    OutboundConfig,
    QueueConfig,
    RelayConfig,
    SmtpAccount,
    SmtpConfig,
)
from mailgate.core.fields import FIELD_NAME, ReferenceField
from mailgate.core.model import PRIORITIES, TICKET_TYPES


def database_url(section: Section, url: str, base: Path) -> str:
    try:
        parsed = make_url(url)
    except ArgumentError:
        section.problem("url", f"not a database URL: {show(url)}")
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
        section.problem("url", f"expected a sqlite or postgresql URL, got {show(backend)}")
    return parsed.render_as_string(hide_password=False)


def smtp_section(reader: Reader, environ: Mapping[str, str]) -> SmtpConfig:
    s = reader.section("smtp")
    raw_accounts = s.table_list("accounts")
    accounts: list[SmtpAccount] = []
    for index, table in enumerate(raw_accounts):
        a = Section(reader, f"[[smtp.accounts]] #{index + 1}", table)
        username = a.string("username", "")
        password_env = a.string("password_env", "")
        a.finish()
        if not username:
            a.problem("username", "required")
        if not password_env:
            a.problem("password_env", "required (the name of an environment variable)")
        elif not environ.get(password_env):
            if "smtp" in reader.credentials:
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
        max_line_length=s.integer("max_line_length", 65536, low=78, high=1_000_000),
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


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def relay_section(reader: Reader, environ: Mapping[str, str]) -> RelayConfig:
    """``[relay]``: where outgoing mail goes, and how mailgate logs in there."""
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
        oauth2=oauth2_settings(r, environ, reader, "relay"),
    )
    r.finish()
    if relay.oauth2 is not None and not relay.username:
        r.problem("username", 'required with auth = "oauth2"')
    if password_env and not relay.password and "relay" in reader.credentials:
        r.problem("password_env", f"environment variable {password_env} is not set")
    if relay.username and not password_env and relay.oauth2 is None:
        r.problem("password_env", "required with username")
    return relay


def outbound_section(reader: Reader, environ: Mapping[str, str]) -> OutboundConfig:
    relay = relay_section(reader, environ)
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
        domain=s.string("domain", "", pattern=DOMAIN_OR_EMPTY),
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
        acknowledge_cc=s.boolean("acknowledge_cc", True),
    )
    s.finish()
    if config.template_dir is not None and not config.template_dir.is_dir():
        s.problem("template_dir", f"no such directory: {config.template_dir}")
    return config


def imap_section(
    reader: Reader, raw: object, environ: Mapping[str, str], queue_names: set[str]
) -> tuple[ImapConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        reader.problems.append(f"{reader.name}: [[imap]]: expected an array of tables")
        return ()
    result: list[ImapConfig] = []
    for index, table in enumerate(raw):
        s = Section(reader, f"[[imap]] #{index + 1}", table)
        mailbox = _mailbox(s, index, environ, reader)
        if mailbox.queue and mailbox.queue not in queue_names:
            s.problem("queue", f"no queue named {show(mailbox.queue)}")
        if mailbox.name in {m.name for m in result}:
            s.problem("name", f"duplicate mailbox name {show(mailbox.name)}")
        result.append(mailbox)
    return tuple(result)


def _mailbox(s: Section, index: int, environ: Mapping[str, str], reader: Reader) -> ImapConfig:
    """One ``[[imap]]`` table, checked on its own."""
    base = reader.base
    name = s.string("name", f"imap{index + 1}", pattern=QUEUE_NAME)
    security = s.string("security", "tls", choices=("tls", "starttls", "none"))
    host = s.string("host", "")
    password_env = s.string("password_env", "")
    ca_file = s.string("ca_file", "")
    mailbox = ImapConfig(
        name=name,
        host=host,
        port=s.integer("port", 993 if security == "tls" else 143, low=1, high=65535),
        security=security,
        username=s.string("username", ""),
        password=environ.get(password_env, "") if password_env else "",
        password_env=password_env,
        ca_file=(base / ca_file) if ca_file else None,
        folder=s.string("folder", "INBOX"),
        processed_folder=s.string("processed_folder", "mailgate/processed"),
        failed_folder=s.string("failed_folder", "mailgate/failed"),
        poll_interval=s.number("poll_interval", 60.0, low=0.2, high=86400.0),
        idle=s.boolean("idle", True),
        idle_renew=s.number("idle_renew", 25 * 60.0, low=1.0, high=29 * 60.0),
        batch_size=s.integer("batch_size", 100, low=1, high=10000),
        timeout=s.number("timeout", 60.0, low=1.0, high=3600.0),
        max_message_size=s.integer("max_message_size", 25 * 1024 * 1024, low=1024, high=2**31),
        queue=s.string("queue", "") or None,
        oauth2=oauth2_settings(s, environ, reader, "imap"),
    )
    s.finish()
    secret = [] if mailbox.oauth2 is not None else [("password_env", password_env)]
    for key, value in (("host", host), ("username", mailbox.username), *secret):
        if not value:
            s.problem(key, "required")
    if password_env and not mailbox.password and "imap" in reader.credentials:
        s.problem("password_env", f"environment variable {password_env} is not set")
    if security == "none" and host and host not in LOOPBACK:
        s.problem("security", '"none" is only allowed for a loopback host')
    if mailbox.ca_file is not None and not mailbox.ca_file.is_file():
        s.problem("ca_file", f"no such file: {mailbox.ca_file}")
    if mailbox.folder in (mailbox.processed_folder, mailbox.failed_folder):
        s.problem("folder", "must differ from processed_folder and failed_folder")
    return mailbox


def queues_section(reader: Reader, raw: object) -> tuple[QueueConfig, ...]:
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
        s = Section(reader, f"[[queues]] #{index + 1}", table)
        queue = QueueConfig(
            name=s.string("name", f"queue{index + 1}", pattern=QUEUE_NAME),
            addresses=tuple(a.lower() for a in s.strings("addresses", (), pattern=ADDRESS)),
            team_address=s.string("team_address", "", pattern=ADDRESS).lower(),
            default_type=s.string("default_type", "question", choices=TICKET_TYPES),
            default_priority=s.string("default_priority", "medium", choices=PRIORITIES),
            language=s.string("language", "nl", choices=LANGUAGES),
            fields=_fields(reader, index, s.table_list("fields")),
        )
        if "name" not in table:
            s.problem("name", "required")
        if not queue.addresses:
            s.problem("addresses", "at least one address is required")
        if not queue.team_address:
            s.problem("team_address", "required")
        if queue.name in seen_names:
            s.problem("name", f"duplicate queue name {show(queue.name)}")
        for address in queue.addresses:
            if address in seen_addresses:
                s.problem("addresses", f"{show(address)} belongs to another queue too")
            seen_addresses.add(address)
        seen_names.add(queue.name)
        s.finish()
        result.append(queue)
    return tuple(result)


def _fields(reader: Reader, queue: int, tables: list[dict[str, Any]]) -> tuple[ReferenceField, ...]:
    """A queue's ``[[queues.fields]]``: name, label, pattern, required."""
    fields: list[ReferenceField] = []
    for index, table in enumerate(tables):
        f = Section(reader, f"[[queues]] #{queue + 1} [[fields]] #{index + 1}", table)
        name = f.string("name", "", pattern=FIELD_NAME)
        label = f.string("label", "") or name
        text = f.string("pattern", "")
        required = f.boolean("required", False)
        f.finish()
        if not name:
            f.problem("name", "required (lower case letters, digits, _)")
        elif name in {x.name for x in fields}:
            f.problem("name", f"duplicate field {show(name)}")
        try:
            pattern = re.compile(text, re.IGNORECASE)
        except re.error as exc:
            f.problem("pattern", f"not a regular expression: {exc}")
            continue
        if not text or pattern.groups > 1:
            f.problem("pattern", "required, with at most one group (the value)")
            continue
        if name:
            fields.append(ReferenceField(name, label, pattern, required))
    return tuple(fields)


def oauth2_settings(
    s: Section, environ: Mapping[str, str], reader: Reader, who: str
) -> OAuth2Config | None:
    """The token source of an ``[[imap]]`` mailbox or the ``[relay]`` with ``auth =
    "oauth2"``: a ``token_command``, Microsoft 365's client credentials (``tenant``,
    ``client_id``, and ``client_secret_env`` or ``client_certificate``), or a Google
    service account with domain-wide delegation (``service_account_file``)."""
    if s.string("auth", "password", choices=("password", "oauth2")) != "oauth2":
        return None
    provider = s.string("token_provider", "command", choices=("command", "microsoft", "google"))
    key_file = s.string("service_account_file", "")
    secret_env = s.string("client_secret_env", "")
    secret_file = s.string("client_secret_file", "")
    certificate = s.string("client_certificate", "")
    secret = environ.get(secret_env, "") if secret_env else ""
    if secret_file:
        try:
            secret = (reader.base / secret_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            s.problem(
                "client_secret_file", f"cannot read {reader.base / secret_file}: {exc.strerror}"
            )
    config = OAuth2Config(
        provider=provider,
        command=s.string("token_command", ""),
        timeout=s.number("token_timeout", 30.0, low=1.0, high=600.0),
        lifetime=s.number("token_lifetime", 3000.0, low=60.0, high=86400.0),
        tenant=s.string("tenant", ""),
        client_id=s.string("client_id", ""),
        client_secret=secret,
        certificate=(reader.base / certificate) if certificate else None,
        authority=s.string("authority", "https://login.microsoftonline.com").rstrip("/"),
        service_account=(reader.base / key_file) if key_file else None,
    )
    if provider == "google" and (config.service_account is None or not key_file):
        s.problem("service_account_file", 'required with token_provider = "google"')
    elif config.service_account is not None and not config.service_account.is_file():
        s.problem("service_account_file", f"no such file: {config.service_account}")
    if provider == "command" and not config.command:
        s.problem("token_command", 'required with auth = "oauth2" (or set token_provider)')
    if provider == "microsoft":
        for key in ("tenant", "client_id"):
            if not getattr(config, key):
                s.problem(key, 'required with token_provider = "microsoft"')
        if [bool(secret_env), bool(secret_file), bool(certificate)].count(True) != 1:
            s.problem(
                "client_secret_env",
                "give one of client_secret_env, client_secret_file, client_certificate",
            )
        elif secret_env and not config.client_secret and who in reader.credentials:
            s.problem("client_secret_env", f"environment variable {secret_env} is not set")
        elif config.certificate is not None and not config.certificate.is_file():
            s.problem("client_certificate", f"no such file: {config.certificate}")
    return config
