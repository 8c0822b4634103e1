"""Decide what a message does to its ticket: an agent's commands, a customer's answer.

``plan_agent`` turns the command lines of an agent's reply into one plan (the
new status by the workflow, field changes, whether the answer is relayed) or
refuses it whole, naming every fault and the allowed values, so that a typo
never reaches a customer. ``plan_customer`` reads a customer's answer (a reply,
"akkoord", "niet akkoord", "opgelost") against the workflow and the policy for
replies to closed tickets. Both are pure: the shell carries the plan out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from mailgate.core.address import AddressPolicy
from mailgate.core.calendar import BusinessCalendar
from mailgate.core.commands import (
    CC_ADD,
    CC_REMOVE,
    MYSELF,
    CommandBlock,
    Intent,
    Verb,
    customer_intent,
)
from mailgate.core.model import PRIORITIES, TICKET_TYPES, Participant, Role
from mailgate.core.sla import parse_due
from mailgate.core.terms import priority, ticket_type
from mailgate.core.workflow import ClosedReply, Group, Move, Party, Trigger, Workflow, move

APPROVAL_STATES = ("none", "pending", "approved", "rejected")


@dataclass(frozen=True, slots=True)
class TicketState:
    """The fields of a ticket that commands and answers read."""

    number: int
    status: str
    type: str
    priority: str
    assignee: str | None
    approval: str
    participants: tuple[Participant, ...]


@dataclass(frozen=True, slots=True)
class FieldChange:
    field: str
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class Plan:
    """What one message does to its ticket."""

    move: Move | None = None
    changes: tuple[FieldChange, ...] = ()
    relay: bool = False  # an agent's answer goes to the customer
    internal: bool = False  # an agent's note: kept, other agents told, not relayed
    text: str = ""  # the message text without its command lines
    merge_into: int | None = None
    cc_add: tuple[str, ...] = ()
    cc_remove: tuple[str, ...] = ()
    help: bool = False
    new_ticket: bool = False  # a reply that must start a ticket of its own, linked
    reason: str = ""
    notes: tuple[str, ...] = field(default=())  # what was done, for the event log


@dataclass(frozen=True, slots=True)
class Refusal:
    """An agent's message that was not carried out, and why."""

    errors: tuple[str, ...]


def ticket_ref(argument: str) -> int | None:
    """The ticket number in '#1042', '1042' or a ticket tag, else None."""
    text = argument.strip().lstrip("[").split("]")[0]
    text = text.rsplit("#", 1)[-1].split("-")[0]
    return int(text) if text.isdigit() else None


def _address(argument: str) -> str | None:
    value = argument.strip().strip("<>").lower()
    local, at, domain = value.rpartition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in value):
        return None
    return value


