"""Find, read and validate config.toml: every problem at once, as one ``ConfigError``."""

from __future__ import annotations

import contextlib
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mailgate.config.basics import (
    addresses_section,
    agents_section,
    database_section,
    general_section,
    http_section,
    intake_section,
    lmtp_section,
    retention_section,
    tokens_section,
    web_section,
    worker_section,
)
from mailgate.config.desk import calendar_section, sla_section, submission_section, workflow_section
from mailgate.config.mail import (
    imap_section,
    outbound_section,
    queues_section,
    smtp_section,
)
from mailgate.config.reader import CREDENTIALS, Reader
from mailgate.config.settings import (
    DEFAULT_CONFIG,
    ENV_CONFIG,
    Config,
)
from mailgate.errors import ConfigError


def resolve_config_path(explicit: str | None, environ: Mapping[str, str]) -> Path:
    """The config file to read: ``--config``, else ``MAILGATE_CONFIG``, else ./config.toml."""
    chosen = explicit or environ.get(ENV_CONFIG) or DEFAULT_CONFIG
    return Path(chosen).expanduser().resolve()


def load_config(
    path: Path,
    environ: Mapping[str, str] | None = None,
    *,
    holidays: bool = True,
    credentials: frozenset[str] = CREDENTIALS,
) -> Config:
    """Read, validate and convert ``path``; raise ``ConfigError`` listing every problem.
    ``holidays=False`` leaves the holiday calendar it names unchecked (and the ``holidays``
    package unloaded): for the MTA pipe, which applies no calendar. ``credentials`` names
    the sections whose passwords must be in the environment (those the command uses)."""
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
    reader = Reader(name, path.parent, document, credentials)
    return _parse(reader, env, path, holidays)


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
        "web",
        "retention",
    }
    for key in sorted(set(document) - known):
        reader.problems.append(f"{name}: [{key}]: unknown section")

    general = general_section(reader)
    database = database_section(reader, environ)
    tokens = tokens_section(reader, environ)
    addresses = addresses_section(reader)
    agents = agents_section(reader)
    worker = worker_section(reader)
    intake = intake_section(reader)
    smtp = smtp_section(reader, environ)
    lmtp = lmtp_section(reader)
    queues = queues_section(reader, document.get("queues"))
    imap = imap_section(reader, document.get("imap"), environ, {q.name for q in queues})
    outbound = outbound_section(reader, environ)
    workflow = workflow_section(reader, document.get("workflow"))
    submission = submission_section(reader)
    calendar = calendar_section(reader, holidays)
    sla = sla_section(reader, calendar)
    http = http_section(reader)
    web = web_section(reader)
    purge_days = retention_section(reader)
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
        web=web,
        purge_archived_after_days=purge_days,
    )


def config_keys() -> set[str]:
    """Every key config.toml may hold, as ``[section] key`` (array tables as ``[[name]]``,
    workflow states as ``[workflow.states.NAME]``): read off the parser itself, so the
    reference in the README can be checked against it."""
    document: dict[str, Any] = {
        "queues": [{"name": "q", "addresses": ["q@example.com"], "team_address": "t@example.com"}],
        "imap": [
            {
                "name": "m",
                "host": "127.0.0.1",
                "username": "u",
                "password_env": "P",
                "auth": "oauth2",
            }
        ],
        "relay": {"auth": "oauth2"},
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
