from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailgate.core.parties import (
    AnswerLimits,
    AutoAnswer,
    cap_keys,
    mailbox,
    sender_key,
    subject_core,
    withheld,
)

NOW = datetime(2026, 3, 2, 10, tzinfo=UTC)
LIMITS = AnswerLimits(per_mailbox=3, per_domain=5)


def sent(address: str, subject: str = "Ontvangen: Printer brandt") -> AutoAnswer:
    return AutoAnswer(mailbox(address), address.rpartition("@")[2], subject_core(subject), NOW)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("Helpdesk+4711@Other.Example", "helpdesk@other.example"),
        ("jan.de.vries+werk@gmail.com", "jandevries@gmail.com"),
        ("jan.de.vries@klant.nl", "jan.de.vries@klant.nl"),
    ],
    ids=["plus-detail", "gmail-dots", "dots-elsewhere-matter"],
)
def test_a_mailbox_is_the_address_without_its_decoration(address: str, expected: str) -> None:
    assert mailbox(address) == expected


def test_a_mail_echoing_our_automatic_subject_to_its_domain_gets_no_answer() -> None:
    recent = [sent("helpdesk+1@other.example")]
    echo = "Re: Ontvangen: Printer brandt [T#2]"
    why = withheld("helpdesk+2@other.example", recent, LIMITS, answering=echo)
    assert why is not None and "repeats the subject" in why
    # The same subject from another domain, or a subject that does not echo: answered.
    assert (
        withheld("x@third.example", recent, LIMITS, answering="Re: Ontvangen: Printer brandt")
        is None
    )
    assert withheld("helpdesk+2@other.example", recent, LIMITS, answering="Printer brandt") is None


def test_short_subjects_echo_by_chance_and_do_not_count() -> None:
    recent = [sent("a@other.example", "Vraag")]
    assert withheld("b@other.example", recent, LIMITS, answering="Vraag over factuur") is None


def test_one_mailbox_however_decorated_has_one_cap() -> None:
    recent = [sent(f"robot+{n}@other.example", f"Subject {n}") for n in range(3)]
    why = withheld("robot+99@other.example", recent, LIMITS, answering="Nieuw")
    assert why is not None and "mailbox cap" in why


def test_an_organisation_domain_has_a_cap_and_free_mail_has_none() -> None:
    org = [sent(f"p{n}@bedrijf.nl", f"Subject {n}") for n in range(5)]
    assert "domain cap" in (withheld("p9@bedrijf.nl", org, LIMITS, answering="Nieuw") or "")
    free = [sent(f"p{n}@gmail.com", f"Subject {n}") for n in range(40)]
    assert withheld("p99@gmail.com", free, LIMITS, answering="Nieuw") is None


def test_notices_count_against_the_mailbox_but_are_never_held_for_an_echo_or_a_domain() -> None:
    notices = [
        AutoAnswer("p@bedrijf.nl", "bedrijf.nl", subject_core("Status: Printer"), NOW, False)
        for _ in range(3)
    ]
    assert "mailbox cap" in (withheld("p@bedrijf.nl", notices, LIMITS) or "")
    assert withheld("q@bedrijf.nl", notices, LIMITS) is None  # a notice, not an answer
    org = [sent(f"p{n}@bedrijf.nl", f"Subject {n}") for n in range(5)]
    assert withheld("p9@bedrijf.nl", org, LIMITS) is None  # the domain cap is for answers


def test_an_answer_counts_against_the_mailbox_and_an_organisations_domain() -> None:
    assert cap_keys("Piet+ticket@Org.NL") == ("mailbox piet@org.nl", "domain org.nl")
    assert cap_keys("p.i.e.t@gmail.com") == ("mailbox piet@gmail.com",)  # no one's domain
    assert sender_key("Piet@Org.NL") == "domain org.nl"
    assert sender_key("piet@gmail.com") == "mailbox piet@gmail.com"
