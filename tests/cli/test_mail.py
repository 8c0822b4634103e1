"""The mail commands run in process: ``trace`` of mails applied in one batch."""

from __future__ import annotations

import argparse
import io
import json
from dataclasses import replace

from mailgate.app import App
from mailgate.cli.mail import trace
from mailgate.intake.spool import Received
from tests.conftest import deliver
from tests.mails import make_mail


async def _trace(app: App, ref: str) -> list[tuple[str, str]]:
    out = io.StringIO()
    assert await trace(app, argparse.Namespace(ref=ref, json=True), out) == 0
    return [(s["step"], s["detail"]) for s in json.loads(out.getvalue())]


async def test_trace_shows_only_what_its_own_mail_caused_in_a_shared_batch(app: App) -> None:
    """Two replies to one ticket, stored and applied in the same batch at the same clock
    reading: each trace lists its own events, never the other mail's."""
    first = await deliver(app, make_mail(message_id="<first@customer.nl>"))
    ids = []
    for n, cc in enumerate(("Bob <bob@customer.nl>", "Carol <carol@customer.nl>")):
        reply = make_mail(
            subject="Re: Printer brandt",
            message_id=f"<reply{n}@customer.nl>",
            in_reply_to="<first@customer.nl>",
            cc=cc,
        )
        ids.append((await app.spool.store(Received(reply, "test"))).spool_id)
    # Both in one batch however slow the machine (a batch ends after ``batch_time``).
    app.processor.worker = replace(app.processor.worker, batch_time=10.0)
    outcomes = await app.processor.process_batch(ids)
    assert [o.ticket for o in outcomes] == [first.ticket, first.ticket]
    for spool_id, own, other in ((ids[0], "bob", "carol"), (ids[1], "carol", "bob")):
        steps = await _trace(app, str(spool_id))
        added = " ".join(d for k, d in steps if k == "participant_added")
        assert own in added and other not in added
        assert [k for k, _ in steps].count("message_added") == 1
