from __future__ import annotations

from dataclasses import replace

import pytest

from mailgate.core.address import AddressPolicy, QueueAddresses
from mailgate.core.commands import read_commands
from mailgate.core.desk import (
    FieldChange,
    Plan,
    Refusal,
    TicketState,
    plan_agent,
    plan_customer,
)
from mailgate.core.model import Participant, Role
from mailgate.core.tokens import ticket_number
from mailgate.core.workflow import DEFAULT_WORKFLOW, ClosedReply

W = DEFAULT_WORKFLOW
POLICY = AddressPolicy(
    queues=(QueueAddresses("support", ("support@example.com",)),), agent_domains=("example.com",)
)
TICKET = TicketState(
    number=7,
    status="open",
    type="question",
    priority="medium",
    assignee=None,
    approval="none",
    participants=(
        Participant("alice@customer.nl", "Alice", Role.REQUESTER, "customer.nl"),
        Participant("carl@customer.nl", "Carl", Role.CC, "customer.nl"),
        Participant("bob@example.com", "Bob", Role.AGENT, "example.com"),
    ),
)


def agent(text: str, ticket: TicketState = TICKET, existing: tuple[int, ...] = ()) -> Plan:
    plan = plan_agent(
        W, ticket, read_commands(text), author="bob@example.com", policy=POLICY, existing=existing
    )
    assert isinstance(plan, Plan), plan
    return plan


def test_a_plain_answer_is_relayed_and_waits_for_the_customer() -> None:
    plan = agent("Probeert u het nog eens?")
    assert plan.relay and plan.text == "Probeert u het nog eens?"
    assert plan.move is not None and plan.move.new == "waiting_customer"


def test_commands_only_change_without_relay() -> None:
    plan = agent("#status ready_for_test\n#prio hoog")
    assert not plan.relay
    assert plan.move is not None and (plan.move.new, plan.move.template) == (
        "ready_for_test",
        "action_required",
    )
    assert plan.changes == (FieldChange("priority", "medium", "high"),)


def test_an_explicit_status_wins_over_the_reply_rule() -> None:
    plan = agent("#status in_progress\nWe kijken ernaar.")
    assert plan.relay and plan.move is not None and plan.move.new == "in_progress"


def test_a_note_is_not_relayed_and_does_not_move() -> None:
    plan = agent("#intern\nKlant is lastig.")
    assert plan.internal and not plan.relay and plan.move is None


def test_quote_sets_approval_pending_with_the_text() -> None:
    plan = agent("#offerte 4 uur à 95 euro")
    assert plan.move is not None and plan.move.new == "approval_needed"
    assert FieldChange("approval", "none", "pending") in plan.changes
    assert FieldChange("quote", "", "4 uur à 95 euro") in plan.changes


def test_assign_me_a_local_part_and_refuse_a_stranger() -> None:
    assert agent("#assign me").changes == (FieldChange("assignee", "", "bob@example.com"),)
    assert agent("#toewijzen eve").changes == (FieldChange("assignee", "", "eve@example.com"),)
    refused = plan_agent(
        W, TICKET, read_commands("#assign x@evil.org"), author="bob@example.com", policy=POLICY
    )
    assert isinstance(refused, Refusal)


def test_merge_needs_an_existing_other_ticket() -> None:
    assert agent("#merge #9", existing=(9,)).merge_into == 9
    for text in ("#merge #9", "#merge #7", "#merge"):
        refused = plan_agent(
            W, TICKET, read_commands(text), author="bob@example.com", policy=POLICY, existing=(7,)
        )
        assert isinstance(refused, Refusal), text


def test_every_fault_is_reported_at_once() -> None:
    refused = plan_agent(
        W,
        TICKET,
        read_commands("#status zwevend\n#priority enorm\n#bogus"),
        author="bob@example.com",
        policy=POLICY,
    )
    assert isinstance(refused, Refusal) and len(refused.faults) == 3
    assert refused.text("nl", W).splitlines() == [
        "#bogus: onbekende opdracht; zie #hulp",
        "#status zwevend: onbekende status; nu mogelijk: In behandeling, Meer info nodig, "
        "Klaar voor test, Akkoord nodig, Pauze, Opgelost, Gesloten",
        "#priority enorm: onbekende prioriteit; kies uit: kritiek, hoog, gemiddeld, laag",
    ]
    assert refused.text("en", W).splitlines()[0] == "#bogus: unknown command; try #help"


def test_cc_add_and_remove() -> None:
    plan = agent("#cc add Dave@Customer.nl\n#cc verwijderen carl@customer.nl")
    assert (plan.cc_add, plan.cc_remove) == (("dave@customer.nl",), ("carl@customer.nl",))
    ours = plan_agent(
        W,
        TICKET,
        read_commands("#cc add support@example.com"),
        author="b@example.com",
        policy=POLICY,
    )
    assert isinstance(ours, Refusal)


@pytest.mark.parametrize(
    ("status", "approval", "text", "new", "approval_after"),
    [
        ("waiting_customer", "none", "Hier is de code.", "open", None),
        ("approval_needed", "pending", "Akkoord", "in_progress", "approved"),
        ("approval_needed", "pending", "Niet akkoord, te duur", "open", "rejected"),
        ("ready_for_test", "approved", "akkoord", "resolved", None),
        ("ready_for_test", "approved", "niet akkoord: faalt", "open", None),
        ("open", "none", "Opgelost", "closed", None),
        ("open", "none", "akkoord", None, None),  # nothing to approve: an ordinary reply
    ],
)
def test_customer_answers(
    status: str, approval: str, text: str, new: str | None, approval_after: str | None
) -> None:
    ticket = replace(TICKET, status=status, approval=approval)
    plan = plan_customer(W, ticket, text, author="alice@customer.nl")
    assert (plan.move.new if plan.move else None) == new
    changes = {c.field: c.new for c in plan.changes}
    assert changes.get("approval") == approval_after


def test_only_the_requester_and_cc_may_close_or_approve() -> None:
    ticket = replace(TICKET, status="approval_needed", approval="pending")
    for outsider in ("dave@customer.nl", "bob@example.com", None):
        plan = plan_customer(W, ticket, "Akkoord", author=outsider)
        assert plan.move is None and plan.changes == (), outsider
    assert plan_customer(W, ticket, "Akkoord", author="carl@customer.nl").move is not None


@pytest.mark.parametrize(
    ("policy", "new", "new_ticket"),
    [
        (ClosedReply.REOPEN, "open", False),
        (ClosedReply.APPEND, None, False),
        (ClosedReply.NEW_TICKET, None, True),
    ],
)
def test_a_reply_to_a_closed_ticket(policy: ClosedReply, new: str | None, new_ticket: bool) -> None:
    workflow = replace(W, reply_to_closed=policy)
    plan = plan_customer(workflow, replace(TICKET, status="closed"), "Nog iets", author=None)
    assert (plan.move.new if plan.move else None, plan.new_ticket) == (new, new_ticket)


def test_a_reply_to_an_archived_ticket_always_starts_a_new_one() -> None:
    for policy in ClosedReply:
        workflow = replace(W, reply_to_closed=policy)
        plan = plan_customer(workflow, replace(TICKET, status="archived"), "Hoi", author=None)
        assert plan.new_ticket


def test_ticket_references_and_the_reference_text() -> None:
    assert [ticket_number(t) for t in ("#12", "12", "[#12-ABCDEFGH]", "[ACME#12-X]", "x")] == [
        12,
        12,
        12,
        12,
        None,
    ]
