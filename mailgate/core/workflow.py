"""The ticket workflow as data: states, who acts in each, and what each trigger moves where.

A workflow is a table. Each state belongs to a group that says who must act
(support, customer, nobody while on hold or closed); each transition names a
trigger (a customer's reply, an agent's reply, a customer's "akkoord", a timer
running out, an agent's ``#status``), the states it applies in, the state it
leads to, and the notification it sends. ``move`` reads the table top to bottom;
``problems`` checks a workflow before the daemon starts. The shipped default
(``DEFAULT_WORKFLOW``) follows the seeds' desks and is spelled out in the
shipped config.toml, where a sysadmin edits it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from mailgate.core.terms import squash


class Group(StrEnum):
    """Whose move it is in a state."""

    SUPPORT = "support"
    CUSTOMER = "customer"
    HOLD = "hold"
    CLOSED = "closed"
    ARCHIVED = "archived"


# Who must act next, by group (Club-assistent's grouping).
ACTION_BY: Mapping[Group, str] = {
    Group.SUPPORT: "support",
    Group.CUSTOMER: "customer",
    Group.HOLD: "nobody",
    Group.CLOSED: "nobody",
    Group.ARCHIVED: "nobody",
}


class Trigger(StrEnum):
    """What can move a ticket."""

    CUSTOMER_REPLY = "customer_reply"  # a customer's mail on the ticket
    AGENT_REPLY = "agent_reply"  # an agent's answer relayed to the customer
    CUSTOMER_RESOLVED = "customer_resolved"  # "opgelost", "#resolved"
    CUSTOMER_APPROVES = "customer_approves"  # "akkoord": a quote or a test
    CUSTOMER_REJECTS = "customer_rejects"  # "niet akkoord"
    QUOTE = "quote"  # an agent's #quote: extra work awaits approval
    STATUS = "status"  # an agent's #status or `mailgate set`
    CLOSE = "close"  # an agent's #close
    REOPEN = "reopen"  # an agent's #reopen, or a reply to a closed ticket under `reopen`
    REMIND = "remind"  # timers
    AUTO_RESOLVE = "auto_resolve"
    AUTO_CLOSE = "auto_close"
    ARCHIVE = "archive"


class Party(StrEnum):
    CUSTOMER = "customer"
    TEAM = "team"


class ClosedReply(StrEnum):
    """What a customer's reply to a closed (not yet archived) ticket does."""

    REOPEN = "reopen"  # Studytube: the ticket opens again
    APPEND = "append"  # Club-assistent: kept on the ticket, status unchanged
    NEW_TICKET = "new_ticket"  # KampAdmin's "one question per ticket": a new, linked ticket


@dataclass(frozen=True, slots=True)
class State:
    name: str
    group: Group
    nl: str
    en: str
    next: tuple[str, ...]  # where an agent may move it by #status

    def label(self, language: str) -> str:
        return self.nl if language == "nl" else self.en


@dataclass(frozen=True, slots=True)
class Transition:
    """``on`` in any of ``sources`` (empty: every state but archived) leads to ``to`` (empty:
    stays), sending ``template`` to ``notify`` (empty: no mail)."""

    on: Trigger
    sources: tuple[str, ...]
    to: str
    template: str = ""
    notify: Party = Party.CUSTOMER

    def applies(self, status: str, group: Group) -> bool:
        if self.sources:
            return status in self.sources
        return group is not Group.ARCHIVED


@dataclass(frozen=True, slots=True)
class Timer:
    """``fire`` when a ticket has been in ``state`` for ``days`` (business days when
    ``business``) without leaving it."""

    state: str
    days: float
    fire: Trigger
    business: bool = True


