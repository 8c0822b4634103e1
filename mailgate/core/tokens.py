"""Ticket tokens: a human number plus an HMAC check that proves mailgate issued it.

A token reads ``1042-K7QF3M9T``: the ticket number, a dash and eight characters
of Crockford base32 that carry 40 bits of HMAC-SHA256 over the installation id
and the number, keyed with the installation's secret. Subjects carry it as
``[#1042-K7QF3M9T]`` (with the configured prefix before ``#``); plus-addresses
as ``support+1042-k7qf3m9t@``. A token whose check does not verify is no token
at all, so a guessed or edited number never reaches another customer's ticket.
See docs/decisions/0002-ticket-tokens.md.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
CHECK_LENGTH = 8  # 8 x 5 bits = 40 bits
_CONFUSABLES = str.maketrans({"O": "0", "I": "1", "L": "1"})


def ticket_number(reference: str) -> int | None:
    """The ticket number a reference names: ``#1042``, ``1042`` or a tag ``[ACME#1042-…]``
    (its check not verified: for an agent naming a ticket, who may name any); else None."""
    text = reference.strip().lstrip("[").split("]")[0]
    text = text.rsplit("#", 1)[-1].split("-")[0]
    return int(text) if text.isdigit() else None


def secret_check(secret: bytes) -> str:
    """A fingerprint of the token secret, safe to store: which secret an installation's
    tokens were made with (an HMAC of a fixed text; it reveals nothing of the secret)."""
    return hmac.new(secret, b"mailgate token secret check", hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class FoundToken:
    """A token-shaped span of text: its number, whether its check verified, and the text."""

    number: int
    valid: bool
    text: str


@dataclass(frozen=True, slots=True)
class TokenCodec:
    """Makes and verifies the tokens of one installation."""

    secret: bytes
    installation_id: str
    prefix: str = ""

    def check(self, number: int) -> str:
        """40 bits of HMAC-SHA256 over installation id and number, in Crockford base32."""
        return self.check_text(str(number))

    def sign(self, purpose: str, value: int) -> str:
        """A check for ``value`` used for ``purpose`` (e.g. VERP bounce addresses)."""
        return self.check_text(f"{purpose}:{value}")

    def check_text(self, text: str) -> str:
        digest = hmac.digest(self.secret, f"{self.installation_id}:{text}".encode(), "sha256")
        value = int.from_bytes(digest[:5], "big")
        return "".join(ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(CHECK_LENGTH)))

    def bounce_address(self, outbox_id: int, domain: str) -> str:
        """The VERP envelope sender of outbox mail ``outbox_id``: a bounce names the mail."""
        return f"bounces+{outbox_id}-{self.sign('outbox', outbox_id).lower()}@{domain}"

    def token(self, number: int) -> str:
        return f"{number}-{self.check(number)}"

    def subject_tag(self, number: int) -> str:
        return f"[{self.prefix}#{self.token(number)}]"

    def verify(self, number: int, check: str) -> bool:
        normalised = check.upper().translate(_CONFUSABLES)
        return hmac.compare_digest(normalised.encode(), self.check(number).encode())

    def _subject_pattern(self) -> re.Pattern[str]:
        prefix = re.escape(self.prefix)
        return re.compile(
            rf"(?<![A-Za-z0-9]){prefix}\s*#\s*(\d{{1,12}})\s*-\s*([0-9A-Za-z]{{{CHECK_LENGTH}}})"
            r"(?![0-9A-Za-z])",
            re.IGNORECASE,
        )

    def find_in_subject(self, subject: str) -> tuple[FoundToken, ...]:
        """Every token-shaped span of ``subject`` with our prefix, in order, checked."""
        found = []
        for match in self._subject_pattern().finditer(subject):
            number = int(match.group(1))
            found.append(FoundToken(number, self.verify(number, match.group(2)), match.group(0)))
        return tuple(found)

    def parse_token(self, text: str) -> FoundToken | None:
        """Read a bare token (``1042-K7QF3M9T``, any case) or a subject tag; None if not one."""
        match = re.fullmatch(
            rf"\s*[\[(]?\s*(?:{re.escape(self.prefix)}\s*#)?\s*(\d{{1,12}})\s*-\s*"
            rf"([0-9A-Za-z]{{{CHECK_LENGTH}}})\s*[\])]?\s*",
            text,
            re.IGNORECASE,
        )
        if match is None:
            return None
        number = int(match.group(1))
        return FoundToken(number, self.verify(number, match.group(2)), text.strip())

    def reference(self, text: str) -> int | None:
        """The ticket a person's reference names: ``#1042`` or ``1042``, or a token or tag
        whose check verifies; None otherwise."""
        plain = text.strip().lstrip("#")
        if plain.isdigit():
            return int(plain)
        token = self.parse_token(text)
        return token.number if token is not None and token.valid else None

    def tag_spans(self, subject: str) -> tuple[str, ...]:
        """The spans of ``subject`` that are our tags, brackets included, for title cleaning."""
        pattern = re.compile(rf"[\[(]?\s*{self._subject_pattern().pattern}\s*[\])]?", re.IGNORECASE)
        return tuple(m.group(0) for m in pattern.finditer(subject))
