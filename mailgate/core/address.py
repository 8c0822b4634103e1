"""Recognise mailgate's own addresses, their plus-addresses, and the support team's senders."""

from __future__ import annotations

import re
from dataclasses import dataclass

BOUNCE_LOCAL = "bounces"
_MAILABLE = re.compile(r"[^\s\x00-\x1f\x7f<>,;\"@]{1,64}@[^\s\x00-\x1f\x7f<>,;\"@]{1,255}")


def mailable(address: str) -> bool:
    """Whether ``address`` may be written into a To header and an SMTP envelope: one
    mailbox, no whitespace, no control character, no separator."""
    return _MAILABLE.fullmatch(address) is not None


@dataclass(frozen=True, slots=True)
class QueueAddresses:
    """The inbound addresses of one queue, in config order."""

    queue: str
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OwnAddress:
    """A recipient that is ours: the queue it belongs to and the plus-detail, if any."""

    queue: str
    address: str
    detail: str | None


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which addresses are ours and who counts as an agent."""

    queues: tuple[QueueAddresses, ...]
    plus_addressing: bool = True
    plus_separator: str = "+"
    case_sensitive_local_part: bool = False
    agent_domains: tuple[str, ...] = ()
    agent_addresses: tuple[str, ...] = ()
    bounce_domains: tuple[str, ...] = ()

    def _key(self, local: str, domain: str) -> str:
        local_key = local if self.case_sensitive_local_part else local.lower()
        return f"{local_key}@{domain.lower()}"

    def _find(self, local: str, domain: str) -> tuple[str, str] | None:
        key = self._key(local, domain)
        for queue in self.queues:
            for own in queue.addresses:
                own_local, _, own_domain = own.rpartition("@")
                if key == self._key(own_local, own_domain):
                    return queue.queue, own
        return None

    def match(self, address: str) -> OwnAddress | None:
        """The queue that ``address`` belongs to, or None when it is not one of ours."""
        local, at, domain = address.strip().rpartition("@")
        if not at or not local or not domain:
            return None
        found = self._find(local, domain)
        if found is not None:
            return OwnAddress(found[0], found[1], None)
        if self.plus_addressing and self.plus_separator in local:
            base, _, detail = local.partition(self.plus_separator)
            found = self._find(base, domain)
            if found is not None and detail:
                return OwnAddress(found[0], found[1], detail)
        return None

    def is_ours(self, address: str) -> bool:
        return self.match(address) is not None or self.bounce_detail(address) is not None

    def bounce_detail(self, address: str) -> str | None:
        """The detail of one of our VERP bounce addresses (``bounces+<detail>@``), else None."""
        local, at, domain = address.strip().strip("<>").rpartition("@")
        if not at or domain.lower() not in self.bounce_domains:
            return None
        prefix, plus, detail = local.partition("+")
        if prefix.lower() != BOUNCE_LOCAL or not plus or not detail:
            return None
        return detail.lower()

    def is_agent(self, address: str) -> bool:
        lowered = address.lower()
        if self.is_ours(lowered):
            return False
        if lowered in self.agent_addresses:
            return True
        return lowered.rpartition("@")[2] in self.agent_domains

    def plus_address(self, base: str, detail: str) -> str:
        """``base`` with ``detail`` added after the plus separator."""
        local, _, domain = base.rpartition("@")
        return f"{local}{self.plus_separator}{detail.lower()}@{domain}"

    def default_queue(self) -> str:
        return self.queues[0].queue
