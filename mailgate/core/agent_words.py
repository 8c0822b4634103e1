"""What the desk tells agents about their commands, in the team's language (the faults of a
refused command mail and the ``#help`` reference), and whether an agent's answer is signed.

A fault is kept as data (``Fault``: the command line, what was wrong, the names in
question) and put into words only for its reader: the team's language in a mail, English
on the command line. Names are always the ones an agent may type back: a status by its
label in that language ("klaar voor test"), never an internal name such as ``new``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mailgate.core.model import PRIORITIES, TICKET_TYPES
from mailgate.core.terms import label
from mailgate.core.workflow import Workflow

# code -> language -> text; {names} the names an agent may type, {subject} the thing named.
FAULTS: dict[str, dict[str, str]] = {
    "unknown_command": {
        "nl": "onbekende opdracht; zie #hulp",
        "en": "unknown command; try #help",
    },
    "unknown_status": {
        "nl": "onbekende status; nu mogelijk: {names}",
        "en": "unknown status; possible now: {names}",
    },
    "not_allowed": {
        "nl": "niet mogelijk zolang het ticket {subject} is; wel mogelijk: {names}",
        "en": "not allowed while the ticket is {subject}; allowed: {names}",
    },
    "unknown_priority": {
        "nl": "onbekende prioriteit; kies uit: {names}",
        "en": "unknown priority; choose from: {names}",
    },
    "unknown_type": {
        "nl": "onbekend soort; kies uit: {names}",
        "en": "unknown type; choose from: {names}",
    },
    "not_an_agent": {
        "nl": "geen agent; geef het adres van een agent, of 'ik'",
        "en": "not an agent; give an agent's address or 'me'",
    },
    "bad_due": {
        "nl": "geef een duur in werktijd (3 dagen, 16 uur, 2 weken) of een datum die nog "
        "komt (2026-03-01, 2026-03-01 12:00)",
        "en": "give a business duration (3 days, 16 hours, 2 weeks) or a date to come "
        "(2026-03-01, 2026-03-01 12:00)",
    },
    "no_other_ticket": {
        "nl": "geen ander ticket {subject}",
        "en": "no other ticket {subject}",
    },
    "cc_usage": {
        "nl": "gebruik #cc toevoegen <adres> of #cc verwijderen <adres>",
        "en": "use #cc add <address> or #cc remove <address>",
    },
    "cc_ours": {
        "nl": "{subject} is een van onze eigen adressen",
        "en": "{subject} is one of our own addresses",
    },
    "cc_requester": {
        "nl": "de aanvrager kan niet worden verwijderd",
        "en": "the requester cannot be removed",
    },
    "unknown_field": {
        "nl": "gebruik #veld <naam> <waarde>, met als naam: {names}",
        "en": "use #field <name> <value>, with name one of: {names}",
    },
    "nothing_held": {
        "nl": "er is op dit ticket geen tegengehouden bericht",
        "en": "no mail is held on this ticket",
    },
    "release_or_reject": {
        "nl": "kies #vrijgeven of #weigeren, niet allebei",
        "en": "choose #release or #reject, not both",
    },
    "quote_text": {
        "nl": "de offerte heeft een tekst nodig (wat, hoeveel)",
        "en": "the quote needs a text (what, how much)",
    },
}


@dataclass(frozen=True, slots=True)
class Fault:
    """One thing wrong in an agent's command mail."""

    line: str  # the command as the agent wrote it
    code: str  # a key of FAULTS
    names: tuple[str, ...] = ()  # states, priorities or types (internal names)
    subject: str = ""  # a status (internal name), an address or a ticket reference

    def text(self, language: str, workflow: Workflow) -> str:
        """The fault in ``language``, naming states by their labels in it."""
        words = FAULTS[self.code]
        template = words.get(language, words["en"])
        if self.code in ("unknown_status", "not_allowed"):
            names = [state_label(workflow, n, language) for n in self.names]
            subject = state_label(workflow, self.subject, language) if self.subject else ""
        else:
            names = [label(n, language) for n in self.names]
            subject = self.subject
        none = "geen" if language == "nl" else "none"
        return f"{self.line}: " + template.format(names=", ".join(names) or none, subject=subject)


def faults_text(faults: Iterable[Fault], language: str, workflow: Workflow) -> str:
    """Every fault on its own line, in ``language``."""
    return "\n".join(f.text(language, workflow) for f in faults)


