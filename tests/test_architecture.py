"""The README's map of the code is the code's: every module, its docstring's first sentence."""

from __future__ import annotations

from tests.architecture import ROOT, block, first_sentence, modules


def test_every_module_says_what_it_is_and_the_readme_lists_it() -> None:
    found = modules()
    assert len(found) > 60
    missing = [path for path, sentence in found if len(sentence) < 20]
    assert missing == []  # a module without a sentence that says what it is
    assert block() in (ROOT / "README.md").read_text(), "run `python -m tests.architecture`"


def test_the_first_sentence_ends_at_a_full_stop_not_at_an_abbreviation() -> None:
    assert first_sentence("Count things, e.g. mails. And more.") == "Count things, e.g. mails."
    assert first_sentence("No stop at all") == "No stop at all"
    assert (
        first_sentence("``mailgate sla``: open tickets.\n\nMore.")
        == "``mailgate sla``: open tickets."
    )
