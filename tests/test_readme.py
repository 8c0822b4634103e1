"""The README's walkthrough runs as written, in a fresh directory with the shipped config."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_SERVERS, free_port

ROOT = Path(__file__).resolve().parents[1]


def walkthrough() -> str:
    text = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- walkthrough -->\n```sh\n(.*?)```\n<!-- /walkthrough -->", text, re.S)
    assert found is not None, "the README lost its walkthrough"
    return found.group(1)


def test_the_walkthrough_runs_in_a_fresh_directory(tmp_path: Path) -> None:
    if shutil.which("swaks") is None:
        if REQUIRE_SERVERS:
            pytest.fail("swaks is missing and MAILGATE_REQUIRE_SERVERS=1")
        pytest.skip("swaks is missing")
    port = str(free_port())
    # The shipped config, with the one change a shared test machine needs: a free port.
    config = (ROOT / "config.toml").read_text().replace("port = 2525", f"port = {port}", 1)
    (tmp_path / "config.toml").write_text(config)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    script = "set -e\n" + walkthrough().replace("127.0.0.1:2525", f"127.0.0.1:{port}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    result = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Printer brandt" in result.stdout
    assert "waiting_customer" in result.stdout
    sent = list((tmp_path / "var" / "outbox-maildir" / "new").iterdir())
    assert len(sent) == 3  # acknowledgment, team notice, the answer
    assert (tmp_path / "var" / "mailgate.db").exists()
