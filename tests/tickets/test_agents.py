"""An agent's commands from the command line: the same plan and effects as a mailed one."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default
from typing import Any

from mailgate.clock import FrozenClock
from mailgate.core.commands import Verb
from mailgate.core.desk import Plan, Refusal
from mailgate.core.model import Action
from mailgate.store.repos import Tx
from mailgate.tickets.agents import agent_mail, field_commands, set_fields
from tests.mails import make_mail
from tests.world import World

CUSTOMER = "alice@customer.nl"
AGENT = "bob@example.com"


def test_field_changes_are_the_agent_commands_that_make_them() -> None:
    commands = field_commands(["status=waiting_customer", "Priority = high"])
    assert commands is not None
    assert [(c.verb, c.argument) for c in commands] == [
        (Verb.STATUS, "waiting_customer"),
        (Verb.PRIORITY, "high"),
    ]
    assert field_commands(["colour=red"]) is None
    assert field_commands(["status"]) is None


async def test_set_fields_moves_the_ticket_and_mails_the_transition_like_a_command(
    desk: Any, clock: FrozenClock
) -> None:
    app = await desk()
    world = World(app)
    outcome = await world.send(make_mail(sender=CUSTOMER))
    assert outcome.action is Action.CREATED and outcome.ticket is not None
    number = outcome.ticket
    await world.inbox(CUSTOMER)  # the acknowledgment, out of the way
    commands = field_commands(["status=waiting_customer", "priority=hoog"])
    assert commands is not None
    now = clock.now()
    plan = await app.blocking.write(
        lambda conn: set_fields(
            Tx.on(conn), app.desk, app.policy, number, commands, actor=AGENT, now=now
        )
    )
    assert isinstance(plan, Plan) and plan.move is not None
    state = await app.blocking.read(lambda conn: Tx.on(conn).tickets.state(number))
    assert state is not None and (state.status, state.priority) == ("waiting_customer", "high")
    refused = await app.blocking.write(
        lambda conn: set_fields(
            Tx.on(conn), app.desk, app.policy, number, field_commands(["type=cake"]) or [],
            actor=AGENT, now=now,
        )
    )  # fmt: skip
    assert isinstance(refused, Refusal)
    assert "unknown type" in refused.text("en", app.desk.workflow)


def test_an_answer_from_the_command_line_is_the_mail_the_agent_would_send(app: Any) -> None:
    raw = agent_mail(
        app.codec,
        "support+tok@example.com",
        7,
        "Printer",
        author=AGENT,
        text="Hallo",
        now=app.clock.now(),
    )
    mail = message_from_bytes(raw, policy=default)
    assert mail["From"] == AGENT and mail["To"] == "support+tok@example.com"
    assert app.codec.subject_tag(7) in mail["Subject"] and mail.get_content().strip() == "Hallo"
