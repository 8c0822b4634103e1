"""``mailgate ingest``, the MTA pipe: one mail stored durably in the spool, then exit.

An MTA runs it once per mail, so it imports and does only what the acknowledgment needs:
the configuration, the database and the spool; no parser, templates, calendar, web or
IMAP code. Exit 0 means the mail is committed; the daemon's worker applies it within
``[worker] poll_interval``. ``--now`` applies it in this process as well and sends what
it caused (what a script or a first try wants to see), at the cost of loading
everything. See docs/decisions/0015-the-pipe-stores.md.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from mailgate.cli.output import (
    EX_DATAERR,
    EX_FAILED,
    EX_OK,
    EX_TEMPFAIL,
    print_json,
    read_file,
    ref,
)
from mailgate.config import Config
from mailgate.errors import BadMail, ConfigError, MailgateError, SchemaMismatch
from mailgate.intake.pipe import store
from mailgate.intake.spool import Received
from mailgate.store.repos.spool import PENDING


async def ingest(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    """MTA pipe mode: exit 0 once the mail is durably stored, 75 when it could not be."""
    try:
        raw = sys.stdin.buffer.read() if args.file == "-" else read_file(args.file)
        received = Received(
            raw, "pipe", envelope_from=args.sender, envelope_to=tuple(args.recipient)
        )
        if args.now:
            from mailgate.cli.mail import ingest_now

            return await ingest_now(config, received, out)
        stored, state, ticket = await store(config, received)
    except (ConfigError, SchemaMismatch):
        raise  # the configuration is wrong: exit 78, as for every command
    except BadMail as exc:
        print_json(out, {"action": "rejected", "ticket": None, "reason": str(exc)})
        return EX_DATAERR
    except MailgateError as exc:
        print_json(out, {"action": "failed", "ticket": None, "reason": str(exc)})
        return EX_TEMPFAIL if exc.temporary else EX_FAILED
    if stored.duplicate and state != PENDING:
        action, reason = "duplicate", f"same mail as spool item {stored.spool_id}"
    else:
        action, reason = "stored", "stored; the daemon's worker applies it"
    result = {"action": action, "ticket": ref(ticket), "reason": reason}
    print_json(out, {**result, "spool_id": stored.spool_id})
    return EX_OK
