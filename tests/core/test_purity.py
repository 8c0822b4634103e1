"""The core stays pure: no module in mailgate.core imports I/O, async or database libraries."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mailgate.core

FORBIDDEN = {
    "asyncio",
    "sqlmodel",
    "sqlalchemy",
    "aiosmtpd",
    "imapclient",
    "jinja2",
    "socket",
    "os",
    "subprocess",
    "pathlib",
    "structlog",
    "aiosqlite",
    "asyncpg",
    "time",
}
CORE = Path(mailgate.core.__file__).parent
MODULES = sorted(CORE.glob("*.py"))


@pytest.mark.parametrize("module", MODULES, ids=[m.stem for m in MODULES])
def test_core_module_imports_nothing_impure(module: Path) -> None:
    tree = ast.parse(module.read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
            if node.module.split(".")[0] == "mailgate":
                assert node.module.startswith("mailgate.core"), f"core imports shell {node.module}"
    assert not imported & FORBIDDEN, f"{module.name} imports {sorted(imported & FORBIDDEN)}"


def test_guard_covers_every_core_module() -> None:
    assert {m.stem for m in MODULES} >= {"model", "parse", "route", "subject", "tokens"}
