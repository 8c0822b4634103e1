from __future__ import annotations

import pytest

from mailgate.core.commands import Intent, Verb, customer_intent, read_commands


def test_commands_are_read_until_the_first_line_of_text() -> None:
    block = read_commands("#Status wacht op klant\n\n#prioriteit: hoog\nBeste klant,\n#type bug")
    assert [(c.verb, c.argument) for c in block.commands] == [
        (Verb.STATUS, "wacht op klant"),
        (Verb.PRIORITY, "hoog"),
    ]
    assert block.text == "Beste klant,\n#type bug"
    assert block.unknown == ()


def test_unknown_commands_are_kept_and_ticket_numbers_are_text() -> None:
    block = read_commands("#frobnicate now\n#1042 is hetzelfde probleem")
    assert block.unknown == ("#frobnicate now",)
    assert block.text == "#1042 is hetzelfde probleem"


@pytest.mark.parametrize(
    ("word", "verb"),
    [
        ("toestand", Verb.STATUS),
        ("SOORT", Verb.TYPE),
        ("toewijzen", Verb.ASSIGN),
        ("intern", Verb.INTERNAL),
        ("sluiten", Verb.CLOSE),
        ("heropenen", Verb.REOPEN),
        ("samenvoegen", Verb.MERGE),
        ("offerte", Verb.QUOTE),
        ("hulp", Verb.HELP),
        ("cc", Verb.CC),
    ],
)
def test_dutch_aliases(word: str, verb: Verb) -> None:
    assert read_commands(f"#{word} x").commands[0].verb is verb


@pytest.mark.parametrize(
    ("text", "intent", "reason"),
    [
        ("Akkoord, ga uw gang.", Intent.APPROVE, "ga uw gang."),
        ("akkoord", Intent.APPROVE, ""),
        ("#approve", Intent.APPROVE, ""),
        ("Approved!", Intent.APPROVE, ""),
        ("Niet akkoord: te duur", Intent.REJECT, "te duur"),
        ("Not approved\nthe export still fails", Intent.REJECT, "the export still fails"),
        ("#reject", Intent.REJECT, ""),
        ("Opgelost", Intent.RESOLVED, ""),
        ("Beschouw deze aanvraag als opgelost", Intent.RESOLVED, ""),
        ("#resolved", Intent.RESOLVED, ""),
        ("\n\n  opgelost, dank!", Intent.RESOLVED, "dank!"),
    ],
)
def test_customer_intents(text: str, intent: Intent, reason: str) -> None:
    found = customer_intent(text)
    assert found is not None and (found.intent, found.reason) == (intent, reason)


@pytest.mark.parametrize(
    "text",
    [
        "Het is nog niet opgelost.",
        "Akkoordverklaring volgt morgen.",
        "Dank voor uw akkoord gisteren",
        "",
        "Resolvedness is a word?",
    ],
)
def test_ordinary_text_states_no_intent(text: str) -> None:
    assert customer_intent(text) is None
