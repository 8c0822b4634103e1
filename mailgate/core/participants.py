"""Decide who a mail's people are to its ticket: requester, CC participant or agent."""

from __future__ import annotations

import email
import email.utils
from email.policy import compat32

from mailgate.core.address import AddressPolicy
from mailgate.core.header_addresses import BARE_ADDRESS, addresses, header_addresses
from mailgate.core.model import Address, MessageKind, ParsedMail, Participant, Role
from mailgate.core.senders import Authority
from mailgate.core.text import forwarded_from


def sender(mail: ParsedMail) -> str | None:
    """The address a reply to this mail's author goes to."""
    return mail.from_addr.email if mail.from_addr else None


def message_kind(authority: Authority) -> MessageKind:
    """Whether a person's mail is stored as the support team's or a customer's.

    A mail that claims an agent's address is stored as the agent's; on a reply it
    is held unless ``authority`` proves it (``senders.agent_authority``).
    """
    return MessageKind.AGENT if authority.claimed else MessageKind.CUSTOMER


def participants(
    mail: ParsedMail, policy: AddressPolicy, *, new_ticket: bool
) -> tuple[Participant, ...]:
    """The people this mail adds to its ticket, never our own addresses.

    On a new ticket the author is the requester; on a reply, a customer author
    not yet on the ticket joins as CC. Everyone in Cc (and other To addresses)
    joins as CC, agents as agents.
    """
    found: dict[str, Participant] = {}

    def add(email: str, name: str, role: Role) -> None:
        key = email.lower()
        if policy.is_ours(key) or key in found:
            return
        if policy.is_agent(key):
            role = Role.AGENT
        found[key] = Participant(key, name, role, key.rpartition("@")[2])

    if mail.from_addr is not None:
        add(mail.from_addr.email, mail.from_addr.name, Role.REQUESTER if new_ticket else Role.CC)
    for address in (*mail.to, *mail.cc):
        add(address.email, address.name, Role.CC)
    return tuple(found.values())


def forwarded_author(mail: ParsedMail, policy: AddressPolicy) -> Address | None:
    """Whose mail ``mail`` forwards: the author of an attached message, else of the
    header block a mail client wrote above the forwarded text; never one of our own
    addresses or an agent's (an agent forwarding a colleague's mail opens no ticket for
    them). None when it forwards nothing."""
    candidates: list[Address] = []
    for item in mail.attachments:
        if item.content_type == "message/rfc822":
            inner = email.message_from_bytes(item.data[:65536], policy=compat32)
            candidates.extend(header_addresses(inner, "From"))
            break
    line = forwarded_from(mail.text)
    if line is not None:
        candidates.extend(addresses(email.utils.getaddresses([line])))
        if not candidates:
            candidates.extend(addresses(("", a) for a in BARE_ADDRESS.findall(line)))
    for candidate in candidates:
        address = candidate.email.lower()
        if not policy.is_ours(address) and not policy.is_agent(address):
            return candidate
    return None
