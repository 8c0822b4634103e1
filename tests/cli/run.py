"""Run a ``mailgate`` command in this process: ``main()`` with the argv, stdin, environment
and standard streams a process would have, its exit code and output as bytes.

A fresh interpreter costs a second a command (Python's start and the imports), which
the command's behaviour does not depend on; the tests whose subject is the process
itself (signals, exit codes under a held lock, what an MTA's pipe imports, a closed
stdout) start a real one instead.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import structlog

from tests.conftest import TEST_SECRET


@dataclass(frozen=True)
class Ran:
    """What a finished command left, shaped like ``subprocess.CompletedProcess``."""

    returncode: int
    stdout: bytes
    stderr: bytes


def run_cli(
    config: Path, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> Ran:
    """``mailgate --config CONFIG ARGS...`` as the sysadmin's shell would run it, in-process."""
    from mailgate.cli import main

    environment = {**os.environ, "MAILGATE_SECRET": TEST_SECRET, **(env or {})}
    if "MAILGATE_DATABASE_URL" not in (env or {}):
        environment.pop("MAILGATE_DATABASE_URL", None)
    out, err = io.BytesIO(), io.BytesIO()
    with _streams(stdin or b"", out, err), mock.patch.dict(os.environ, environment, clear=True):
        try:
            code = main(["--config", str(config), *args])
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code if isinstance(exit_.code, int) else 1
    return Ran(code, out.getvalue(), err.getvalue())


@contextmanager
def _streams(stdin: bytes, out: io.BytesIO, err: io.BytesIO) -> Iterator[None]:
    """Standard streams over bytes for the command; this process's own, its umask and
    its log configuration, back afterwards."""
    saved = sys.stdin, sys.stdout, sys.stderr
    logging = structlog.get_config()
    umask = os.umask(0o022)
    os.umask(umask)
    streams = (
        io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"),
        io.TextIOWrapper(out, encoding="utf-8", write_through=True),
        io.TextIOWrapper(err, encoding="utf-8", write_through=True),
    )
    sys.stdin, sys.stdout, sys.stderr = streams
    try:
        yield
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
        for stream in streams:
            stream.flush()
            stream.detach()  # the bytes stay readable after the wrapper is gone
        structlog.configure(**logging)
        os.umask(umask)
