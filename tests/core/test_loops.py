from __future__ import annotations

import pytest

from mailgate.core.loops import automatic_reason
from mailgate.core.parse import parse_mail
from tests.mails import make_mail


@pytest.mark.parametrize(
    ("headers", "sender", "automatic"),
    [
        ({}, "Alice <alice@customer.nl>", False),
        ({"Auto-Submitted": "no"}, "alice@customer.nl", False),
        ({"Auto-Submitted": "Auto-Replied; owner-email=x@y"}, "alice@customer.nl", True),
        ({"Precedence": "bulk"}, "alice@customer.nl", True),
        ({"X-Precedence": "auto_reply"}, "alice@customer.nl", True),
        ({"List-Id": "<list.example.org>"}, "alice@customer.nl", True),
        ({"X-Autoreply": "yes"}, "alice@customer.nl", True),
        ({}, "MAILER-DAEMON@mx.example.org", True),
        ({}, "no-reply@shop.example", True),
        ({"Return-Path": "<>"}, "alice@customer.nl", True),
    ],
    ids=[
        "person",
        "auto-submitted-no",
        "auto-replied-with-params",
        "precedence-bulk",
        "x-precedence",
        "list-id",
        "x-autoreply",
        "mailer-daemon",
        "no-reply",
        "null-sender",
    ],
)
def test_automatic_mail_is_recognised(
    headers: dict[str, str], sender: str, automatic: bool
) -> None:
    mail = parse_mail(make_mail(sender=sender, headers=headers))
    assert (automatic_reason(mail) is not None) is automatic


def test_empty_envelope_sender_is_automatic() -> None:
    assert automatic_reason(parse_mail(make_mail()), envelope_from="<>") == "empty envelope sender"


@pytest.mark.parametrize(
    "subject",
    [
        "Out of Office: Printer",
        "Automatic reply: vraag",
        "Automatisch antwoord: x",
        "Afwezig",
        "Niet aanwezig tot maandag",
        "Abwesenheitsnotiz: Printer",
        "Automatische Antwort",
        "Réponse automatique : absent",
        "AutoReply",
    ],
)
def test_auto_reply_subjects_in_four_languages(subject: str) -> None:
    assert automatic_reason(parse_mail(make_mail(subject=subject))) == "auto-reply subject"


def test_an_ordinary_subject_is_not_an_auto_reply() -> None:
    assert automatic_reason(parse_mail(make_mail(subject="Office 365 login werkt niet"))) is None


def test_our_own_loop_header_marks_our_mail_come_back() -> None:
    mail = parse_mail(make_mail(headers={"X-Mailgate-Loop": "abc123"}))
    assert automatic_reason(mail, installation_id="abc123") == (
        "X-Mailgate-Loop: our own mail came back"
    )
