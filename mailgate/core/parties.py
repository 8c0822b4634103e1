"""Who is on the other end of an automatic answer, however often its address changes.

The hourly cap per address stops a robot that answers from one address. A
helpdesk robot that answers every acknowledgment from a new address
(``helpdesk+1@``, ``helpdesk+2@``, ...) slips past it; these rules stop it
within a round or two, while 30 customers writing from one free-mail domain in
the same hour each still get their acknowledgment:

1. **Echo.** A mail whose subject repeats the subject of an automatic answer we
   sent to its domain in the last hour is an answer to our robot's mail, from a
   robot or from a person: it gets no automatic answer (it is still a ticket).
   A robot echoes what it answers; a new customer does not write our wording.
2. **Mailbox.** The cap per address counts the mailbox without its
   ``+detail`` (and, at Gmail, without dots): one mailbox, however decorated.
3. **Domain.** A backstop per organisation domain for robots that change
   address and wording every time; free-mail domains, shared by strangers,
   have none.

Pure: the shell reads the recent answers to the party and the domain.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

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
_DOTLESS = frozenset({"gmail.com", "googlemail.com"})  # where dots in the local part are noise
_SPACE = re.compile(r"\s+")
MIN_ECHO = 8  # characters: shorter subjects ("Vraag") echo by chance, not by a robot


def mailbox(address: str) -> str:
    """The mailbox behind ``address``: lower case, without a ``+detail``, and without dots at
    providers that ignore them."""
    local, _, domain = address.strip().lower().rpartition("@")
    local = local.split("+", 1)[0]
    if domain in _DOTLESS:
        local = local.replace(".", "")
    return f"{local}@{domain}"


def domain_of(address: str) -> str:
    return address.strip().lower().rpartition("@")[2]


def cap_keys(address: str) -> tuple[str, ...]:
    """What an automatic answer to ``address`` counts against: its mailbox, and its
    organisation domain unless that is a public one (``mailbox x``, ``domain y``)."""
    domain = domain_of(address)
    if domain in PUBLIC_DOMAINS:
        return (f"mailbox {mailbox(address)}",)
    return f"mailbox {mailbox(address)}", f"domain {domain}"


def sender_key(address: str) -> str:
    """The widest of ``cap_keys``: the organisation domain, else the mailbox. All automatic
    answers to ``address`` are counted under it, so the mails of one key, applied by one
    worker, never wait for another worker's counts (``SpoolRepo.claim_due``)."""
    return cap_keys(address)[-1]


def subject_core(subject: str) -> str:
    """A subject as the echo rule compares it: case and runs of white space ignored."""
    return _SPACE.sub(" ", subject).strip().casefold()


@dataclass(frozen=True, slots=True)
class AutoAnswer:
    """One automatic mail we sent to one recipient: to which mailbox and domain, with which
    subject (our ticket tag removed), when, and whether it answered a mail of theirs (an
    acknowledgment) or was a notice of ours (a status change, a reminder)."""

    mailbox: str
    domain: str
    subject: str
    at: datetime
    acknowledgment: bool = True


@dataclass(frozen=True, slots=True)
class AnswerLimits:
    per_mailbox: int  # automatic answers to one mailbox per hour
    per_domain: int  # ... to one organisation domain per hour (free mail: no limit)


def withheld(
    address: str,
    recent: Sequence[AutoAnswer],
    limits: AnswerLimits,
    *,
    answering: str | None = None,
) -> str | None:
    """Why no automatic mail may go to ``address``, given the automatic mails of the last
    hour to its mailbox and domain (``recent``); None when it may.

    ``answering``: the subject of the mail an acknowledgment answers. Only an answer is
    held for an echo or for its domain's cap; every automatic mail counts against the
    mailbox cap.
    """
    box, domain = mailbox(address), domain_of(address)
    if answering is not None:
        incoming = subject_core(answering)
        for answer in recent:
            echoed = len(answer.subject) >= MIN_ECHO and answer.subject in incoming
            if answer.domain == domain and echoed:
                return f"it repeats the subject of our automatic mail to {answer.mailbox}"
    if sum(1 for a in recent if a.mailbox == box) >= limits.per_mailbox:
        return f"mailbox cap per hour reached for {box}"
    organisation = sum(1 for a in recent if a.domain == domain and a.acknowledgment)
    capped_domain = answering is not None and domain not in PUBLIC_DOMAINS
    if capped_domain and organisation >= limits.per_domain:
        return f"domain cap per hour reached for {domain}"
    return None
