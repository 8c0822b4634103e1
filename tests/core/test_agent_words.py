"""What agents are told about their commands: faults and #help, in the team's language."""

from __future__ import annotations

from mailgate.core.agent_words import Fault, command_reference, faults_text
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
