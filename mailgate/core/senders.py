"""Who may speak on a ticket: strangers who reply with someone else's token, and forged agents.

A reply that threads onto a ticket (by token or reference) was written by
someone the ticket knows (a participant, an agent, a colleague at the
customer's own domain) or by a stranger. What happens to a stranger's reply is
policy (``[intake] unknown_sender``): ``accept`` adds them as a participant,
``new_ticket`` gives them a ticket of their own, ``hold`` keeps the mail on the
ticket without relaying it and asks the team to decide.

An agent's mail carries weight (it is relayed to the customer, later it runs
commands), so a mail claiming an agent's address is believed only when the
receiving MTA's ``Authentication-Results`` (from a trusted authserv-id) show no
DMARC or DKIM failure for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from mailgate.core.model import ParsedMail, Participant, Role


class UnknownSender(StrEnum):
    ACCEPT = "accept"
    NEW_TICKET = "new_ticket"
    HOLD = "hold"


# Domains shared by strangers: being at gmail.com makes nobody a colleague.
PUBLIC_DOMAINS = frozenset(
    {
        *("gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com"),
        *("live.nl", "hotmail.nl", "yahoo.com", "yahoo.nl", "icloud.com", "me.com", "mac.com"),
        *("aol.com", "gmx.de", "gmx.net", "web.de", "proton.me", "protonmail.com", "ziggo.nl"),
        *("kpnmail.nl", "planet.nl", "home.nl", "xs4all.nl", "telenet.be", "skynet.be"),
        *("hetnet.nl", "casema.nl", "upcmail.nl", "online.nl", "tele2.nl", "orange.fr"),
        *("free.fr", "laposte.net", "t-online.de", "mail.com", "zoho.com", "fastmail.com"),
    }
)


@dataclass(frozen=True, slots=True)
class AuthResult:
    """One method's verdict from an Authentication-Results header (RFC 8601)."""

    authserv_id: str
    method: str  # dkim, dmarc, spf, ...
    result: str  # pass, fail, none, ...
    domain: str  # header.d / header.from / smtp.mailfrom, lower case, or ""


_METHOD = re.compile(
    r"\b(?P<method>dkim|dmarc|spf|arc)\s*=\s*(?P<result>[a-z]+)(?P<props>[^;]*)", re.IGNORECASE
)
_DOMAIN_PROP = re.compile(
    r"\b(?:header\.d|header\.from|header\.i|smtp\.mailfrom)\s*=\s*\"?([^\s;\"]+)", re.I
)


def _without_comments(value: str) -> str:
    while True:
        stripped = re.sub(r"\([^()]*\)", " ", value)
        if stripped == value:
            return value
        value = stripped


def auth_results(mail: ParsedMail) -> tuple[AuthResult, ...]:
    """Every verdict in the mail's Authentication-Results headers, in header order."""
    found: list[AuthResult] = []
    for name, value in mail.headers:
        if name.lower() != "authentication-results":
            continue
        text = _without_comments(value)
        authserv_id, _, rest = text.partition(";")
        authserv_id = authserv_id.strip().split()[0].lower() if authserv_id.strip() else ""
        for match in _METHOD.finditer(rest):
            domain = _DOMAIN_PROP.search(match.group("props"))
            found.append(
                AuthResult(
                    authserv_id,
                    match.group("method").lower(),
                    match.group("result").lower(),
                    domain.group(1).rpartition("@")[2].lower() if domain else "",
                )
            )
    return tuple(found)


def authentication_failure(mail: ParsedMail, trusted: Iterable[str]) -> str | None:
    """Why the mail's sender domain is not authentic, by a trusted receiver; None if not known
    to be forged. Only headers from ``trusted`` authserv-ids count: anyone can write one."""
    trusted_ids = {t.lower() for t in trusted}
    if not trusted_ids or mail.from_addr is None:
        return None
    from_domain = mail.from_addr.domain
    for result in auth_results(mail):
        if result.authserv_id not in trusted_ids or result.method not in ("dmarc", "dkim"):
            continue
        if result.result in ("fail", "permerror") and result.domain in ("", from_domain):
            return f"{result.method}={result.result} for {from_domain} ({result.authserv_id})"
    return None


@dataclass(frozen=True, slots=True)
class SenderVerdict:
    """Whether the author of a reply is someone the ticket knows, and why."""

    known: bool
    reason: str


def judge_sender(
    address: str | None,
    participants: Iterable[Participant],
    *,
    is_agent: bool,
    forged: str | None,
) -> SenderVerdict:
    """Whether ``address`` may speak on a ticket with these participants; pure."""
    if address is None:
        return SenderVerdict(False, "no sender address")
    address = address.lower()
    if is_agent:
        if forged is not None:
            return SenderVerdict(False, f"claims to be agent {address}, but {forged}")
        return SenderVerdict(True, "agent")
    people = list(participants)
    if any(p.address == address for p in people):
        return SenderVerdict(True, "participant")
    domain = address.rpartition("@")[2]
    colleagues = {p.organisation for p in people if p.role is not Role.AGENT}
    if domain in colleagues and domain not in PUBLIC_DOMAINS:
        return SenderVerdict(True, f"colleague at {domain}")
    return SenderVerdict(False, f"{address} is not on the ticket")
