"""Whom a bounce of our mail concerns (held mails and bounces run end to end in
tests/runners/test_worker.py)."""

from __future__ import annotations

from mailgate.core.bounces import DeliveryReport
from mailgate.tickets.holds import failed_recipients


def test_a_bounce_concerns_the_recipients_it_names_or_else_the_only_one() -> None:
    report = DeliveryReport(("bob@x.nl",), "5.1.1", None, True)
    assert failed_recipients(report, ("Bob@x.nl", "carol@x.nl")) == ("bob@x.nl",)
    nameless = DeliveryReport((), "5.1.1", None, True)
    assert failed_recipients(nameless, ("carol@x.nl",)) == ("carol@x.nl",)
    assert failed_recipients(nameless, ("bob@x.nl", "carol@x.nl")) == ()
