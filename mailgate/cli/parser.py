"""The command line's grammar: every command and its arguments, and nothing a command needs.

``mailgate --help`` answers at once: the commands are imported when they run."""

from __future__ import annotations

import argparse
from typing import TypeAlias

from mailgate import __version__
from mailgate.core.notify import LANGUAGES, Kind


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailgate", description="Email ticket gateway.")
    parser.add_argument(
        "--config", metavar="PATH", help="config file (default: $MAILGATE_CONFIG or ./config.toml)"
    )
    parser.add_argument("--version", action="version", version=f"mailgate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _admin_commands(sub)
    _mail_commands(sub)
    _desk_commands(sub)
    return parser


Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _admin_commands(sub: Commands) -> None:
    """The sysadmin's: check, init, run, migrate, quarantine, outbox, purge, agent."""
    sub.add_parser("check", help="validate the configuration and exit (0 ok, 78 invalid)")
    init = sub.add_parser("init", help="create the data directory, database schema and secret")
    init.add_argument(
        "--adopt-secret",
        action="store_true",
        help="make the current token secret the installation's (after changing it on purpose)",
    )
    sub.add_parser("run", help="run the daemon until SIGTERM/SIGINT")
    migrate = sub.add_parser("migrate", help="upgrade the database schema to this version's")
    migrate.add_argument(
        "--sql",
        action="store_true",
        help="print the SQL that would upgrade the database instead of running it",
    )
    migrate.add_argument(
        "--from",
        dest="since",
        metavar="REVISION",
        help="with --sql: the revision to upgrade from ('base': an empty database); "
        "default: the configured database's",
    )
    quarantine = sub.add_parser("quarantine", help="list quarantined mails, or retry them")
    quarantine.add_argument("--json", action="store_true")
    qsub = quarantine.add_subparsers(dest="quarantine_command", metavar="retry")
    retry = qsub.add_parser("retry", help="re-run quarantined mails")
    retry.add_argument("id", nargs="?", type=int)
    retry.add_argument("--all", action="store_true")
    outbox = sub.add_parser("outbox", help="list outgoing mail, or retry dead mail")
    outbox.add_argument("--json", action="store_true")
    outbox.add_argument("--state", choices=("pending", "sending", "sent", "dead"))
    osub = outbox.add_subparsers(dest="outbox_command", metavar="retry")
    oretry = osub.add_parser("retry", help="put dead mail back in line")
    oretry.add_argument("id", nargs="?", type=int)
    oretry.add_argument("--dead", action="store_true", help="all dead mail")
    purge = sub.add_parser(
        "purge", help="remove raw mails and attachments of long-archived tickets (dry run)"
    )
    purge.add_argument("--archived-older-than", required=True, metavar="AGE", help="365d, 52w, 2y")
    purge.add_argument("--apply", action="store_true", help="remove them (default: only count)")
    purge.add_argument("--json", action="store_true")
    agent = sub.add_parser("agent", help="set or remove an agent's web desk password")
    asub = agent.add_subparsers(dest="agent_command", metavar="add|passwd|remove|list")
    asub.required = True
    for name, text in (
        ("add", "give an agent a password (read from stdin, or asked for)"),
        ("passwd", "change an agent's password"),
        ("remove", "remove an agent's password: no more sign-in"),
    ):
        asub.add_parser(name, help=text).add_argument("address")
    asub.add_parser("list", help="the agents with a password")


def _mail_commands(sub: Commands) -> None:
    """One mail's: ingest (the MTA pipe) and trace."""
    ingest = sub.add_parser("ingest", help="store one raw mail from FILE or stdin (MTA pipe mode)")
    ingest.add_argument("file", nargs="?", default="-", metavar="FILE|-")
    ingest.add_argument(
        "--recipient",
        action="append",
        default=[],
        metavar="ADDR",
        help="envelope recipient (repeatable), as given by the MTA",
    )
    ingest.add_argument("--sender", metavar="ADDR", help="envelope sender, as given by the MTA")
    ingest.add_argument(
        "--now",
        action="store_true",
        help="also apply it here and send what it caused (default: the daemon's worker does)",
    )
    trace = sub.add_parser("trace", help="every decision taken on one mail, and why")
    trace.add_argument("ref", metavar="MESSAGE-ID|SPOOL-ID")
    trace.add_argument("--json", action="store_true")


def _desk_commands(sub: Commands) -> None:
    """The team's: tickets, set, reply, note, show, sla, preview."""
    tickets = sub.add_parser("tickets", help="list tickets, filtered, searched and sorted")
    tickets.add_argument("--json", action="store_true")
    tickets.add_argument("--status", metavar="STATE", help="a state's name or its label")
    tickets.add_argument("--action-by", choices=("support", "customer", "nobody"))
    tickets.add_argument("--assignee", metavar="ADDR")
    tickets.add_argument("--priority", metavar="PRIORITY", help="e.g. high or hoog")
    tickets.add_argument("--type", dest="type_", metavar="TYPE", help="e.g. bug or vraag")
    tickets.add_argument("--queue", metavar="NAME")
    tickets.add_argument("--requester", metavar="ADDR")
    tickets.add_argument("--organisation", metavar="DOMAIN")
    tickets.add_argument("--search", metavar="TEXT", help="in titles and requesters")
    tickets.add_argument(
        "--sort",
        choices=("number", "priority", "type", "updated"),
        default="number",
        help="priority: critical first, then by type (bugs first); updated: latest first",
    )
    setter = sub.add_parser(
        "set", help="change a ticket: status=... priority=... type=... assignee=..."
    )
    setter.add_argument("ref", metavar="REF")
    setter.add_argument("changes", nargs="+", metavar="FIELD=VALUE")
    setter.add_argument("--from", dest="author", metavar="AGENT", help="who makes the change")
    for name, what in (
        ("reply", "answer a ticket as an agent, exactly as if the agent had mailed it"),
        ("note", "add an internal note as an agent (not sent to the customer)"),
    ):
        command = sub.add_parser(name, help=what)
        command.add_argument("ref", metavar="REF")
        command.add_argument("--from", dest="author", required=True, metavar="AGENT")
        command.add_argument("--file", default="-", metavar="F", help="the text (default: stdin)")
    show = sub.add_parser("show", help="show one ticket: #1042, 1042 or its token")
    show.add_argument("ref", metavar="REF")
    show.add_argument("--json", action="store_true")
    show.add_argument(
        "--full", action="store_true", help="mailgate's own notices in full, not one line each"
    )
    sla = sub.add_parser("sla", help="open tickets by nearest deadline, breached first")
    sla.add_argument("--json", action="store_true")
    sla.add_argument("--explain", metavar="REF", help="the calendar arithmetic of one ticket")
    preview = sub.add_parser("preview", help="print a notification as it would be sent")
    preview.add_argument("template", choices=[k.value for k in Kind], metavar="TEMPLATE")
    preview.add_argument("--ticket", required=True, metavar="REF")
    preview.add_argument("--lang", choices=LANGUAGES, default=None)
