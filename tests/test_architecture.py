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


MODULE_LINES = 400
FUNCTION_LINES = 60


def test_no_module_and_no_function_is_too_long_to_read_whole() -> None:
    """Outside migrations: modules of at most 400 lines, functions of at most 60."""
    import ast

    long_modules, long_functions = [], []
    for path in sorted((ROOT / "mailgate").rglob("*.py")):
        if "migrations" in path.parts:
            continue
        text = path.read_text()
        name = str(path.relative_to(ROOT))
        if text.count("\n") > MODULE_LINES:
            long_modules.append(name)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > FUNCTION_LINES:
                    long_functions.append(f"{name}:{node.name} ({length} lines)")
    assert long_modules == []
    assert long_functions == []
