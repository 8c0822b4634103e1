"""What every command shares: exit codes (sysexits(3)), JSON output, references, times."""

from __future__ import annotations

import json
from datetime import datetime, tzinfo
from typing import Any, TextIO

from mailgate.errors import NotFound

EX_OK = 0
EX_FAILED = 1  # not found, or failed
EX_USAGE = 2
EX_DATAERR = 65  # the mail is unusable
EX_TEMPFAIL = 75  # a failure of ours: try again later
EX_CONFIG = 78  # the configuration is wrong


def at(zone: tzinfo, when: datetime | None) -> str:
    """A moment as the desk reads it: in the desk's zone, with the zone's name (CET, CEST),
    so that every command prints the same moment the same way."""
    return f"{when.astimezone(zone):%a %Y-%m-%d %H:%M %Z}" if when else "-"


def print_json(out: TextIO, value: object) -> None:
    print(json.dumps(value, ensure_ascii=False, default=json_default), file=out)


def json_default(value: object) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def ref(number: int | None) -> str | None:
    return None if number is None else f"#{number}"


def read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise NotFound(f"cannot read {path}: {exc.strerror}") from exc
