"""Repositories per aggregate (spool, tickets, timers, outbox) over one connection.

Blocking, one transaction's (``Tx``); ``Repo`` is the shell's async view of one session
for the command line and the HTTP endpoints.

The names are loaded when first used, so that importing one repository (the spool's, for
the MTA pipe) does not import the others."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mailgate.store.repos.outbox import (
        OUTBOX_DEAD,
        OUTBOX_PENDING,
        OUTBOX_SENDING,
        OUTBOX_SENT,
    )
    from mailgate.store.repos.received import spool_add_rows, spool_add_sqlite, sqlite_timestamp
    from mailgate.store.repos.shell import Repo
    from mailgate.store.repos.spool import DONE, PENDING, QUARANTINED
    from mailgate.store.repos.timers import SLA_PREFIX
    from mailgate.store.repos.tx import Tx

_WHERE = {
    "OUTBOX_DEAD": "outbox",
    "OUTBOX_PENDING": "outbox",
    "OUTBOX_SENDING": "outbox",
    "OUTBOX_SENT": "outbox",
    "Repo": "shell",
    "DONE": "spool",
    "PENDING": "spool",
    "QUARANTINED": "spool",
    "spool_add_rows": "received",
    "spool_add_sqlite": "received",
    "sqlite_timestamp": "received",
    "SLA_PREFIX": "timers",
    "Tx": "tx",
}
__all__ = [
    "DONE",
    "OUTBOX_DEAD",
    "OUTBOX_PENDING",
    "OUTBOX_SENDING",
    "OUTBOX_SENT",
    "PENDING",
    "QUARANTINED",
    "SLA_PREFIX",
    "Repo",
    "Tx",
    "spool_add_rows",
    "spool_add_sqlite",
    "sqlite_timestamp",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
