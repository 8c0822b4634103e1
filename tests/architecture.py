"""The README's map of the code: every module of ``mailgate/`` with the first sentence of
its docstring, in package order. ``python -m tests.architecture`` prints it; a test checks
that the README holds it unchanged."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- modules: `python -m tests.architecture` writes this list; a test checks it -->"
END = "<!-- end of modules -->"


def first_sentence(docstring: str) -> str:
    """The docstring's first sentence: up to the first full stop that ends a sentence."""
    text = " ".join(docstring.split())
    found = re.search(r"(?<!\be\.g)(?<!\bi\.e)\.(?=\s|$)", text)
    return text if found is None else text[: found.end()]


def modules() -> list[tuple[str, str]]:
    """(path, first sentence) of every module, packages before their modules."""
    found = []
    for path in sorted((ROOT / "mailgate").rglob("*.py")):
        relative = path.relative_to(ROOT)
        if "migrations" in relative.parts:
            continue
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        found.append((relative.as_posix(), first_sentence(docstring)))
    return found


def block() -> str:
    lines = [BEGIN, "", "```"]
    for path, sentence in modules():
        lines.append(path)
        lines.append(f"    {sentence}")
    return "\n".join([*lines, "```", "", END])


def main() -> int:
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    readme.write_text(text[:start] + block() + text[end:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
