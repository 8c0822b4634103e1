"""Decide what a message does to its ticket: an agent's commands, a customer's answer.

``plan_agent`` turns the command lines of an agent's reply into one plan (the
new status by the workflow, field changes, whether the answer is relayed) or
refuses it whole, naming every fault and the allowed values, so that a typo
never reaches a customer. ``plan_customer`` reads a customer's answer (a reply,
"akkoord", "niet akkoord", "opgelost") against the workflow and the policy for
replies to closed tickets. Both are pure: the shell carries the plan out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from mailgate.core.address import AddressPolicy
from mailgate.core.agent_words import Fault, faults_text
from mailgate.core.calendar import BusinessCalendar
from mailgate.core.commands import (
    CC_ADD,
    CC_REMOVE,
    MYSELF,
    Command,
    CommandBlock,
    Intent,
    Verb,
    customer_intent,
)
from mailgate.core.model import PRIORITIES, TICKET_TYPES, Participant, Role
from mailgate.core.sla import parse_due
from mailgate.core.terms import priority, ticket_type
from mailgate.core.tokens import ticket_number
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
    held: int = 0  # strangers' mails held for the team's decision (read for #release only)


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
    held: str = ""  # the team's decision on the ticket's held mails: "release" or "reject"
    fields: tuple[tuple[str, str], ...] = ()  # reference fields an agent set: (name, value)
    new_ticket: bool = False  # a reply that must start a ticket of its own, linked
    reason: str = ""
    notes: tuple[str, ...] = field(default=())  # what was done, for the event log


@dataclass(frozen=True, slots=True)
class Refusal:
    """An agent's message that was not carried out, and every fault in it."""

    faults: tuple[Fault, ...]

    def text(self, language: str, workflow: Workflow) -> str:
        """The faults in ``language``, one a line (``agent_words``)."""
        return faults_text(self.faults, language, workflow)


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
    field_names: Iterable[str] = (),
) -> Plan | Refusal:
    """The plan for an agent's message on ``ticket``, or a refusal listing every fault.
    ``field_names``: the reference fields ``#field`` may set.

    ``calendar`` and ``now`` let ``#due`` be checked (a business duration or a date
    that has not passed)."""
    draft = _Draft(workflow, ticket, author, policy, set(existing), calendar, now, ticket.status)
    draft.field_names = frozenset(field_names)
    draft.errors += [Fault(line, "unknown_command") for line in block.unknown]
    for command in block.commands:
        _READ[command.verb](draft, command, block)
    if draft.errors:
        return Refusal(tuple(draft.errors))
    return draft.plan(block)


@dataclass
class _Draft:
    """An agent's plan while its commands are read, one by one, with every fault noted."""

    workflow: Workflow
    ticket: TicketState
    author: str
    policy: AddressPolicy
    known: set[int]  # the ticket numbers that exist (for #merge)
    calendar: BusinessCalendar | None
    now: datetime | None
    status: str
    template: str = ""
    notify: Party = Party.CUSTOMER
    moved: bool = False
    quote: str = ""
    merge_into: int | None = None
    held: str = ""
    field_names: frozenset[str] = frozenset()
    fields: dict[str, str] = field(default_factory=dict)
    errors: list[Fault] = field(default_factory=list)
    changes: list[FieldChange] = field(default_factory=list)
    cc_add: list[str] = field(default_factory=list)
    cc_remove: list[str] = field(default_factory=list)

    def step(self, trigger: Trigger, target: str, line: str) -> None:
        found = move(self.workflow, self.status, trigger, target)
        if found is None:
            allowed = self.workflow.state(self.status).next
            self.errors.append(Fault(line, "not_allowed", allowed, self.status))
            return
        self.status, self.template, self.notify = found.new, found.template, found.notify
        self.moved = True

    def change(self, name: str, old: str, new: str) -> None:
        if new != old:
            self.changes.append(FieldChange(name, old, new))

    def plan(self, block: CommandBlock) -> Plan:
        """The plan once every command is read without fault."""
        ticket, text = self.ticket, block.text
        internal = block.has(Verb.INTERNAL)
        if block.has(Verb.QUOTE):
            self.change("approval", ticket.approval, "pending")
            self.changes.append(FieldChange("quote", "", self.quote))
        relay = bool(text.strip()) and not internal
        steered = any(c.verb in _STEERING for c in block.commands)
        if relay and not steered:  # a plain answer: the workflow's rule for replies, if any
            answered = move(self.workflow, self.status, Trigger.AGENT_REPLY)
            if answered is not None:
                self.status, self.template = answered.new, answered.template
                self.notify, self.moved = answered.notify, True
        return Plan(
            move=Move(ticket.status, self.status, self.template, self.notify)
            if self.moved
            else None,
            changes=tuple(self.changes),
            relay=relay,
            internal=internal,
            text=text,
            merge_into=self.merge_into,
            cc_add=tuple(self.cc_add),
            cc_remove=tuple(self.cc_remove),
            help=block.has(Verb.HELP),
            held=self.held,
            fields=tuple(self.fields.items()),
        )


