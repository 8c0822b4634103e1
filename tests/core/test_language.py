"""The language of a person's own words."""

from __future__ import annotations

import pytest

from mailgate.core.language import detect_language

OURS = ("nl", "en")


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Hi, my printer is broken again. Could you have a look?", "en"),
        (
            "Dear support, the app crashes when I open the settings page.\n\nKind regards,\nJohn",
            "en",
        ),
        ("Hallo, de printer doet het weer niet. Kunnen jullie even kijken?", "nl"),
        ("Goedemorgen, de factuur van vorige maand klopt niet.", "nl"),
        ("Thanks!", None),  # too short to tell
        ("ok", None),
        ("Guten Tag, der Drucker funktioniert schon wieder nicht.", None),  # not one of ours
        ("", None),
    ],
)
def test_the_language_is_told_by_clear_text_only(text: str, language: str | None) -> None:
    assert detect_language(text, OURS) == language


def test_only_the_languages_asked_for_are_answered() -> None:
    assert detect_language("Hallo, de printer doet het weer niet.", ("en",)) is None
