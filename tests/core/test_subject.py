from __future__ import annotations

import pytest

from mailgate.core.subject import NO_SUBJECT, clean_subject

MANGLINGS = [
    ("Re: Printer brandt", "re"),
    ("RE: Printer brandt", "outlook-upper"),
    ("re: re: RE: Printer brandt", "nested"),
    ("Fw: Printer brandt", "fw"),
    ("FW: Printer brandt", "FW"),
    ("Fwd: Printer brandt", "fwd"),
    ("AW: Printer brandt", "german-aw"),
    ("WG: Printer brandt", "german-wg"),
    ("SV: Printer brandt", "scandinavian-sv"),
    ("VS: Printer brandt", "finnish-vs"),
    ("Antw: Printer brandt", "dutch-antw"),
    ("Antwoord: Printer brandt", "dutch-antwoord"),
    ("Doorst: Printer brandt", "dutch-doorst"),
    ("Ref: Printer brandt", "ref"),
    ("Réf : Printer brandt", "french-ref-space"),
    ("RIF: Printer brandt", "italian-rif"),
    ("Odp: Printer brandt", "polish-odp"),
    ("TR: Printer brandt", "french-tr"),
    ("回复: Printer brandt", "chinese-reply"),
    ("答复：Printer brandt", "chinese-answer-fullwidth-colon"),
    ("转发: Printer brandt", "chinese-forward"),
    ("Re[3]: Printer brandt", "counter-brackets"),
    ("Re(2): Printer brandt", "counter-parens"),
    ("RE [2]: Printer brandt", "counter-space"),
    ("[EXTERNAL] RE: Printer brandt", "external-tag"),
    ("RE: [EXTERNAL] AW: Fwd: Printer brandt", "tag-between"),
    ("***SPAM*** Re: Printer brandt", "asterisk-tag"),
    ("  Re:   AW:Printer   brandt  ", "spacing"),
    ("rE: fW: aNtW: Printer brandt", "mixed-case"),
]


@pytest.mark.parametrize(("subject", "label"), MANGLINGS, ids=[m[1] for m in MANGLINGS])
def test_every_mangling_cleans_to_the_title(subject: str, label: str) -> None:
    assert clean_subject(subject) == "Printer brandt"


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Re: Fwd: Re vs Fwd", "Re vs Fwd"),
        ("Fwd is broken", "Fwd is broken"),
        ("Remote desktop", "Remote desktop"),
        ("Antwerpen office", "Antwerpen office"),
        ("Refund: order 12", "Refund: order 12"),
        ("Question about [EXTERNAL] tags", "Question about [EXTERNAL] tags"),
    ],
    ids=[
        "words-in-middle-kept",
        "word-not-prefix",
        "re-in-word",
        "antw-in-word",
        "ref-in-word",
        "tag-not-leading",
    ],
)
def test_words_that_only_look_like_prefixes_stay(subject: str, expected: str) -> None:
    assert clean_subject(subject) == expected


@pytest.mark.parametrize(
    "subject",
    [None, "", "   ", "Re:", "RE: FW: "],
    ids=["none", "empty", "blank", "only-re", "only-prefixes"],
)
def test_empty_subject_becomes_no_subject(subject: str | None) -> None:
    assert clean_subject(subject) == NO_SUBJECT


def test_removed_spans_cut_anywhere_then_prefixes_again() -> None:
    assert clean_subject("Re: [#12-ABCDEFGH] AW: Printer", remove=("[#12-ABCDEFGH]",)) == "Printer"
    assert clean_subject("Printer [#12-ABCDEFGH]", remove=("[#12-ABCDEFGH]",)) == "Printer"


def test_our_notices_prefix_is_no_title_in_an_answer_to_the_notice() -> None:
    own = ("Status gewijzigd:", "Received:", "Ontvangen:")
    tag = "[#12-ABCDEFGH]"
    assert clean_subject(f"Re: {tag} Status gewijzigd: App crasht", remove=(tag,), own=own) == (
        "App crasht"
    )
    assert clean_subject("AW: Received: Re: Printer", own=own) == "Printer"
    assert clean_subject("Ontvangen: de bestelling", own=own) == "Ontvangen: de bestelling"


def test_the_templates_name_every_subject_prefix_in_both_languages() -> None:
    from mailgate.outbound.render import Templates

    prefixes = Templates(None).subject_prefixes()
    assert {"Status gewijzigd:", "Status changed:", "Ontvangen:", "Received:"} <= set(prefixes)
    assert not [p for p in prefixes if "#" in p]  # never one naming a ticket