def plan_agent(
    workflow: Workflow,
    ticket: TicketState,
    block: CommandBlock,
    *,
    author: str,
    policy: AddressPolicy,
    existing: Iterable[int] = (),
    calendar: BusinessCalendar | None = None,
    now: datetime | None = None,
) -> Plan | Refusal:
    """The plan for an agent's message on ``ticket``, or a refusal listing every fault.

    ``calendar`` and ``now`` let ``#due`` be checked (a business duration or a date
    that has not passed)."""
    errors = [f"{line}: unknown command; try #help" for line in block.unknown]
    status = ticket.status
    template = ""
    notify = Party.CUSTOMER
    moved = False
    changes: list[FieldChange] = []
    internal = block.has(Verb.INTERNAL)
    merge_into: int | None = None
    cc_add: list[str] = []
    cc_remove: list[str] = []
    quote = ""
    known = set(existing)

    def step(trigger: Trigger, target: str, line: str) -> None:
        nonlocal status, template, notify, moved
        found = move(workflow, status, trigger, target)
        if found is None:
            allowed = ", ".join(workflow.state(status).next) or "none"
            errors.append(f"{line}: not allowed while the ticket is {status}; allowed: {allowed}")
            return
        status, template, notify, moved = found.new, found.template, found.notify, True

    for command in block.commands:
        arg = command.argument
        if command.verb is Verb.STATUS:
            state = workflow.find(arg) if arg else None
            if state is None:
                names = ", ".join(s.name for s in workflow.states)
                errors.append(f"{command.line}: unknown status; known: {names}")
            else:
                step(Trigger.STATUS, state.name, command.line)
        elif command.verb is Verb.CLOSE:
            step(Trigger.CLOSE, "", command.line)
        elif command.verb is Verb.REOPEN:
            step(Trigger.REOPEN, "", command.line)
        elif command.verb is Verb.QUOTE:
            quote = arg or block.text
            if not quote:
                errors.append(f"{command.line}: the quote needs a text (what, how much)")
            else:
                step(Trigger.QUOTE, "", command.line)
        elif command.verb is Verb.PRIORITY:
            value = priority(arg)
            if value is None:
                errors.append(f"{command.line}: unknown priority; known: {', '.join(PRIORITIES)}")
            elif value != ticket.priority:
                changes.append(FieldChange("priority", ticket.priority, value))
        elif command.verb is Verb.TYPE:
            value = ticket_type(arg)
            if value is None:
                errors.append(f"{command.line}: unknown type; known: {', '.join(TICKET_TYPES)}")
            elif value != ticket.type:
                changes.append(FieldChange("type", ticket.type, value))
        elif command.verb is Verb.ASSIGN:
            who = author.lower() if arg.lower() in MYSELF else _address(arg)
            if who is None and arg and "@" not in arg and " " not in arg.strip():
                who = f"{arg.strip().lower()}@{author.rpartition('@')[2].lower()}"
            if who is None or not policy.is_agent(who):
                errors.append(f"{command.line}: not an agent; give an agent's address or 'me'")
            elif who != (ticket.assignee or ""):
                changes.append(FieldChange("assignee", ticket.assignee or "", who))
        elif command.verb is Verb.DUE:
            if calendar is None or now is None or parse_due(arg, calendar, now) is None:
                errors.append(
                    f"{command.line}: give a business duration (3 days, 16 hours, 2 weeks) "
                    "or a date to come (2026-03-01, 2026-03-01 12:00)"
                )
            else:
                changes.append(FieldChange("due", "", arg))
        elif command.verb is Verb.MERGE:
            target = ticket_ref(arg)
            if target is None or target not in known or target == ticket.number:
                errors.append(f"{command.line}: no other ticket {arg or '(none given)'}")
            else:
                merge_into = target
        elif command.verb is Verb.CC:
            action, _, rest = arg.partition(" ")
            address = _address(rest)
            if action.lower() not in CC_ADD | CC_REMOVE or address is None:
                errors.append(f"{command.line}: use #cc add <address> or #cc remove <address>")
            elif policy.is_ours(address):
                errors.append(f"{command.line}: {address} is one of our own addresses")
            elif action.lower() in CC_ADD:
                cc_add.append(address)
            else:
                requester = [p.address for p in ticket.participants if p.role is Role.REQUESTER]
                if address in requester:
                    errors.append(f"{command.line}: the requester cannot be removed")
                else:
                    cc_remove.append(address)
    if errors:
        return Refusal(tuple(errors))
    text = block.text
    if block.has(Verb.QUOTE):
        if ticket.approval != "pending":
            changes.append(FieldChange("approval", ticket.approval, "pending"))
        changes.append(FieldChange("quote", "", quote))
    relay = bool(text.strip()) and not internal
    steered = any(
        c.verb in (Verb.STATUS, Verb.CLOSE, Verb.REOPEN, Verb.QUOTE) for c in block.commands
    )
    if relay and not steered:  # a plain answer: the workflow's rule for replies, if any
        answered = move(workflow, status, Trigger.AGENT_REPLY)
        if answered is not None:
            status, template, notify, moved = answered.new, answered.template, answered.notify, True
    return Plan(
        move=Move(ticket.status, status, template, notify) if moved else None,
        changes=tuple(changes),
        relay=relay,
        internal=internal,
        text=text,
        merge_into=merge_into,
        cc_add=tuple(cc_add),
        cc_remove=tuple(cc_remove),
        help=block.has(Verb.HELP),
    )