@dataclass(frozen=True, slots=True)
class Workflow:
    initial: str
    states: tuple[State, ...]
    transitions: tuple[Transition, ...]
    timers: tuple[Timer, ...]
    reply_to_closed: ClosedReply
    reopen_to: str  # where a reply to a closed ticket under `reopen` takes it

    def state(self, name: str) -> State:
        for state in self.states:
            if state.name == name:
                return state
        raise KeyError(name)

    def group(self, name: str) -> Group:
        return self.state(name).group

    def find(self, text: str) -> State | None:
        """The state ``text`` names: its name or a display name, case and spaces aside."""
        wanted = squash(text)
        for state in self.states:
            if wanted in (squash(state.name), squash(state.nl), squash(state.en)):
                return state
        return None

    @property
    def closed(self) -> str | None:
        """The first closed (not archived) state: where a merged-away ticket goes."""
        return next((s.name for s in self.states if s.group is Group.CLOSED), None)

    def timers_for(self, status: str) -> tuple[Timer, ...]:
        return tuple(t for t in self.timers if t.state == status)


@dataclass(frozen=True, slots=True)
class Move:
    """The outcome of a trigger: the new status (maybe the same) and the mail it sends."""

    old: str
    new: str
    template: str
    notify: Party

    @property
    def changed(self) -> bool:
        return self.old != self.new


def move(workflow: Workflow, status: str, trigger: Trigger, target: str = "") -> Move | None:
    """What ``trigger`` does to a ticket in ``status``; None when the table has no rule.

    For ``Trigger.STATUS`` the agent's ``target`` must be one of the state's
    ``next``; the first STATUS rule into that target supplies its mail.
    """
    group = workflow.group(status)
    if trigger is Trigger.STATUS:
        if target not in workflow.state(status).next:
            return None
        for rule in workflow.transitions:
            if rule.on is trigger and rule.to == target and rule.applies(status, group):
                return Move(status, target, rule.template, rule.notify)
        return Move(status, target, "", Party.CUSTOMER)
    for rule in workflow.transitions:
        if rule.on is trigger and rule.applies(status, group):
            return Move(status, rule.to or status, rule.template, rule.notify)
    return None


def problems(workflow: Workflow, templates: Iterable[str]) -> list[str]:
    """Every fault of ``workflow`` as ``key: reason``; empty when it can run."""
    found: list[str] = []
    names = [s.name for s in workflow.states]
    known = set(names)
    known_templates = set(templates)
    for name in sorted({n for n in names if names.count(n) > 1}):
        found.append(f"states.{name}: defined twice")
    if workflow.initial not in known:
        found.append(f"initial: unknown state {workflow.initial!r}")
    if workflow.reopen_to not in known:
        found.append(f"reopen_to: unknown state {workflow.reopen_to!r}")
    for state in workflow.states:
        for target in state.next:
            if target not in known:
                found.append(f"states.{state.name}.next: unknown state {target!r}")
    for index, rule in enumerate(workflow.transitions, 1):
        key = f"transitions #{index} ({rule.on.value})"
        for source in rule.sources:
            if source not in known:
                found.append(f"{key} from: unknown state {source!r}")
        if rule.to and rule.to not in known:
            found.append(f"{key} to: unknown state {rule.to!r}")
        if rule.template and rule.template not in known_templates:
            found.append(f"{key} template: unknown template {rule.template!r}")
    for index, timer in enumerate(workflow.timers, 1):
        if timer.state not in known:
            found.append(f"timers #{index} state: unknown state {timer.state!r}")
    if found:
        return found
    edges = _edges(workflow)
    reachable = {workflow.initial}
    frontier = [workflow.initial]
    while frontier:
        for target in edges[frontier.pop()]:
            if target not in reachable:
                reachable.add(target)
                frontier.append(target)
    for state in workflow.states:
        if state.name not in reachable:
            found.append(f"states.{state.name}: cannot be reached from {workflow.initial!r}")
        elif state.group is not Group.ARCHIVED and not edges[state.name] - {state.name}:
            found.append(f"states.{state.name}: no way out (no transition, next or timer)")
    return found


def _edges(workflow: Workflow) -> dict[str, set[str]]:
    """Which states each state can lead to, by any trigger."""
    edges: dict[str, set[str]] = {s.name: set(s.next) for s in workflow.states}
    for state in workflow.states:
        for rule in workflow.transitions:
            if rule.on is not Trigger.STATUS and rule.to and rule.applies(state.name, state.group):
                edges[state.name].add(rule.to)
    for state in workflow.states:
        if state.group is Group.CLOSED:
            edges[state.name].add(workflow.reopen_to)
    return edges


