"""The ``mailgate`` command line: parse, load the configuration, hand over to the command.

Each command lives in the module of its group (``cli.pipe``, ``cli.check``, ``cli.mail``,
``cli.desk``, ``cli.sla``, ``cli.admin``)
and is imported only when it runs, so that a command imports what it needs and no more:
``--help`` no database code, the MTA pipe no web, IMAP or calendar code. Exit codes
follow sysexits(3) (``cli.output``): 0 done, 1 not found or failed, 65 the mail is
unusable, 75 a temporary failure, retry later, 78 the configuration is wrong.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from mailgate.cli.output import EX_CONFIG, EX_FAILED, EX_OK, EX_TEMPFAIL
from mailgate.cli.parser import build_parser

if TYPE_CHECKING:
    import argparse

    from mailgate.config import Config

# command -> (module of mailgate.cli, function): imported when the command runs.
COMMANDS = {
    "init": ("admin", "init"),
    "run": ("admin", "run"),
    "purge": ("admin", "purge"),
    "quarantine": ("admin", "quarantine"),
    "outbox": ("admin", "outbox"),
    "trace": ("mail", "trace"),
    "tickets": ("desk", "tickets"),
    "show": ("desk", "show"),
    "set": ("desk", "change"),
    "reply": ("desk", "reply"),
    "note": ("desk", "reply"),
    "sla": ("sla", "sla"),
    "preview": ("desk", "preview"),
    "agent": ("agents", "agent"),
}
_LEVELS = ("debug", "info", "warning", "error")
# Commands whose log is the record of a service (the daemon; the MTA pipe, whose stderr the
# MTA keeps); the others are a person at a terminal, who wants the result, not the trace.
_LOGGING_COMMANDS = frozenset({"run", "ingest"})


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None) -> int:
    """Run one command; its exit code. Output cut short by its reader (``mailgate outbox |
    head``) ends the command quietly, as it does for any Unix tool."""
    out = stdout or sys.stdout
    try:
        return _main(argv, out)
    except BrokenPipeError:
        if out is sys.stdout:  # nothing more may reach the closed pipe, not even at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EX_OK


def _main(argv: Sequence[str] | None, out: TextIO) -> int:
    # Raw mails, tickets and the token secret are private to mailgate's user, however it is
    # started (the systemd unit sets the same umask).
    os.umask(0o077)
    parser = build_parser()
    args = parser.parse_args(argv)
    if (
        args.command == "quarantine"
        and args.quarantine_command == "retry"
        and ((args.id is None) == (not args.all))
    ):
        parser.error("quarantine retry takes either an ID or --all")
    from mailgate.config import load_config, resolve_config_path
    from mailgate.errors import ConfigError, MailgateError, SchemaMismatch
    from mailgate.log import configure

    try:
        path = resolve_config_path(args.config, os.environ)
        config = load_config(
            path,
            holidays=args.command != "ingest" or args.now,
            credentials=_credentials(args),
        )
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EX_CONFIG
    configure(_log_level(args.command, config.general.log_level), config.general.log_format)
    try:
        return _dispatch(config, args, out)
    except (ConfigError, SchemaMismatch) as exc:
        for problem in exc.problems if isinstance(exc, ConfigError) else [f"mailgate: {exc}"]:
            print(problem, file=sys.stderr)
        return EX_CONFIG
    except MailgateError as exc:
        print(f"mailgate: {exc}", file=sys.stderr)
        if args.command == "ingest":
            from mailgate.cli.output import print_json

            print_json(out, {"action": "failed", "ticket": None, "reason": str(exc)})
        if exc.temporary:
            return EX_TEMPFAIL
        return EX_FAILED
    except KeyboardInterrupt:
        return EX_OK


def _dispatch(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    """Run the command: the few that need no application first, each importing only what
    it uses."""
    import asyncio

    if args.command == "check":
        from mailgate.cli.check import check

        return check(config, out)
    if args.command == "migrate":
        from mailgate.cli.admin import migrate

        return asyncio.run(migrate(config, args, out))
    if args.command == "ingest":
        from mailgate.cli.pipe import ingest

        return asyncio.run(ingest(config, args, out))
    from mailgate.cli.service import with_app

    module, name = COMMANDS[args.command]
    handler = getattr(importlib.import_module(f"mailgate.cli.{module}"), name)
    adopt = bool(getattr(args, "adopt_secret", False))
    return asyncio.run(with_app(config, lambda app: handler(app, args, out), adopt_secret=adopt))


# Commands that may send mail (through the relay) besides the daemon (and `ingest --now`).
_SENDING = frozenset({"reply", "note", "set"})


def _credentials(args: argparse.Namespace) -> frozenset[str]:
    """Whose passwords the command needs from the environment: the daemon and ``check``
    all; a command that may send mail (a retry too) the relay's; the rest (listing,
    showing, tracing) none, so a sysadmin's shell need not hold the daemon's passwords."""
    from mailgate.config.reader import CREDENTIALS

    command = args.command
    if command in ("run", "check"):
        return CREDENTIALS
    retry = "retry" in (
        getattr(args, "outbox_command", None),
        getattr(args, "quarantine_command", None),
    )
    now = command == "ingest" and args.now  # the MTA's pipe stores only: it needs none
    return CREDENTIALS & {"relay"} if command in _SENDING or retry or now else frozenset()


def _log_level(command: str, configured: str) -> str:
    """The configured level for the daemon and the pipe; at least "warning" otherwise."""
    if command in _LOGGING_COMMANDS:
        return configured
    return max(configured, "warning", key=_LEVELS.index)
