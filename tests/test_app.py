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
