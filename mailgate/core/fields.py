"""Reference fields: the identifiers a desk needs from its customers (a debtor number, a
placement number, an order number), found in their mails by a pattern per field.

Each queue names its fields (``[[queues.fields]]``): a name agents type (``#field
debiteurnummer 12345``), a label customers read, a pattern that finds the value in a
subject or a mail's own text (``Debiteurnummer: 12345``; the first group is the value,
else the whole match), and whether the desk requires it: an acknowledgment asks for a
required field the first mail did not carry, and a later mail that carries it fills it in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_VALUE = 200


@dataclass(frozen=True, slots=True)
class ReferenceField:
    name: str
    label: str
    pattern: re.Pattern[str]
    required: bool = False

    def find(self, *texts: str) -> str | None:
        """The value in the first of ``texts`` that carries it, or None."""
        for text in texts:
            found = self.pattern.search(text)
            if found is not None:
                value = (found.group(1) if found.re.groups else found.group(0)).strip()
                if value:
                    return value[:MAX_VALUE]
        return None


def found_fields(
    fields: Iterable[ReferenceField], known: Mapping[str, str], subject: str, text: str
) -> dict[str, str]:
    """The values of the fields not yet ``known`` that the subject or the text carries."""
    found = {}
    for field in fields:
        if field.name in known:
            continue
        value = field.find(subject, text)
        if value is not None:
            found[field.name] = value
    return found


def missing_fields(
    fields: Iterable[ReferenceField], known: Mapping[str, str]
) -> tuple[ReferenceField, ...]:
    """The required fields that have no value yet."""
    return tuple(f for f in fields if f.required and f.name not in known)
