"""The README's configuration reference and the parser's keys never drift apart."""

from __future__ import annotations

import re
from pathlib import Path

from mailgate.config import config_keys

README = Path(__file__).resolve().parents[2] / "README.md"
# Keys that hold a table documented by its own rows.
CONTAINERS = {
    "[smtp] accounts": "[[smtp.accounts]]",
    "[submission] keywords": "[[submission.keywords]]",
    "[workflow] states": "[workflow.states.NAME]",
    "[workflow] transitions": "[[workflow.transitions]]",
    "[workflow] timers": "[[workflow.timers]]",
    "[sla] targets": "[sla.targets]",
}


def documented() -> set[str]:
    """Every "[section] key" the README's configuration table names."""
    text = README.read_text()
    section = text[text.index("## Configuration") :]
    section = section[: section.index("\n## ", 5)]
    found: set[str] = set()
    for line in section.splitlines():
        if not line.startswith("| `["):
            continue
        cell = line.split("|")[1]
        names = re.findall(r"`([^`]+)`", cell)
        label = re.match(r"(\[\[?[^\]]+\]\]?)\s*(\S*)", names[0])
        assert label is not None, line
        table, first = label.group(1), label.group(2)
        if table == "[sla.targets]":
            found.add("[sla.targets]")
            continue
        found.add(f"{table} {first}")
        found.update(f"{table} {name}" for name in names[1:])
    return found


def test_every_key_is_in_the_readme_and_every_readme_key_exists() -> None:
    keys = config_keys()
    readme = documented()
    tables = {t for t in readme if " " not in t}
    undocumented = {
        k
        for k in keys
        if k not in readme and CONTAINERS.get(k) not in tables | {r.split(" ")[0] for r in readme}
    }
    assert undocumented == set(), "add these to the README's configuration table"
    unknown = {r for r in readme if " " in r and r not in keys}
    assert unknown == set(), "the README names keys the parser does not know"
