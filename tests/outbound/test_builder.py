"""One notice built: what its template is told, and the mail it becomes."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default

from mailgate.app import App
from mailgate.core.model import Participant, Role, TicketView
from mailgate.core.notify import Kind, Notice
from mailgate.outbound.notifier import Change

AT = datetime(2026, 3, 2, 10, tzinfo=UTC)


def ticket(app: App) -> TicketView:
    return TicketView(
        number=42, queue="support", title="Printer kapot", type="incident", priority="high",
        status="waiting_customer", requester="alice@customer.nl", organisation="customer.nl",
        assignee=None, created_at=AT, updated_at=AT, updated_by="alice@customer.nl",
        participants=(
            Participant("alice@customer.nl", "Alice", Role.REQUESTER, "customer.nl"),
            Participant("bob@example.com", "Bob", Role.AGENT, "example.com"),
        ),
        messages=(), events=(), action_by="customer", approval="none", quote="",
        merged_into=None,
    )  # fmt: skip


def test_the_context_names_people_and_labels_in_the_notice_language(
    app: App,
) -> None:
    builder = app.notifier.builder
    notice = Notice(Kind.AGENT_REPLY, ("alice@customer.nl",), "nl", "")
    change = Change(ticket=42, author="bob@example.com", message_text="Zet hem uit en aan.")
    context = builder.context(ticket(app), notice, change)
    assert (context.customer_name, context.author_name) == ("Alice", "Bob")
    assert context.ticket.tag == app.codec.subject_tag(42)
    assert context.new_status != "waiting_customer"  # the Dutch label, not the state's name
    assert context.message_text == "Zet hem uit en aan."
    assert context.priority_label == "hoog"  # in the notice's language


def test_the_built_mail_threads_under_the_anchor_and_replies_to_the_plus_address(app: App) -> None:
    builder = app.notifier.builder
    notice = Notice(Kind.AGENT_REPLY, ("alice@customer.nl",), "nl", "")
    queue = app.config.queues[0]
    built = builder.build(
        ticket(app),
        queue,
        notice,
        Change(ticket=42),
        AT,
        ("first@customer.nl", ("first@customer.nl",)),
    )
    mail = message_from_bytes(built.raw, policy=default)
    assert mail["In-Reply-To"] == "<first@customer.nl>"
    assert mail["Message-ID"] == f"<{built.message_id}>"
    assert app.codec.token(42).lower() in str(mail["Reply-To"]).lower()
    assert built.rendered.subject.startswith(str(mail["Subject"])[:10])
