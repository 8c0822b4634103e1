from __future__ import annotations

from dataclasses import replace

import pytest

from mailgate.core.notify import Kind
from mailgate.core.workflow import (
    ACTION_BY,
    DEFAULT_WORKFLOW,
    Group,
    Party,
    State,
    Timer,
    Transition,
    Trigger,
    move,
    problems,
)

TEMPLATES = [k.value for k in Kind]
W = DEFAULT_WORKFLOW


def test_the_shipped_workflow_has_no_problems() -> None:
    assert problems(W, TEMPLATES) == []


def test_the_shipped_workflow_has_the_seeds_states_and_groups() -> None:
    groups = {s.name: s.group for s in W.states}
    assert groups == {
        "new": Group.SUPPORT,
        "open": Group.SUPPORT,
        "in_progress": Group.SUPPORT,
        "waiting_customer": Group.CUSTOMER,
        "ready_for_test": Group.CUSTOMER,
        "approval_needed": Group.CUSTOMER,
        "on_hold": Group.HOLD,
        "resolved": Group.CUSTOMER,
        "closed": Group.CLOSED,
        "archived": Group.ARCHIVED,
    }
    assert W.state("waiting_customer").nl == "Meer info nodig"
    assert W.state("ready_for_test").nl == "Klaar voor test"
    assert ACTION_BY[Group.HOLD] == "nobody"


@pytest.mark.parametrize(
    ("status", "trigger", "expected"),
    [
        ("waiting_customer", Trigger.CUSTOMER_REPLY, "open"),
        ("resolved", Trigger.CUSTOMER_REPLY, "open"),
        ("ready_for_test", Trigger.CUSTOMER_REPLY, "open"),
        ("open", Trigger.CUSTOMER_REPLY, None),
        ("new", Trigger.AGENT_REPLY, "waiting_customer"),
        ("on_hold", Trigger.AGENT_REPLY, None),
        ("approval_needed", Trigger.CUSTOMER_APPROVES, "in_progress"),
        ("ready_for_test", Trigger.CUSTOMER_APPROVES, "resolved"),
        ("resolved", Trigger.CUSTOMER_APPROVES, "closed"),
        ("open", Trigger.CUSTOMER_APPROVES, None),
        ("ready_for_test", Trigger.CUSTOMER_REJECTS, "open"),
        ("waiting_customer", Trigger.CUSTOMER_RESOLVED, "closed"),
        ("waiting_customer", Trigger.REMIND, "waiting_customer"),
        ("waiting_customer", Trigger.AUTO_RESOLVE, "resolved"),
        ("resolved", Trigger.AUTO_CLOSE, "closed"),
        ("closed", Trigger.ARCHIVE, "archived"),
        ("archived", Trigger.CLOSE, None),
        ("new", Trigger.REOPEN, None),
    ],
)
def test_moves_of_the_shipped_workflow(status: str, trigger: Trigger, expected: str | None) -> None:
    found = move(W, status, trigger)
    assert (found.new if found else None) == expected


def test_an_agents_status_must_be_one_of_next_and_takes_the_rules_template() -> None:
    found = move(W, "open", Trigger.STATUS, "ready_for_test")
    assert found is not None and found.template == "action_required"
    assert found.notify is Party.CUSTOMER
    quiet = move(W, "open", Trigger.STATUS, "in_progress")
    assert quiet is not None and quiet.template == "" and quiet.changed
    assert move(W, "closed", Trigger.STATUS, "ready_for_test") is None
    assert move(W, "archived", Trigger.STATUS, "open") is None


def test_states_are_found_by_name_or_display_name() -> None:
    assert W.find("Klaar voor test") is not None
    assert W.find("klaar-voor-test") == W.state("ready_for_test")
    assert W.find("Feedback needed") == W.state("waiting_customer")
    assert W.find("waiting_customer") == W.state("waiting_customer")
    assert W.find("nonsense") is None


def test_unknown_states_and_templates_are_named_by_key() -> None:
    broken = replace(
        W,
        transitions=(
            *W.transitions,
            Transition(Trigger.REMIND, ("limbo",), "nowhere", "no_such_template"),
        ),
        timers=(*W.timers, Timer("purgatory", 1, Trigger.REMIND)),
        initial="start",
    )
    found = problems(broken, TEMPLATES)
    assert "initial: unknown state 'start'" in found
    assert any("from: unknown state 'limbo'" in p for p in found)
    assert any("to: unknown state 'nowhere'" in p for p in found)
    assert any("template: unknown template 'no_such_template'" in p for p in found)
    assert "timers #7 state: unknown state 'purgatory'" in found


def test_unreachable_states_and_dead_ends_are_found() -> None:
    island = State("island", Group.SUPPORT, "Eiland", "Island", ("open",))
    trap = State("trap", Group.HOLD, "Val", "Trap", ())
    states = tuple(replace(s, next=(*s.next, "trap")) if s.name == "open" else s for s in W.states)
    broken = replace(W, states=(*states, island, trap))
    found = problems(broken, TEMPLATES)
    assert "states.island: cannot be reached from 'new'" in found
    assert "states.trap: no way out (no transition, next or timer)" in found
    assert not any(p.startswith("states.archived") for p in found)
