"""Decide a new ticket's type and priority from what the customer wrote, then clamp them.

Three sources, strongest first: tags in the subject (``[bug]``, ``[vraag]``,
``[kritiek]``), ``Type:`` / ``Prioriteit:`` lines at the top of the body, and
the keyword rules of config (``"site down"`` -> bug, high). What none of them
sets comes from the queue. Then the submission rules of the seeds apply: only a
bug may be critical, feedback and extra requests are at most medium
(KampAdmin; Club-assistent: high only for problems). The team may re-rate later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from mailgate.core.model import PRIORITIES
from mailgate.core.terms import priority, ticket_type


@dataclass(frozen=True, slots=True)
class KeywordRule:
    """Mail mentioning one of ``phrases`` gets ``type`` and/or ``priority``."""

    phrases: tuple[str, ...]
    type: str | None = None
    priority: str | None = None


# The highest priority each type may have at submission.
HIGHEST_AT_SUBMISSION: Mapping[str, str] = {
    "bug": "critical",
    "question": "high",
    "configuration_change": "high",
    "feedback": "medium",
    "extra_request": "medium",
}

_TAG = re.compile(r"\[\s*([^\[\]#]{1,40}?)\s*\]")
_FIELD = re.compile(
    r"^\s*(?P<key>type|soort|categorie|category|priority|prioriteit|prio|urgentie|urgency)"
    r"\s*:\s*(?P<value>.+?)\s*$",
    re.IGNORECASE,
)
_TYPE_KEYS = frozenset({"type", "soort", "categorie", "category"})


@dataclass(frozen=True, slots=True)
class Submission:
    type: str
    priority: str
    title: str  # the title without the tags that were read
    asked_priority: str  # what was asked when the clamp lowered it; "" otherwise
    reason: str  # where type and priority came from


def _mentions(haystack: str, phrase: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase.lower())}(?!\w)", haystack) is not None


def submit(
    title: str,
    text: str,
    rules: tuple[KeywordRule, ...],
    *,
    default_type: str,
    default_priority: str,
) -> Submission:
    """Type, priority and title of a new ticket; pure."""
    found_type: str | None = None
    found_priority: str | None = None
    sources: list[str] = []

    def drop_tag(match: re.Match[str]) -> str:
        nonlocal found_type, found_priority
        word = match[1]
        if found_type is None and ticket_type(word):
            found_type = ticket_type(word)
            sources.append(f"subject tag [{word}]")
            return ""
        if found_priority is None and priority(word):
            found_priority = priority(word)
            sources.append(f"subject tag [{word}]")
            return ""
        return match[0]

    clean_title = re.sub(r"\s{2,}", " ", _TAG.sub(drop_tag, title)).strip() or title
    for line in text.splitlines()[:8]:
        if not line.strip():
            continue
        field = _FIELD.match(line)
        if field is None:
            break
        key, value = field["key"].lower(), field["value"]
        if key in _TYPE_KEYS and found_type is None and ticket_type(value):
            found_type = ticket_type(value)
            sources.append(f"line {line.strip()!r}")
        elif key not in _TYPE_KEYS and found_priority is None and priority(value):
            found_priority = priority(value)
            sources.append(f"line {line.strip()!r}")
    haystack = f"{title}\n{text}".lower()
    for rule in rules:
        if (found_type is None or found_priority is None) and any(
            _mentions(haystack, p) for p in rule.phrases
        ):
            hit = next(p for p in rule.phrases if _mentions(haystack, p))
            if found_type is None and rule.type:
                found_type = rule.type
                sources.append(f"keyword {hit!r}")
            if found_priority is None and rule.priority:
                found_priority = rule.priority
                sources.append(f"keyword {hit!r}")
    kind = found_type or default_type
    asked = found_priority or default_priority
    highest = HIGHEST_AT_SUBMISSION[kind]
    given = asked if PRIORITIES.index(asked) >= PRIORITIES.index(highest) else highest
    reason = ", ".join(dict.fromkeys(sources)) or "queue defaults"
    if given != asked:
        reason += f"; {asked} lowered to {given}: the highest for {kind} at submission"
    return Submission(kind, given, clean_title, asked if given != asked else "", reason)