_STEERING = (Verb.STATUS, Verb.CLOSE, Verb.REOPEN, Verb.QUOTE)


def _status(draft: _Draft, command: Command, block: CommandBlock) -> None:
    state = draft.workflow.find(command.argument) if command.argument else None
    if state is None:
        allowed = draft.workflow.state(draft.status).next
        draft.errors.append(Fault(command.line, "unknown_status", allowed))
    else:
        draft.step(Trigger.STATUS, state.name, command.line)


def _quote(draft: _Draft, command: Command, block: CommandBlock) -> None:
    draft.quote = command.argument or block.text
    if not draft.quote:
        draft.errors.append(Fault(command.line, "quote_text"))
    else:
        draft.step(Trigger.QUOTE, "", command.line)


def _choice(
    name: str, parse: Callable[[str], str | None], known: Iterable[str]
) -> Callable[[_Draft, Command, CommandBlock], None]:
    """Reads a field's command (#priority, #type): one of ``known``, in any language."""

    def read(draft: _Draft, command: Command, block: CommandBlock) -> None:
        value = parse(command.argument)
        if value is None:
            draft.errors.append(Fault(command.line, f"unknown_{name}", tuple(known)))
        else:
            draft.change(name, str(getattr(draft.ticket, name)), value)

    return read


def _assign(draft: _Draft, command: Command, block: CommandBlock) -> None:
    arg, author = command.argument, draft.author
    who = author.lower() if arg.lower() in MYSELF else _address(arg)
    if who is None and arg and "@" not in arg and " " not in arg.strip():
        who = f"{arg.strip().lower()}@{author.rpartition('@')[2].lower()}"
    if who is None or not draft.policy.is_agent(who):
        draft.errors.append(Fault(command.line, "not_an_agent"))
    else:
        draft.change("assignee", draft.ticket.assignee or "", who)


def _due(draft: _Draft, command: Command, block: CommandBlock) -> None:
    calendar, now = draft.calendar, draft.now
    if calendar is None or now is None or parse_due(command.argument, calendar, now) is None:
        draft.errors.append(Fault(command.line, "bad_due"))
    else:
        draft.changes.append(FieldChange("due", "", command.argument))


def _merge(draft: _Draft, command: Command, block: CommandBlock) -> None:
    target = ticket_number(command.argument)
    if target is None or target not in draft.known or target == draft.ticket.number:
        draft.errors.append(Fault(command.line, "no_other_ticket", (), command.argument or "-"))
    else:
        draft.merge_into = target


def _cc(draft: _Draft, command: Command, block: CommandBlock) -> None:
    action, _, rest = command.argument.partition(" ")
    address = _address(rest)
    if action.lower() not in CC_ADD | CC_REMOVE or address is None:
        draft.errors.append(Fault(command.line, "cc_usage"))
    elif draft.policy.is_ours(address):
        draft.errors.append(Fault(command.line, "cc_ours", (), address))
    elif action.lower() in CC_ADD:
        draft.cc_add.append(address)
    elif address in (p.address for p in draft.ticket.participants if p.role is Role.REQUESTER):
        draft.errors.append(Fault(command.line, "cc_requester"))
    else:
        draft.cc_remove.append(address)


def _held(draft: _Draft, command: Command, block: CommandBlock) -> None:
    if not draft.ticket.held:
        draft.errors.append(Fault(command.line, "nothing_held"))
    elif draft.held and draft.held != command.verb.value:
        draft.errors.append(Fault(command.line, "release_or_reject"))
    else:
        draft.held = command.verb.value


def _field(draft: _Draft, command: Command, block: CommandBlock) -> None:
    name, _, value = command.argument.strip().partition(" ")
    name, value = name.lower(), value.strip()
    if name not in draft.field_names or not value or len(value) > 200:
        names = tuple(sorted(draft.field_names))
        draft.errors.append(Fault(command.line, "unknown_field", names))
    else:
        draft.fields[name] = value


def _nothing(draft: _Draft, command: Command, block: CommandBlock) -> None:
    """A command read off the whole block when the plan is made (#internal, #help)."""


# What each command does to the draft: the one table of agent commands' effects.
_READ: dict[Verb, Callable[[_Draft, Command, CommandBlock], None]] = {
    Verb.STATUS: _status,
    Verb.CLOSE: lambda d, c, b: d.step(Trigger.CLOSE, "", c.line),
    Verb.REOPEN: lambda d, c, b: d.step(Trigger.REOPEN, "", c.line),
    Verb.QUOTE: _quote,
    Verb.PRIORITY: _choice("priority", priority, PRIORITIES),
    Verb.TYPE: _choice("type", ticket_type, TICKET_TYPES),
    Verb.ASSIGN: _assign,
    Verb.DUE: _due,
    Verb.MERGE: _merge,
    Verb.CC: _cc,
    Verb.INTERNAL: _nothing,
    Verb.HELP: _nothing,
    Verb.FIELD: _field,
    Verb.RELEASE: _held,
    Verb.REJECT: _held,
}


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
