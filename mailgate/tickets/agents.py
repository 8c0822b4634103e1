"""What an agent does to a ticket, by mail or by command: one plan, one way to carry it out.

A mailed answer's command lines, ``mailgate set FIELD=VALUE`` and ``mailgate reply``
all come here: commands become a plan by ``core.desk.plan_agent`` (with the tickets
``#merge`` may name), the desk carries it out and announces its move, and an answer
from the command line is the mail the agent would have sent, taken in like one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from mailgate.core.address import AddressPolicy
from mailgate.core.commands import VERBS, Command, CommandBlock, Verb
from mailgate.core.desk import Plan, Refusal, TicketState, plan_agent
from mailgate.core.tokens import TokenCodec, ticket_number
from mailgate.errors import NotFound
from mailgate.store.repos import Tx
from mailgate.tickets.effects import Desk

# ``mailgate set``'s fields, each the agent command that changes it; the words agents
# type in their commands (``prioriteit``, ``toestand``, ``soort`` ...) name them too.
SET_FIELDS = {
    "status": Verb.STATUS,
    "priority": Verb.PRIORITY,
    "type": Verb.TYPE,
    "assignee": Verb.ASSIGN,
}
_FIELD_WORDS = {
    **{word: verb for word, verb in VERBS.items() if verb in SET_FIELDS.values()},
    **SET_FIELDS,
}


def plan_commands(
    tx: Tx,
    desk: Desk,
    policy: AddressPolicy,
    state: TicketState,
    block: CommandBlock,
    *,
    author: str,
    now: datetime,
) -> Plan | Refusal:
    """An agent's commands on a locked ticket as a plan, or the refusal of them all."""
    refs = [r for c in block.commands if c.verb is Verb.MERGE and (r := ticket_number(c.argument))]
    if block.has(Verb.RELEASE) or block.has(Verb.REJECT):
        state = replace(state, held=len(tx.history.held(state.number)))
    return plan_agent(
        desk.workflow,
        state,
        block,
        author=author,
        policy=policy,
        existing=tx.tickets.existing(refs),
        calendar=desk.calendar,
        now=now,
        field_names=desk.field_names,
    )


def field_commands(changes: Sequence[str]) -> list[Command] | None:
    """``FIELD=VALUE`` pairs as the agent commands that make them; None if one is not."""
    commands = []
    for change in changes:
        key, eq, value = change.partition("=")
        verb = _FIELD_WORDS.get(key.strip().lower())
        if not eq or verb is None:
            return None
        commands.append(Command(verb, value.strip(), f"{key}={value}"))
    return commands


def set_fields(
    tx: Tx,
    desk: Desk,
    policy: AddressPolicy,
    number: int,
    commands: Sequence[Command],
    *,
    actor: str,
    now: datetime,
) -> Plan | Refusal:
    """Change a ticket's fields by the rules of an agent's commands, and carry it out."""
    state = tx.tickets.state(number, lock=True)
    if state is None:
        raise NotFound(f"no ticket #{number}")
    block = CommandBlock(tuple(commands), (), "")
    plan = plan_commands(tx, desk, policy, state, block, author=actor, now=now)
    if isinstance(plan, Plan):
        desk.carry_out(tx, number, plan, actor=actor, now=now)
    return plan


def agent_mail(
    codec: TokenCodec,
    to: str,
    number: int,
    title: str,
    *,
    author: str,
    text: str,
    now: datetime,
) -> bytes:
    """The mail an agent would send to answer ticket ``number`` at ``to`` (its queue's
    plus-address): their text under the ticket's subject tag."""
    mail = EmailMessage()
    mail["From"] = author
    mail["To"] = to
    mail["Subject"] = f"Re: {codec.subject_tag(number)} {title}"
    mail["Date"] = format_datetime(now)
    mail["Message-ID"] = make_msgid(domain=author.rpartition("@")[2])
    mail.set_content(text)
    return mail.as_bytes()
