"""A mail as it arrives: what the ticket says of skipped parts, what is stored for display.
(The application itself runs end to end in tests/runners/test_worker.py and
tests/runners/test_batch.py.)"""

from __future__ import annotations

from dataclasses import replace

from mailgate.app import App
from mailgate.core.model import Attachment
from mailgate.core.parse import parse_mail
from mailgate.core.privacy import MASK, for_display
from mailgate.store.db import session
from mailgate.store.repos import Repo
from mailgate.tickets.arrival import NOTED_SKIPS, limit_notes
from tests.conftest import deliver
from tests.mails import make_mail
from tests.outbound.outboxes import outbox


def files(n: int) -> tuple[Attachment, ...]:
    return tuple(
        Attachment(f"{i}.pdf", f"{i}.pdf", "application/pdf", b"x" * 10, "0" * 64) for i in range(n)
    )


def test_skipped_parts_are_named_a_handful_at_a_time_then_counted() -> None:
    mail = parse_mail(make_mail())
    assert limit_notes(mail, ()) == []
    notes = limit_notes(mail, files(NOTED_SKIPS + 3))
    assert len(notes) == NOTED_SKIPS + 1
    assert notes[0].startswith("0.pdf (10 bytes) is over a limit")
    assert notes[-1].startswith("and 3 more attachments")
    unread = limit_notes(replace(mail, parts_skipped=7), ())
    assert unread == [
        "7 more MIME parts than [intake] max_parts were not read; the raw mail keeps them all"
    ]


def test_what_is_stored_has_bsn_masked_and_html_sanitised() -> None:
    mail = replace(
        parse_mail(make_mail(body="BSN 111222333")),
        html='<p onclick="x()">BSN 111222333</p><script>alert(1)</script>',
    )
    shown, masked = for_display(mail)
    assert masked == 1 and MASK in shown.text and "111222333" not in shown.text
    assert shown.html is not None and "script" not in shown.html and "onclick" not in shown.html
    assert MASK in shown.html


async def test_a_bsn_in_the_subject_is_masked_in_the_title_the_thread_and_every_notice(
    app: App,
) -> None:
    outcome = await deliver(app, make_mail(subject="Vraag over BSN 111222333 van mijn zoon"))
    assert outcome.ticket is not None
    async with session(app.engine) as s:
        view = await Repo(s).ticket_view(outcome.ticket)
    sent = await outbox(app)
    assert view is not None and "111222333" not in view.title and MASK in view.title
    assert all("111222333" not in m.subject for m in view.messages)
    assert {kind for kind, _, _ in sent} >= {"ack", "team_new_ticket"}
    assert all("111222333" not in message.as_string() for _, _, message in sent)
