"""What agents are told about their commands: faults and #help, in the team's language."""

from __future__ import annotations

import pytest

from mailgate.core.agent_words import Fault, command_reference, faults_text, signs_off
from mailgate.core.workflow import DEFAULT_WORKFLOW

W = DEFAULT_WORKFLOW


def test_help_is_in_one_language_and_lists_what_an_agent_may_type() -> None:
    dutch, english = command_reference(W, "nl"), command_reference(W, "en")
    assert "Klaar voor test" in dutch and "Ready for test" in english
    assert "#toestand" in english and "#samenvoegen <#nummer>" in dutch
    for internal in ("waiting_customer", "archived", "Gearchiveerd", "Nieuw"):
        assert internal not in dutch  # never an internal name, never a state no one may pick
    assert "customer" not in dutch and "klant" not in english


def test_faults_name_states_by_the_labels_an_agent_may_type_back() -> None:
    fault = Fault("#heropenen", "not_allowed", ("open", "in_progress"), "closed")
    assert fault.text("nl", W) == (
        "#heropenen: niet mogelijk zolang het ticket Gesloten is; wel mogelijk: Open, "
        "In behandeling"
    )
    assert fault.text("en", W).endswith("while the ticket is Closed; allowed: Open, In progress")
    nothing = Fault("#status x", "unknown_status", ())
    assert nothing.text("nl", W) == "#status x: onbekende status; nu mogelijk: geen"
    assert faults_text([nothing, Fault("#x", "unknown_command")], "fr", W).splitlines() == [
        "#status x: unknown status; possible now: none",
        "#x: unknown command; try #help",
    ]  # a language without words of its own: English


@pytest.mark.parametrize(
    ("text", "name", "signed"),
    [
        ("Probeert u het nog eens?\n\nMet vriendelijke groet,\nBob", "Bob Visser", True),
        ("Probeert u het nog eens?\n\nGroet, Bob Visser\nSupport", "Bob Visser", True),
        ("Probeert u het nog eens?\n\nBob", "Bob", True),
        ("Bob belt u morgen terug over de printer.", "Bob Visser", False),
        ("Probeert u het nog eens?", "Bob Visser", False),
        ("Groeten van het hele team", "Support", False),
        ("Dank u wel.\n\n— Support", "Support", True),
        ("Zie bijlage.", "", False),
    ],
)
def test_an_answer_that_signs_itself_off_is_recognised(text: str, name: str, signed: bool) -> None:
    assert signs_off(text, name) is signed
