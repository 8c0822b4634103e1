"""``mailgate check``: the configuration, the templates and the mail sources, nothing else."""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from mailgate.cli.output import EX_CONFIG, EX_OK, EX_TEMPFAIL
from mailgate.config import Config
from mailgate.errors import ConfigError, LoginFailed, MailgateError
from mailgate.intake.mailbox import probe
from mailgate.outbound.render import Templates


def check(config: Config, out: TextIO) -> int:
    """Every template loaded and rendered against a sample, as the daemon does; then the
    mail sources."""
    try:
        Templates(config.outbound.template_dir).check()
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EX_CONFIG
    print(f"{config.path}: ok ({len(config.queues)} queue(s))", file=out)
    return asyncio.run(check_sources(config, out))


async def check_sources(config: Config, out: TextIO) -> int:
    """Log in to every configured IMAP mailbox and report what waits there."""
    code = EX_OK
    for mailbox in config.imap:
        try:
            state = await probe(mailbox)
        except LoginFailed as exc:
            print(f"imap {mailbox.name}: login failed: {exc}", file=out)
            code = EX_CONFIG
        except MailgateError as exc:
            print(f"imap {mailbox.name}: unreachable: {exc}", file=out)
            code = code or EX_TEMPFAIL
        else:
            print(
                f"imap {mailbox.name}: ok, {state.waiting} mail(s) waiting in "
                f"{mailbox.folder} (UIDVALIDITY {state.uidvalidity})",
                file=out,
            )
    return code
