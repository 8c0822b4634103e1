from __future__ import annotations

import stat
from pathlib import Path

from mailgate.app import build_app, load_secret
from mailgate.config import parse_config
from tests.conftest import config_document


async def test_secret_generated_once_with_mode_0600_and_reused(tmp_path: Path, db_url: str) -> None:
    config = parse_config(config_document(db_url), name="config.toml", base=tmp_path, environ={})
    app = await build_app(config)
    tag = app.codec.subject_tag(7)
    await app.close()
    secret_file = config.secret_file
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert load_secret(config) == secret_file.read_bytes().strip()
    again = await build_app(config)
    try:
        assert again.codec.subject_tag(7) == tag  # same secret, same installation id
    finally:
        await again.close()


def test_data_and_outbox_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """Under umask 022: the data dir, database (and its WAL), raw mails, attachments, secret
    and the outbox maildir are 0700 directories and 0600 files."""
    import asyncio
    import os

    from mailgate.clock import FrozenClock
    from tests.conftest import deliver
    from tests.mails import make_mail

    url = f"sqlite+aiosqlite:///{tmp_path / 'var' / 'mailgate.db'}"
    config = parse_config(config_document(url), name="config.toml", base=tmp_path, environ={})

    async def work() -> None:
        app = await build_app(config, FrozenClock())
        try:
            raw = make_mail(body="Zie bijlage.")
            raw = raw.replace(b"Content-Type: text/plain", b"Content-Type: application/pdf", 1)
            await deliver(app, make_mail())
            await deliver(app, raw)
            await app.sender.run_due()
        finally:
            await app.close()

    old = os.umask(0o022)
    try:
        asyncio.run(work())
    finally:
        os.umask(old)
    roots = [tmp_path / "var", config.outbound.maildir]
    seen = {"files": 0, "dirs": 0}
    for root in roots:
        assert stat.S_IMODE(root.stat().st_mode) == 0o700, root
        for path in root.rglob("*"):
            kind = "dirs" if path.is_dir() else "files"
            seen[kind] += 1
            want = 0o700 if kind == "dirs" else 0o600
            assert stat.S_IMODE(path.stat().st_mode) == want, (path, oct(path.stat().st_mode))
    names = {p.name for root in roots for p in root.rglob("*")}
    assert {"mailgate.db", "secret", "new"} <= names, names
    assert seen["files"] >= 5, seen
