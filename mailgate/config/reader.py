"""Reading a TOML table key by key, recording every problem instead of raising at the first."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


DOMAIN = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")


DOMAIN_OR_EMPTY = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)?$")


PREFIX = re.compile(r"^[A-Za-z0-9]{0,16}$")


QUEUE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class Section:
    """Reads one table of the TOML document, recording problems instead of raising."""

    def __init__(self, reader: Reader, label: str, table: Mapping[str, Any]) -> None:
        self._reader = reader
        self._label = label
        self._table = table
        self._seen: set[str] = set()

    def _get(self, key: str) -> Any:
        self._seen.add(key)
        self._reader.keys.add(f"{self._label} {key}")
        return self._table.get(key)

    def problem(self, key: str, reason: str) -> None:
        self._reader.problems.append(f"{self._reader.name}: {self._label} {key}: {reason}")

    def string(
        self,
        key: str,
        default: str,
        *,
        choices: tuple[str, ...] = (),
        pattern: re.Pattern[str] | None = None,
    ) -> str:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            self.problem(key, f"expected a string, got {show(value)}")
            return default
        if choices and value not in choices:
            self.problem(key, f"expected one of {', '.join(choices)}, got {show(value)}")
            return default
        if pattern is not None and not pattern.match(value):
            self.problem(key, f"invalid value {show(value)}")
            return default
        return value

    def number(self, key: str, default: float, *, low: float, high: float) -> float:
        value = self._get(key)
        if value is None:
            return default
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            self.problem(key, f"expected a number {low:g}-{high:g}, got {show(value)}")
            return default
        return float(value)

    def integer(self, key: str, default: int, *, low: int, high: int) -> int:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.problem(key, f"expected an integer {low}-{high}, got {show(value)}")
            return default
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(key, f"expected true or false, got {show(value)}")
            return default
        return value

    def strings(
        self, key: str, default: tuple[str, ...], *, pattern: re.Pattern[str] | None = None
    ) -> tuple[str, ...]:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(key, f"expected a list of strings, got {show(value)}")
            return default
        if pattern is not None:
            bad = [v for v in value if not pattern.match(v)]
            if bad:
                self.problem(key, f"invalid value {show(bad[0])}")
                return default
        return tuple(value)

    def table_list(self, key: str) -> list[dict[str, Any]]:
        value = self._get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.problem(key, "expected an array of tables")
            return []
        return value

    def path(self, key: str, default: str) -> Path:
        raw = self.string(key, default)
        path = Path(raw).expanduser()
        return path if path.is_absolute() else (self._reader.base / path)

    def finish(self) -> None:
        for key in sorted(set(self._table) - self._seen):
            self.problem(key, "unknown key")


# The sections whose passwords come from the environment.
CREDENTIALS = frozenset({"smtp", "relay", "imap"})


class Reader:
    def __init__(
        self,
        name: str,
        base: Path,
        document: Mapping[str, Any],
        credentials: frozenset[str] = CREDENTIALS,
    ) -> None:
        self.name = name
        self.base = base
        self.document = document
        # Whose passwords must be set: a command checks only those it uses (listing tickets
        # needs no IMAP password in the sysadmin's shell); an unset one stays empty.
        self.credentials = credentials
        self.problems: list[str] = []
        self.keys: set[str] = set()  # every "[section] key" read: the schema, as used

    def section(self, name: str) -> Section:
        table = self.document.get(name, {})
        if not isinstance(table, dict):
            self.problems.append(f"{self.name}: [{name}]: expected a table")
            table = {}
        return Section(self, f"[{name}]", table)


def show(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)
