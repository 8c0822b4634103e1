from __future__ import annotations

import pytest

from mailgate.core.text import html_to_text, visible_text


def test_html_to_text_keeps_blocks_and_drops_scripts() -> None:
    html = (
        "<html><head><style>p{}</style></head><body><p>Hallo&nbsp;Bob,</p>"
        "<div>regel <b>twee</b></div><script>alert(1)</script><br>eind</body></html>"
    )
    assert html_to_text(html) == "Hallo Bob,\n\nregel twee\n\neind"


def test_html_to_text_survives_broken_markup() -> None:
    assert "tekst" in html_to_text("<p>tekst<div <<< >")


@pytest.mark.parametrize(
    "quote_header",
    [
        "On Mon, 5 Jan 2026 at 10:00, Support <support@example.com> wrote:",
        "Op ma 5 jan. 2026 om 10:00 schreef Support <support@example.com>:",
        "Am 05.01.2026 um 10:00 schrieb Support <support@example.com>:",
        "Le lun. 5 janv. 2026 à 10:00, Support <support@example.com> a écrit :",
        "-----Original Message-----",
        "-----Oorspronkelijk bericht-----",
        "________________________________",
    ],
    ids=["gmail-en", "gmail-nl", "german", "french", "outlook-en", "outlook-nl", "outlook-rule"],
)
def test_visible_text_stops_at_the_quote_header(quote_header: str) -> None:
    text = f"Het werkt weer, dank!\n\n{quote_header}\n> oude tekst\n> meer\n"
    assert visible_text(text) == "Het werkt weer, dank!"


def test_outlook_header_block_is_cut() -> None:
    text = "Prima.\n\nVan: Support <support@example.com>\nVerzonden: maandag\nAan: Alice\n\noud"
    assert visible_text(text) == "Prima."


def test_a_from_line_in_running_text_is_not_a_quote() -> None:
    text = "From: the start it failed.\nThen it worked."
    assert visible_text(text) == text


def test_trailing_quote_block_is_cut_but_interleaved_answers_are_kept() -> None:
    assert visible_text("Ja.\n\n> vraag?\n> meer\n") == "Ja."
    interleaved = "> vraag 1?\nantwoord 1\n> vraag 2?\nantwoord 2"
    assert visible_text(interleaved) == interleaved


def test_text_that_is_only_quote_is_kept_whole() -> None:
    assert visible_text("> alleen citaat") == "> alleen citaat"


@pytest.mark.parametrize(
    "signature",
    [
        "-- \nPiet Jansen\nACME BV",
        "Sent from my iPhone",
        "Verzonden vanaf mijn iPhone",
        "Verstuurd vanaf mijn iPad",
        "Von meinem iPhone gesendet",
        "Envoyé de mon iPhone",
        "Get Outlook for Android",
        "--\nPiet",
    ],
    ids=[
        "rfc3676",
        "iphone-en",
        "iphone-nl",
        "ipad-nl",
        "iphone-de",
        "iphone-fr",
        "outlook-mobile",
        "eaten-trailing-space",
    ],
)
def test_signatures_are_not_visible_text(signature: str) -> None:
    assert visible_text(f"Het werkt weer.\n\n{signature}\n") == "Het werkt weer."


def test_a_double_dash_in_the_middle_of_a_long_text_is_kept() -> None:
    text = "Stap 1\n--\n" + "\n".join(f"regel {i}" for i in range(12))
    assert visible_text(text) == text


@pytest.mark.parametrize(
    "history",
    [
        "On Mon, Feb 1, 2016 at 6:32 PM, Jeff <info@example.org>\nwrote:\n> old",
        "At 6/16/2016 08:32 PM, you wrote:\n> old",
        "2016-03-03 17:21 GMT+01:00 Some One <one@example.org>:\n> old",
        "*From:* Outlook user\n*Sent:* 2016-01-27\n*To:* info@example.org",
        "Da: Sally\nData: giovedì 8 ottobre 2015 15:26\nA: Testy\nOggetto: Test",
        "Sent from Outlook Mobile<https://example.org>",
    ],
    ids=[
        "folded-wrote",
        "you-wrote",
        "gmail-date-line",
        "bold-outlook-block",
        "italian-block",
        "outlook-mobile",
    ],
)
def test_more_clients_quote_headers(history: str) -> None:
    assert visible_text(f"Dank je.\n\n{history}\n") == "Dank je."


def test_reply_texts_of_the_corpus_mostly_match_what_their_projects_expect() -> None:
    import json

    from mailgate.core.parse import parse_mail
    from tests.conftest import CORPUS

    cases = []
    for line in (CORPUS / "manifest.jsonl").read_text().splitlines():
        entry = json.loads(line)
        expected = (entry.get("expect") or {}).get("visible_reply_text")
        if expected is None:
            continue
        raw = (CORPUS / entry["path"]).read_bytes()
        text = (
            raw.decode("utf-8", "replace")
            if entry["format"] == "text_body"
            else (parse_mail(raw).text)
        )
        cases.append(visible_text(text.replace("\r\n", "\n")).strip() == str(expected).strip())
    assert len(cases) >= 60
    # Measured: 34 of 64 (53 %). A floor against regressions, not the goal.
    assert sum(cases) >= 34