def is_party(ticket: TicketState, address: str | None) -> bool:
    """Whether ``address`` is the ticket's requester or one of its CC participants."""
    if address is None:
        return False
    wanted = address.lower()
    return any(
        p.address == wanted and p.role in (Role.REQUESTER, Role.CC) for p in ticket.participants
    )


_TRIGGERS = {
    Intent.RESOLVED: Trigger.CUSTOMER_RESOLVED,
    Intent.APPROVE: Trigger.CUSTOMER_APPROVES,
    Intent.REJECT: Trigger.CUSTOMER_REJECTS,
}


def plan_customer(
    workflow: Workflow, ticket: TicketState, text: str, *, author: str | None
) -> Plan:
    """The plan for a customer's message on ``ticket``.

    A reply to an archived ticket always starts a new, linked one; to a closed
    one it follows ``reply_to_closed``. "akkoord", "niet akkoord" and "opgelost"
    count only from the requester or a CC participant and only where the
    workflow has a rule for them; otherwise the message is an ordinary reply.
    """
    group = workflow.group(ticket.status)
    if group is Group.ARCHIVED:
        return Plan(new_ticket=True, text=text, reason=f"#{ticket.number} is archived")
    if group is Group.CLOSED:
        policy = workflow.reply_to_closed
        if policy is ClosedReply.NEW_TICKET:
            return Plan(new_ticket=True, text=text, reason=f"#{ticket.number} is closed")
        if policy is ClosedReply.APPEND:
            return Plan(text=text, reason="reply to a closed ticket appended")
        reopened = move(workflow, ticket.status, Trigger.REOPEN) or Move(
            ticket.status, workflow.reopen_to, "", Party.TEAM
        )
        return Plan(move=reopened, text=text, reason="reply to a closed ticket reopens it")
    said = customer_intent(text)
    if said is not None and is_party(ticket, author):
        found = move(workflow, ticket.status, _TRIGGERS[said.intent])
        if found is not None:
            changes: tuple[FieldChange, ...] = ()
            if ticket.approval == "pending" and said.intent is not Intent.RESOLVED:
                verdict = "approved" if said.intent is Intent.APPROVE else "rejected"
                changes = (FieldChange("approval", "pending", verdict),)
            return Plan(
                move=found,
                changes=changes,
                text=text,
                reason=f"customer: {said.intent.value}"
                + (f" ({said.reason[:200]})" if said.reason else ""),
            )
    return Plan(move=move(workflow, ticket.status, Trigger.CUSTOMER_REPLY), text=text)


def command_reference(workflow: Workflow) -> str:
    """The text of ``#help``: every command with its Dutch alias and allowed values."""
    states = ", ".join(s.name for s in workflow.states)
    return "\n".join(
        (
            f"#status <state>          #toestand    {states}",
            f"#priority <priority>     #prioriteit  {', '.join(PRIORITIES)}",
            f"#type <type>             #soort       {', '.join(TICKET_TYPES)}",
            "#assign <agent|me>       #toewijzen",
            "#internal                #intern      a note: not sent to the customer",
            "#close                   #sluiten",
            "#reopen                  #heropenen",
            "#merge <#number>         #samenvoegen this ticket into that one",
            "#quote <text>            #offerte     extra work: the customer is asked to approve",
            "#cc add|remove <address> #cc toevoegen|verwijderen",
            "#due <duration|date>     #termijn     agree the solve target: 3 days, 2026-03-01",
            "#help                    #hulp",
            "",
            "Text below the commands is sent to the customer; a mail of only commands",
            "changes the ticket without mailing the customer unless the new status asks it.",
        )
    )
