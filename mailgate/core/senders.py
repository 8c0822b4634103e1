"""Who may speak on a ticket: strangers who reply with someone else's token, and forged agents.

A reply that threads onto a ticket (by token or reference) was written by
someone the ticket knows (a participant, an agent, a colleague at the
customer's own domain) or by a stranger. What happens to a stranger's reply is
policy (``[intake] unknown_sender``): ``accept`` adds them as a participant,
``new_ticket`` gives them a ticket of their own, ``hold`` keeps the mail on the
ticket without relaying it and asks the team to decide.

An agent's mail carries weight (its commands change the ticket, its text is
relayed to the customer from the support address), so a From header is never
enough: ``agent_authority`` asks for proof and fails closed. See
docs/decisions/0011-agent-authority.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from mailgate.core.address import AddressPolicy
from mailgate.core.model import ParsedMail, Participant, Role
from mailgate.core.parties import PUBLIC_DOMAINS


class UnknownSender(StrEnum):
    ACCEPT = "accept"
    NEW_TICKET = "new_ticket"
    HOLD = "hold"


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


def _authserv_id(value: str) -> str:
    """The authserv-id of one Authentication-Results header: its first word, lower case."""
    first = _without_comments(value).partition(";")[0].split()
    return first[0].lower() if first else ""


def _header_verdicts(value: str) -> tuple[AuthResult, ...]:
    authserv_id = _authserv_id(value)
    rest = _without_comments(value).partition(";")[2]
    found = []
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


def _headers_named(mail: ParsedMail, wanted: str) -> list[str]:
    return [value for name, value in mail.headers if name.lower() == wanted]


def auth_results(mail: ParsedMail) -> tuple[AuthResult, ...]:
    """Every verdict in the mail's Authentication-Results headers, in header order."""
    return tuple(
        verdict
        for value in _headers_named(mail, "authentication-results")
        for verdict in _header_verdicts(value)
    )


def trusted_verdicts(mail: ParsedMail, trusted: Iterable[str]) -> tuple[AuthResult, ...]:
    """The DKIM and DMARC verdicts of the topmost Authentication-Results header of each
    trusted authserv-id. The receiving MTA prepends its own header; anything below it came
    with the mail, and anyone can write one."""
    trusted_ids = {t.lower() for t in trusted}
    taken: set[str] = set()
    found: list[AuthResult] = []
    for value in _headers_named(mail, "authentication-results"):
        # The header counts as the server's own even when it carries no verdict ("none").
        authserv = _authserv_id(value)
        if authserv not in trusted_ids or authserv in taken:
            continue
        taken.add(authserv)
        found += [v for v in _header_verdicts(value) if v.method in ("dmarc", "dkim")]
    return tuple(found)


def _aligned(domain: str, from_domain: str) -> bool:
    """Whether a verdict about ``domain`` speaks for ``from_domain`` (relaxed alignment)."""
    return bool(domain) and (from_domain == domain or from_domain.endswith(f".{domain}"))


def authentication_failure(mail: ParsedMail, trusted: Iterable[str]) -> str | None:
    """Why a trusted receiver says the From domain is forged; None if none says so."""
    if mail.from_addr is None:
        return None
    from_domain = mail.from_addr.domain
    for result in trusted_verdicts(mail, trusted):
        if result.result in ("fail", "permerror") and (
            not result.domain or _aligned(result.domain, from_domain)
        ):
            return f"{result.method}={result.result} for {from_domain} ({result.authserv_id})"
    return None


def authenticated(mail: ParsedMail, trusted: Iterable[str]) -> str | None:
    """What a trusted receiver said to vouch for the From domain; None when none did.

    Vouched for: ``dmarc=pass`` for the From domain, or ``dkim=pass`` for it or a
    parent domain, and no DMARC or DKIM failure. No header, or no verdict about
    the From domain, vouches for nothing: the check fails closed.
    """
    if mail.from_addr is None or authentication_failure(mail, trusted) is not None:
        return None
    from_domain = mail.from_addr.domain
    for result in trusted_verdicts(mail, trusted):
        if result.result != "pass" or not _aligned(result.domain, from_domain):
            continue
        if result.method == "dkim" or result.domain == from_domain:
            return f"{result.method}=pass for {from_domain} ({result.authserv_id})"
    return None


@dataclass(frozen=True, slots=True)
class Authority:
    """Whether a mail speaks for the support team, and why (or why not)."""

    agent: bool  # proven: its commands apply and its text is relayed
    claimed: bool  # its From is an agent address (proven or not)
    reason: str


def agent_authority(
    mail: ParsedMail,
    policy: AddressPolicy,
    *,
    answers_team: str | None,
    trusted: Iterable[str],
    on_server: bool = False,
) -> Authority:
    """Whether ``mail`` proves it is the team's; pure. Fails closed.

    Three things must all hold: the From header names exactly one address and it
    is an agent's; the mail answers a mail that only the team received
    (``answers_team``: the Message-ID of a team notice it names in In-Reply-To or
    References, found by the shell); and, where the desk trusts authentication
    servers (``trusted``), one of them reported DKIM or DMARC pass for the From
    domain. Sender, Reply-To and the envelope never make anyone an agent.
    ``on_server``: written with ``mailgate reply``/``note`` by someone who runs
    mailgate itself; that is proof enough.
    """
    author = mail.from_addr.email if mail.from_addr else None
    if author is None or not policy.is_agent(author):
        return Authority(False, False, "not from an agent address")
    if mail.from_count != 1:
        return Authority(False, True, f"From names {mail.from_count} addresses, not one agent")
    if on_server:
        return Authority(True, True, "agent: written on the server (mailgate reply/note)")
    if answers_team is None:
        return Authority(
            False, True, f"{author.lower()} did not answer a team notice (no proof it is the team)"
        )
    trusted = tuple(trusted)
    if trusted:
        vouched = authenticated(mail, trusted)
        if vouched is None:
            why = authentication_failure(mail, trusted) or "no DKIM or DMARC pass"
            return Authority(False, True, f"claims to be agent {author.lower()}, but {why}")
        return Authority(True, True, f"agent: answers team notice <{answers_team}>; {vouched}")
    return Authority(True, True, f"agent: answers team notice <{answers_team}>")


@dataclass(frozen=True, slots=True)
class SenderVerdict:
    """Whether the author of a reply is someone the ticket knows, and why."""

    known: bool
    reason: str


def judge_sender(
    address: str | None, participants: Iterable[Participant], authority: Authority
) -> SenderVerdict:
    """Whether ``address`` may speak on a ticket with these participants; pure.

    A mail that claims an agent's address is judged by its ``authority`` alone:
    being a participant does not make an unproven agent known.
    """
    if address is None:
        return SenderVerdict(False, "no sender address")
    address = address.lower()
    if authority.claimed:
        return SenderVerdict(authority.agent, authority.reason)
    people = list(participants)
    if any(p.address == address for p in people):
        return SenderVerdict(True, "participant")
    domain = address.rpartition("@")[2]
    colleagues = {p.organisation for p in people if p.role is not Role.AGENT}
    if domain in colleagues and domain not in PUBLIC_DOMAINS:
        return SenderVerdict(True, f"colleague at {domain}")
    return SenderVerdict(False, f"{address} is not on the ticket")
