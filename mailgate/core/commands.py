"""Read the commands at the top of an agent's reply and the intent of a customer's answer.

An agent steers a ticket with lines such as ``#status wacht op klant`` or
``#prioriteit hoog`` above the answer; the lines are read until the first line
that is not a command, and the rest is the answer. A customer answers a quote
or a test, or closes the ticket, with a word on the first line: ``akkoord``,
``niet akkoord``, ``opgelost`` (or ``#approve``, ``#reject``, ``#resolved``).
Both tables are English and Dutch; matching ignores case.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Verb(StrEnum):
    STATUS = "status"
    PRIORITY = "priority"
    TYPE = "type"
    ASSIGN = "assign"
    INTERNAL = "internal"
    CLOSE = "close"
    REOPEN = "reopen"
    MERGE = "merge"
    QUOTE = "quote"
    CC = "cc"
    HELP = "help"
    DUE = "due"
    FIELD = "field"  # a reference field: #field debiteurnummer 12345
    RELEASE = "release"  # a held mail of a stranger: theirs is a reply like the customer's
    REJECT = "reject"  # a held mail: it stays aside, never relayed


VERBS: Mapping[str, Verb] = {
    "status": Verb.STATUS,
    "toestand": Verb.STATUS,
    "priority": Verb.PRIORITY,
    "prio": Verb.PRIORITY,
    "prioriteit": Verb.PRIORITY,
    "type": Verb.TYPE,
    "soort": Verb.TYPE,
    "assign": Verb.ASSIGN,
    "toewijzen": Verb.ASSIGN,
    "internal": Verb.INTERNAL,
    "intern": Verb.INTERNAL,
    "note": Verb.INTERNAL,
    "notitie": Verb.INTERNAL,
    "close": Verb.CLOSE,
    "sluit": Verb.CLOSE,
    "sluiten": Verb.CLOSE,
    "reopen": Verb.REOPEN,
    "heropen": Verb.REOPEN,
    "heropenen": Verb.REOPEN,
    "merge": Verb.MERGE,
    "samenvoegen": Verb.MERGE,
    "quote": Verb.QUOTE,
    "offerte": Verb.QUOTE,
    "cc": Verb.CC,
    "help": Verb.HELP,
    "hulp": Verb.HELP,
    "field": Verb.FIELD,
    "veld": Verb.FIELD,
    "release": Verb.RELEASE,
    "vrijgeven": Verb.RELEASE,
    "doorlaten": Verb.RELEASE,
    "reject": Verb.REJECT,
    "weigeren": Verb.REJECT,
    "afwijzen": Verb.REJECT,
    "due": Verb.DUE,
    "deadline": Verb.DUE,
    "termijn": Verb.DUE,
}

CC_ADD = frozenset({"add", "toevoegen", "+"})
CC_REMOVE = frozenset({"remove", "verwijderen", "del", "-"})
MYSELF = frozenset({"me", "mij", "ik", "myself"})

# A command line: '#', a word, and its argument. '#1042' is a ticket number, not a command.
_COMMAND = re.compile(r"^#(?P<word>[^\W\d_][\w-]*)(?:[ \t:]+(?P<argument>.*))?$")


@dataclass(frozen=True, slots=True)
class Command:
    verb: Verb
    argument: str
    line: str


@dataclass(frozen=True, slots=True)
class CommandBlock:
    """The commands at the top of a message, unknown ones, and the text below them."""

    commands: tuple[Command, ...]
    unknown: tuple[str, ...]
    text: str

    def has(self, verb: Verb) -> bool:
        return any(c.verb is verb for c in self.commands)


def read_commands(text: str) -> CommandBlock:
    """Split ``text`` into its leading command lines and the rest; pure, never raises."""
    lines = text.splitlines()
    commands: list[Command] = []
    unknown: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        if not line:
            index += 1
            continue
        found = _COMMAND.match(line)
        if found is None:
            break
        verb = VERBS.get(found["word"].lower())
        if verb is None:
            unknown.append(line)
        else:
            commands.append(Command(verb, (found["argument"] or "").strip(), line))
        index += 1
    rest = "\n".join(lines[index:]).strip("\n")
    return CommandBlock(tuple(commands), tuple(unknown), rest)


class Intent(StrEnum):
    RESOLVED = "resolved"
    APPROVE = "approve"
    REJECT = "reject"


# Phrases a customer starts an answer with; the longest that matches wins.
INTENTS: Mapping[str, Intent] = {
    "beschouw deze aanvraag als opgelost": Intent.RESOLVED,
    "consider this request resolved": Intent.RESOLVED,
    "#resolved": Intent.RESOLVED,
    "#opgelost": Intent.RESOLVED,
    "opgelost": Intent.RESOLVED,
    "resolved": Intent.RESOLVED,
    "#approve": Intent.APPROVE,
    "#akkoord": Intent.APPROVE,
    "akkoord": Intent.APPROVE,
    "approved": Intent.APPROVE,
    "i approve": Intent.APPROVE,
    "goedgekeurd": Intent.APPROVE,
    "#reject": Intent.REJECT,
    "#niet-akkoord": Intent.REJECT,
    "niet akkoord": Intent.REJECT,
    "niet-akkoord": Intent.REJECT,
    "not approved": Intent.REJECT,
    "rejected": Intent.REJECT,
    "afgekeurd": Intent.REJECT,
}
_BY_LENGTH = sorted(INTENTS, key=len, reverse=True)


@dataclass(frozen=True, slots=True)
class CustomerIntent:
    intent: Intent
    reason: str  # what the customer wrote after the word (a rejected test's reason)


def customer_intent(text: str) -> CustomerIntent | None:
    """The intent the first line of ``text`` states, or None for an ordinary message.

    The phrase must open the line and stand alone ("Akkoord, ga uw gang" counts,
    "Akkoordverklaring volgt" and "Het is nog niet opgelost" do not).
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    first = lines[0].lower()
    for phrase in _BY_LENGTH:
        if first.startswith(phrase):
            after = first[len(phrase) :]
            if after and (after[0].isalnum() or after[0] in "-_"):
                continue
            rest = lines[0][len(phrase) :].lstrip(" \t.,:;!-")
            reason = "\n".join(part for part in (rest, *lines[1:]) if part)
            return CustomerIntent(INTENTS[phrase], reason)
    return None
