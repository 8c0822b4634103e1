"""Reference fields found in a mail's subject or text."""

from __future__ import annotations

import re

from mailgate.core.fields import ReferenceField, found_fields, missing_fields

DEBTOR = ReferenceField(
    "debiteurnummer", "debiteurnummer", re.compile(r"debiteurnummer:?\s*(\d+)", re.I), True
)
ORDER = ReferenceField("order", "ordernummer", re.compile(r"ORD-\d+"))  # no group: the match


def test_a_field_is_found_in_the_subject_first_then_the_text() -> None:
    fields = (DEBTOR, ORDER)
    assert found_fields(fields, {}, "Factuur Debiteurnummer 42", "debiteurnummer: 7, ORD-9") == {
        "debiteurnummer": "42",
        "order": "ORD-9",
    }
    assert found_fields(fields, {"debiteurnummer": "1"}, "", "Debiteurnummer: 7") == {}
    assert found_fields(fields, {}, "Vraag", "Geen nummer hier") == {}


def test_only_required_fields_without_a_value_are_missing() -> None:
    assert missing_fields((DEBTOR, ORDER), {}) == (DEBTOR,)
    assert missing_fields((DEBTOR, ORDER), {"debiteurnummer": "42"}) == ()
