"""``mailgate agent``: the web desk's passwords of the team's agents (add, passwd, remove, list).

The password is read from standard input when it is not a terminal (one line; for
scripts and configuration management), else asked for twice without echo. Only an
address that ``[agents]`` makes an agent gets one; ``remove`` signs the agent out of
the web desk at their next request.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TextIO

from sqlalchemy import Connection

from mailgate.app import App
from mailgate.cli.output import EX_FAILED, EX_OK, at
from mailgate.store.db import storage_errors
from mailgate.store.repos.agents import AgentRepo
from mailgate.web.auth import Passwords, weak


def _password() -> str | None:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        print("mailgate: the two passwords differ", file=sys.stderr)
        return None
    return first


async def agent(app: App, args: argparse.Namespace, out: TextIO) -> int:
    command = args.agent_command
    if command == "list":
        with storage_errors("agents"):
            found = await app.blocking.read(lambda conn: AgentRepo(conn).with_password())
        for address, changed in found:
            print(f"{address}  password set {at(app.desk.calendar.zone, changed)}", file=out)
        if not found:
            print("no agent has a web desk password", file=out)
        return EX_OK
    address = args.address.strip().lower()
    if command == "remove":

        def remove(conn: Connection) -> bool:
            return AgentRepo(conn).remove(address)

        with storage_errors("agents"):
            gone = await app.blocking.write(remove)
        print(f"{address}: {'password removed' if gone else 'had no password'}", file=out)
        return EX_OK
    if not app.policy.is_agent(address):
        print(f"mailgate: {address} is not an agent ([agents] in config.toml)", file=sys.stderr)
        return EX_FAILED
    password = _password()
    if password is None:
        return EX_FAILED
    if (why := weak(password)) is not None:
        print(f"mailgate: {why}", file=sys.stderr)
        return EX_FAILED
    with storage_errors("agents"):
        new = await Passwords(app.blocking).set(address, password, app.clock.now())
    if command == "add" and not new:
        print(f"{address}: password changed (the agent had one)", file=out)
    else:
        print(f"{address}: password {'set' if new else 'changed'}", file=out)
    return EX_OK
