"""The guides in docs/: their config snippets are valid, their backup recipe restores."""

from __future__ import annotations

import re
import sqlite3
import tomllib
from pathlib import Path

import pytest

from mailgate.app import build_app
from mailgate.clock import FrozenClock
from mailgate.config import parse_config
from tests import conftest
from tests.conftest import config_document, deliver
from tests.mails import make_mail

GUIDES = Path(__file__).resolve().parents[1] / "docs" / "guides"
SNIPPETS = [
    (path.name, index, block)
    for path in sorted(GUIDES.glob("*.md"))
    for index, block in enumerate(re.findall(r"```toml\n(.*?)```", path.read_text(), re.S))
]


@pytest.mark.parametrize(
    ("guide", "index", "block"), SNIPPETS, ids=[f"{g}#{i}" for g, i, _ in SNIPPETS]
)
def test_each_config_snippet_is_valid_config(
    guide: str, index: int, block: str, tmp_path: Path
) -> None:
    document = config_document("sqlite+aiosqlite:///var/m.db")
    for name in re.findall(r'(?:service_account_file|client_certificate) = "([^"]+)"', block):
        (tmp_path / name).write_text("{}")  # the key the guide tells the reader to save
    for section, values in tomllib.loads(block).items():
        if isinstance(values, list):
            document[section] = values
        else:
            document.setdefault(section, {}).update(values)
    environ = {
        **conftest.test_environ(),
        "MAILGATE_IMAP_SUPPORT_PASSWORD": "x",
        "MAILGATE_M365_CLIENT_SECRET": "x",
    }
    parse_config(document, name=guide, base=tmp_path, environ=environ)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_sqlite_online_backup_restores_the_tickets(
    make_config,
    clock: FrozenClock,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    config = make_config()
    app = await build_app(config, clock)
    try:
        outcome = await deliver(app, make_mail())
        source = config.database.url.split("///", 1)[1]
        backup = tmp_path / "backup.db"
        with sqlite3.connect(source) as live, sqlite3.connect(backup) as copy:
            live.backup(copy)  # what `sqlite3 db ".backup file"` does, while the app runs
    finally:
        await app.close()
    restored = parse_config(
        config_document(f"sqlite+aiosqlite:///{backup}"),
        name="config.toml",
        base=tmp_path / "restored",
        environ=conftest.test_environ(),
    )
    again = await build_app(restored, clock)
    try:
        from mailgate.store.db import session
        from mailgate.store.repos import Repo

        async with session(again.engine) as s:
            view = await Repo(s).ticket_view(outcome.ticket or 0)
        assert view is not None and view.title == "Printer brandt"
    finally:
        await again.close()
