"""The words people use for ticket types and priorities, in English and Dutch, and their labels.

KampAdmin's names, Studytube's and Club-assistent's aliases: whoever writes
``[incident]``, ``Prioriteit: hoog`` or ``#type meerwerk`` means one of the
five types and four priorities mailgate knows.
"""

from __future__ import annotations

from collections.abc import Mapping

from mailgate.core.model import PRIORITIES, TICKET_TYPES

TYPE_ALIASES: Mapping[str, str] = {
    "question": "question",
    "vraag": "question",
    "gebruiksvraag": "question",
    "supportquestion": "question",
    "supportvraag": "question",
    "bug": "bug",
    "error": "bug",
    "fout": "bug",
    "errorofbug": "bug",
    "incident": "bug",
    "probleem": "bug",
    "problem": "bug",
    "storing": "bug",
    "configurationchange": "configuration_change",
    "configuration": "configuration_change",
    "configuratie": "configuration_change",
    "aanpassing": "configuration_change",
    "aanpassingconfiguratie": "configuration_change",
    "wijziging": "configuration_change",
    "feedback": "feedback",
    "idea": "feedback",
    "idee": "feedback",
    "wish": "feedback",
    "wens": "feedback",
    "feedbackofidee": "feedback",
    "extrarequest": "extra_request",
    "extraverzoek": "extra_request",
    "extrawork": "extra_request",
    "extrawerk": "extra_request",
    "meerwerk": "extra_request",
}

PRIORITY_ALIASES: Mapping[str, str] = {
    "critical": "critical",
    "kritiek": "critical",
    "kritisch": "critical",
    "urgent": "critical",
    "spoed": "critical",
    "high": "high",
    "hoog": "high",
    "medium": "medium",
    "normal": "medium",
    "normaal": "medium",
    "gemiddeld": "medium",
    "middel": "medium",
    "low": "low",
    "laag": "low",
}

LABELS: Mapping[str, Mapping[str, str]] = {
    "nl": {
        "question": "gebruiksvraag",
        "bug": "error of bug",
        "configuration_change": "aanpassing configuratie",
        "feedback": "feedback of idee",
        "extra_request": "extra verzoek",
        "critical": "kritiek",
        "high": "hoog",
        "medium": "gemiddeld",
        "low": "laag",
    },
    "en": {
        "question": "question",
        "bug": "bug",
        "configuration_change": "configuration change",
        "feedback": "feedback or idea",
        "extra_request": "extra request",
        "critical": "critical",
        "high": "high",
        "medium": "medium",
        "low": "low",
    },
}

assert set(TYPE_ALIASES.values()) == set(TICKET_TYPES)
assert set(PRIORITY_ALIASES.values()) == set(PRIORITIES)


def squash(text: str) -> str:
    """``text`` lower-cased with everything but letters and digits removed."""
    return "".join(ch for ch in text.lower() if ch.isalnum())


def ticket_type(text: str) -> str | None:
    """The type ``text`` names, or None."""
    return TYPE_ALIASES.get(squash(text))


def priority(text: str) -> str | None:
    """The priority ``text`` names, or None."""
    return PRIORITY_ALIASES.get(squash(text))


def label(value: str, language: str) -> str:
    """How a type or priority is called in ``language``."""
    return LABELS.get(language, LABELS["en"]).get(value, value)