_SUPPORT = ("new", "open", "in_progress")
_CUSTOMER = ("waiting_customer", "ready_for_test", "approval_needed")
_OPEN = (*_SUPPORT, *_CUSTOMER, "on_hold")
_TARGETS = (*_OPEN[1:], "resolved", "closed")  # where an agent may move an open ticket
_ALL_BUT_ARCHIVED = (*_OPEN, "resolved", "closed")


def _state(name: str, group: Group, nl: str, en: str, *nexts: str) -> State:
    return State(name, group, nl, en, tuple(n for n in nexts if n != name))


DEFAULT_WORKFLOW = Workflow(
    initial="new",
    states=(
        _state("new", Group.SUPPORT, "Nieuw", "New", *_TARGETS),
        _state("open", Group.SUPPORT, "Open", "Open", *_TARGETS),
        _state(
            "in_progress",
            Group.SUPPORT,
            "In behandeling",
            "In progress",
            *_TARGETS,
        ),
        _state(
            "waiting_customer",
            Group.CUSTOMER,
            "Meer info nodig",
            "Feedback needed",
            *_TARGETS,
        ),
        _state(
            "ready_for_test",
            Group.CUSTOMER,
            "Klaar voor test",
            "Ready for test",
            *_TARGETS,
        ),
        _state(
            "approval_needed",
            Group.CUSTOMER,
            "Akkoord nodig",
            "Approval needed",
            *_TARGETS,
        ),
        _state("on_hold", Group.HOLD, "Pauze", "On hold", *_TARGETS),
        # Resolved waits for the customer's confirmation (Club-assistent); closed is done.
        _state("resolved", Group.CUSTOMER, "Opgelost", "Resolved", "open", "in_progress", "closed"),
        _state("closed", Group.CLOSED, "Gesloten", "Closed", "open", "in_progress"),
        _state("archived", Group.ARCHIVED, "Gearchiveerd", "Archived"),
    ),
    transitions=(
        Transition(
            Trigger.CUSTOMER_REPLY, ("waiting_customer", "ready_for_test", "resolved"), "open"
        ),
        Transition(Trigger.AGENT_REPLY, _SUPPORT, "waiting_customer"),
        Transition(Trigger.CUSTOMER_RESOLVED, (*_OPEN, "resolved"), "closed", "status_changed"),
        Transition(Trigger.CUSTOMER_APPROVES, ("approval_needed",), "in_progress"),
        Transition(Trigger.CUSTOMER_APPROVES, ("ready_for_test",), "resolved", "resolved"),
        Transition(Trigger.CUSTOMER_APPROVES, ("resolved",), "closed"),
        Transition(Trigger.CUSTOMER_REJECTS, ("approval_needed", "ready_for_test"), "open"),
        Transition(Trigger.QUOTE, _OPEN, "approval_needed", "action_required"),
        Transition(Trigger.STATUS, (), "waiting_customer", "action_required"),
        Transition(Trigger.STATUS, (), "ready_for_test", "action_required"),
        Transition(Trigger.STATUS, (), "approval_needed", "action_required"),
        Transition(Trigger.STATUS, (), "resolved", "resolved"),
        Transition(Trigger.CLOSE, _ALL_BUT_ARCHIVED, "closed", "closed"),
        Transition(Trigger.REOPEN, ("resolved", "closed"), "open"),
        Transition(Trigger.REMIND, _CUSTOMER, "", "reminder"),
        Transition(Trigger.AUTO_RESOLVE, ("waiting_customer",), "resolved", "resolved"),
        Transition(Trigger.AUTO_CLOSE, ("resolved",), "closed"),
        Transition(Trigger.ARCHIVE, ("closed",), "archived"),
    ),
    timers=(
        Timer("waiting_customer", 3, Trigger.REMIND),
        Timer("waiting_customer", 10, Trigger.AUTO_RESOLVE),
        Timer("ready_for_test", 5, Trigger.REMIND),
        Timer("approval_needed", 5, Trigger.REMIND),
        Timer("resolved", 5, Trigger.AUTO_CLOSE),
        Timer("closed", 7, Trigger.ARCHIVE, business=False),
    ),
    reply_to_closed=ClosedReply.REOPEN,
    reopen_to="open",
)
