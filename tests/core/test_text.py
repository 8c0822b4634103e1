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
