from __future__ import annotations

import random

import pytest

from mailgate.core.tokens import ALPHABET, CHECK_LENGTH, TokenCodec

CODEC = TokenCodec(b"secret-one-0123456789", "install-a")


def test_token_shape_and_roundtrip() -> None:
    token = CODEC.token(1042)
    number, check = token.split("-")
    assert number == "1042"
    assert len(check) == CHECK_LENGTH and set(check) <= set(ALPHABET)
    assert CODEC.subject_tag(1042) == f"[#{token}]"
    assert CODEC.verify(1042, check)
    assert CODEC.verify(1042, check.lower())


def test_check_differs_per_number_secret_and_installation() -> None:
    assert CODEC.check(1) != CODEC.check(2)
    assert CODEC.check(1) != TokenCodec(b"secret-two-0123456789", "install-a").check(1)
    assert CODEC.check(1) != TokenCodec(b"secret-one-0123456789", "install-b").check(1)


def test_forged_check_is_rejected() -> None:
    check = CODEC.check(1042)
    forged = ("0" if check[0] != "0" else "1") + check[1:]
    found = CODEC.find_in_subject(f"Re: [#1042-{forged}] Printer")
    assert [(t.number, t.valid) for t in found] == [(1042, False)]


def test_ten_thousand_random_checks_are_all_rejected() -> None:
    rng = random.Random(20261122)
    real = CODEC.check(1042)
    accepted = 0
    for _ in range(10_000):
        guess = "".join(rng.choice(ALPHABET) for _ in range(CHECK_LENGTH))
        if guess != real and CODEC.verify(1042, guess):
            accepted += 1
    assert accepted == 0


@pytest.mark.parametrize(
    "template",
    [
        "Re: {tag} Printer brandt",
        "Printer brandt {tag}",
        "AW: Printer {tag} brandt",
        "Re: {paren} Printer brandt",
        "Re: [ #1042 - {check} ] Printer",
        "Re: [#1042-{lower}] Printer",
        "Re:{tag}Printer",
    ],
    ids=[
        "front",
        "moved-to-end",
        "middle",
        "parentheses",
        "extra-spaces",
        "lower-case",
        "no-spaces",
    ],
)
def test_token_survives_client_mangling(template: str) -> None:
    check = CODEC.check(1042)
    subject = template.format(
        tag=f"[#1042-{check}]", paren=f"(#1042-{check})", check=check, lower=check.lower()
    )
    found = CODEC.find_in_subject(subject)
    assert [(t.number, t.valid) for t in found] == [(1042, True)]


def test_confusable_characters_are_read_as_digits() -> None:
    codec = TokenCodec(b"k", "i")
    number = next(n for n in range(1, 5000) if "0" in codec.check(n) or "1" in codec.check(n))
    check = codec.check(number).replace("0", "O").replace("1", "l")
    assert codec.verify(number, check)


def test_other_installations_prefix_is_not_our_token() -> None:
    ours = TokenCodec(b"same-secret-0123456789", "x", prefix="")
    theirs = TokenCodec(b"same-secret-0123456789", "x", prefix="ACME")
    subject = f"Re: {theirs.subject_tag(7)} hello"
    assert ours.find_in_subject(subject) == ()
    assert [t.valid for t in theirs.find_in_subject(subject)] == [True]


def test_parse_token_accepts_bare_and_tagged_forms() -> None:
    check = CODEC.check(5)
    for text in (f"5-{check}", f"5-{check.lower()}", f"[#5-{check}]", f"#5-{check}"):
        token = CODEC.parse_token(text)
        assert token is not None and token.number == 5 and token.valid, text
    assert CODEC.parse_token("5") is None
    assert CODEC.parse_token("hello") is None


def test_a_person_names_a_ticket_by_number_or_by_a_token_that_verifies() -> None:
    token = CODEC.token(1042)
    assert [CODEC.reference(r) for r in ("#1042", " 1042 ", token, f"[#{token}]")] == [1042] * 4
    forged = "1042-" + ("A" if token[-1] != "A" else "B") * 8
    assert CODEC.reference(forged) is None
    assert CODEC.reference("ticket") is None and CODEC.reference("#") is None
