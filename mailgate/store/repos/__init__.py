"""Repositories per aggregate, blocking, over one connection (``Tx``), and ``Repo``: the
shell's async view of one session for the command line and the HTTP endpoints."""

from mailgate.store.repos.outbox import (
    OUTBOX_DEAD,
    OUTBOX_PENDING,
    OUTBOX_SENDING,
    OUTBOX_SENT,
)
from mailgate.store.repos.shell import Repo
from mailgate.store.repos.spool import (
    DONE,
    PENDING,
    QUARANTINED,
    spool_add_rows,
    spool_add_sqlite,
    sqlite_timestamp,
)
from mailgate.store.repos.timers import SLA_PREFIX
from mailgate.store.repos.tx import Tx

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