def state_label(workflow: Workflow, name: str, language: str) -> str:
    try:
        return workflow.state(name).label(language)
    except KeyError:
        return name


def typed_states(workflow: Workflow) -> tuple[str, ...]:
    """The states an agent may move a ticket to with ``#status`` from some state."""
    targets = {n for s in workflow.states for n in s.next}
    return tuple(s.name for s in workflow.states if s.name in targets)


_HELP = {
    "nl": (
        ("#status <status>", "#toestand", "{states}"),
        ("#prioriteit <prioriteit>", "#priority", "{priorities}"),
        ("#soort <soort>", "#type", "{types}"),
        ("#toewijzen <agent|ik>", "#assign", ""),
        ("#intern", "#internal", "een notitie: niet naar de klant gestuurd"),
        ("#sluiten", "#close", ""),
        ("#heropenen", "#reopen", ""),
        ("#samenvoegen <#nummer>", "#merge", "dit ticket in dat ticket"),
        ("#offerte <tekst>", "#quote", "meerwerk: de klant wordt om akkoord gevraagd"),
        ("#cc toevoegen|verwijderen <adres>", "#cc add|remove", ""),
        ("#termijn <duur|datum>", "#due", "de oplostermijn afspreken: 3 dagen, 2026-03-01"),
        ("#veld <naam> <waarde>", "#field", "een referentieveld: debiteurnummer 12345"),
        ("#vrijgeven", "#release", "een tegengehouden bericht geldt als antwoord van de klant"),
        ("#weigeren", "#reject", "een tegengehouden bericht blijft opzij"),
        ("#hulp", "#help", ""),
    ),
    "en": (
        ("#status <state>", "#toestand", "{states}"),
        ("#priority <priority>", "#prioriteit", "{priorities}"),
        ("#type <type>", "#soort", "{types}"),
        ("#assign <agent|me>", "#toewijzen", ""),
        ("#internal", "#intern", "a note: not sent to the customer"),
        ("#close", "#sluiten", ""),
        ("#reopen", "#heropenen", ""),
        ("#merge <#number>", "#samenvoegen", "this ticket into that one"),
        ("#quote <text>", "#offerte", "extra work: the customer is asked to approve"),
        ("#cc add|remove <address>", "#cc toevoegen|verwijderen", ""),
        ("#due <duration|date>", "#termijn", "agree the solve target: 3 days, 2026-03-01"),
        ("#field <name> <value>", "#veld", "a reference field: debiteurnummer 12345"),
        ("#release", "#vrijgeven", "a held mail counts as the customer's reply"),
        ("#reject", "#weigeren", "a held mail stays aside"),
        ("#help", "#hulp", ""),
    ),
}
_HELP_END = {
    "nl": "Tekst onder de opdrachten gaat naar de klant; een mail met alleen opdrachten\n"
    "verandert het ticket zonder de klant te mailen, tenzij de nieuwe status dat vraagt.",
    "en": "Text below the commands is sent to the customer; a mail of only commands\n"
    "changes the ticket without mailing the customer unless the new status asks it.",
}


def command_reference(workflow: Workflow, language: str) -> str:
    """The text of ``#help`` in ``language``: every command, its alias in the other
    language, and the values an agent may type."""
    lang = language if language in _HELP else "en"
    values = {
        "states": ", ".join(state_label(workflow, n, lang) for n in typed_states(workflow)),
        "priorities": ", ".join(label(p, lang) for p in PRIORITIES),
        "types": ", ".join(label(t, lang) for t in TICKET_TYPES),
    }
    lines = [
        f"{command:<34} {alias:<26} {note.format(**values)}".rstrip()
        for command, alias, note in _HELP[lang]
    ]
    return "\n".join([*lines, "", _HELP_END[lang]])


def signs_off(text: str, name: str) -> bool:
    """Whether ``text`` already ends with its author's sign-off: a short line (a greeting
    at most) ending in ``name`` or its first word, among the last three non-empty lines.
    Then a template adds no second name line under it."""
    words = [w.casefold() for w in re.findall(r"\w+", name)]
    if not words:
        return False
    tail = [line for line in text.splitlines() if line.strip()][-3:]
    for line in tail:
        found = [w.casefold() for w in re.findall(r"\w+", line)]
        short = 0 < len(found) <= len(words) + 4
        if short and (found[-len(words) :] == words or found[-1] == words[0]):
            return True
    return False
