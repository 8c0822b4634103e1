"""The one error tree of mailgate; every error is either temporary or permanent.

::

    MailgateError                  base; ``temporary`` says whether a retry may succeed
    ├── TemporaryError             our fault or the world's: retry later (SMTP 451, exit 75)
    │   ├── StorageUnavailable     database locked, unreachable, or disk full
    │   ├── SourceUnavailable      an IMAP server could not be reached or dropped us
    │   ├── AddressInUse           a port to listen on is taken (exit 75: the supervisor retries)
    │   └── DeliveryDeferred       a relay said 4xx or could not be reached (outbound)
    └── PermanentError             retrying the same input cannot help (SMTP 550, quarantine)
        ├── ConfigError            config.toml or the environment is wrong (exit 78)
        ├── SchemaMismatch         the database schema is older or newer than the code (exit 78)
        ├── BadMail                the mail itself cannot be taken in
        ├── LoginFailed            an IMAP server refused our credentials
        ├── DeliveryFailed         a relay refused a mail for good (5xx)
        └── NotFound               a ticket or spool item named by the user does not exist

Third-party exceptions (SQLAlchemy, OSError, imapclient, smtplib) are translated
into this tree at the one adapter that talks to them, with ``raise X(...) from exc``.
"""

from __future__ import annotations

import errno


class MailgateError(Exception):
    """Base of every error mailgate raises on purpose."""

    temporary: bool = False


class TemporaryError(MailgateError):
    """A failure that may pass: the caller should retry and must not bounce the mail."""

    temporary = True


class StorageUnavailable(TemporaryError):
    """The database or the data directory cannot take a write right now."""


class Busy(TemporaryError):
    """Another transaction (another instance's or worker process's batch) holds what a
    mail must lock; the mail waits for the next batch, where it comes first and may wait,
    instead of waiting inside this one while holding the locks of the mails before it
    (a circle of batches waiting for each other: a deadlock). PostgreSQL."""


class CountsBusy(Busy):
    """Another transaction holds the cap records a mail's automatic answers must count."""


class TicketBusy(Busy):
    """Another transaction holds the ticket a mail must change."""


class SourceUnavailable(TemporaryError):
    """A mail source (an IMAP server) could not be reached, or the connection broke."""


class AddressInUse(TemporaryError):
    """A port the daemon listens on is held by another process (another mailgate, a mail
    server): a clash that may pass, so the supervisor tries again (exit 75, not 78)."""


class DeliveryDeferred(TemporaryError):
    """An outbound relay refused for now (4xx) or could not be reached."""


class PermanentError(MailgateError):
    """A failure that the same input will hit again."""


class ConfigError(PermanentError):
    """The configuration is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(problems))


class SchemaMismatch(PermanentError):
    """The database schema is not the one this code was written for; the message says what
    to do (run ``mailgate migrate``, or upgrade mailgate)."""


class BadMail(PermanentError):
    """The mail cannot be taken in as it is (for instance: empty)."""


class LoginFailed(PermanentError):
    """A mail source refused the configured credentials; retrying will not help soon."""


class DeliveryFailed(PermanentError):
    """A relay refused an outgoing mail permanently; ``reply`` is what it said."""


class NotFound(PermanentError):
    """A ticket, spool item or other object named by the user does not exist."""


def cannot_listen(where: str, exc: OSError) -> MailgateError:
    """The error for a listener that could not bind: a taken port is temporary; any other
    reason (no such address, a privileged port) is the configuration's."""
    if exc.errno == errno.EADDRINUSE:
        return AddressInUse(
            f"{where}: cannot listen: address already in use (is another mailgate or mail "
            "server running on it?)"
        )
    return ConfigError([f"{where}: cannot listen: {exc.strerror or exc}"])
