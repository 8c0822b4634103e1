from __future__ import annotations

import pytest

from mailgate.core.submission import KeywordRule, submit

RULES = (KeywordRule(("site down", "storing", "werkt niet"), "bug", "high"),)


def run(title: str, text: str = "Hallo", **defaults: str):  # type: ignore[no-untyped-def]
    return submit(
        title,
        text,
        RULES,
        default_type=defaults.get("type", "question"),
        default_priority=defaults.get("priority", "medium"),
    )


def test_queue_defaults_when_nothing_is_said() -> None:
    found = run("Vraag over facturen")
    assert (found.type, found.priority, found.asked_priority) == ("question", "medium", "")
    assert found.reason == "queue defaults"


@pytest.mark.parametrize(
    ("title", "type_", "priority", "clean"),
    [
        ("[bug] [kritiek] Export kapot", "bug", "critical", "Export kapot"),
        ("[Vraag] Hoe exporteer ik?", "question", "medium", "Hoe exporteer ik?"),
        ("[incident][hoog] Inloggen", "bug", "high", "Inloggen"),
        ("[meerwerk] Nieuw rapport", "extra_request", "medium", "Nieuw rapport"),
        ("[ACME-123] Factuur", "question", "medium", "[ACME-123] Factuur"),
    ],
)
def test_subject_tags(title: str, type_: str, priority: str, clean: str) -> None:
    found = run(title)
    assert (found.type, found.priority, found.title) == (type_, priority, clean)


def test_field_lines_at_the_top_of_the_body() -> None:
    found = run("Inloggen", "Type: incident\nPrioriteit: Hoog\n\nIk kan niet inloggen.")
    assert (found.type, found.priority) == ("bug", "high")
    late = run("Inloggen", "Hallo,\nPriority: critical")
    assert late.priority == "medium"  # only lines at the top count


def test_keyword_rules_fill_what_tags_left_open() -> None:
    assert (run("Alles ligt stil", "Er is een storing.").type, run("x", "storing").priority) == (
        "bug",
        "high",
    )
    tagged = run("[laag] Site down?")
    assert (tagged.type, tagged.priority) == ("bug", "low")
    assert run("Werkt nietig").type == "question"  # whole words only


@pytest.mark.parametrize(
    ("title", "type_", "given", "asked"),
    [
        ("[vraag] [kritiek] Hoe?", "question", "high", "critical"),
        ("[idee] [hoog] Donkere modus", "feedback", "medium", "high"),
        ("[meerwerk] [kritiek] Rapport", "extra_request", "medium", "critical"),
        ("[bug] [kritiek] Down", "bug", "critical", ""),
    ],
)
def test_only_a_bug_may_be_critical_and_wishes_at_most_medium(
    title: str, type_: str, given: str, asked: str
) -> None:
    found = run(title)
    assert (found.type, found.priority, found.asked_priority) == (type_, given, asked)
    if asked:
        assert "lowered" in found.reason


def test_a_queue_default_is_clamped_too() -> None:
    found = run("Wens", type="feedback", priority="critical")
    assert (found.priority, found.asked_priority) == ("medium", "critical")
