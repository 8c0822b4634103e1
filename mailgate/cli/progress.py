"""Show how far long work got: a rich progress bar on a terminal, plain lines otherwise.

Progress goes to stderr, so that stdout stays clean for ``--json`` and pipes.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)


class Steps:
    """``with Steps("retrying", 300) as steps: ... steps.advance()``."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.done = 0
        self.every = max(1, total // 10)
        self.bar: Progress | None = None
        self.task: TaskID | None = None

    def __enter__(self) -> Steps:
        if self.stream.isatty() and self.total > 1:
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=self.total)
        return self

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self.bar is not None and self.task is not None:
            self.bar.advance(self.task, count)
        elif self.done % self.every == 0 or self.done == self.total:
            print(f"{self.label}: {self.done}/{self.total}", file=self.stream, flush=True)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.bar is not None:
            self.bar.stop()
