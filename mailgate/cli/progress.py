"""Show how far long work got: one redrawn bar on a terminal, plain lines otherwise.

Progress goes to stderr, so that stdout stays clean for ``--json`` and pipes. The bar
is drawn here rather than by a terminal library: see docs/decisions/0017-no-rich.md.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

BAR = 24  # characters of the bar
CLEAR = "\r\x1b[K"  # back to the start of the line, and erase it


class Steps:
    """``with Steps("retrying", 300) as steps: ... steps.advance()``."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.done = 0
        self.every = max(1, total // 10)
        self.bar = False  # drawing a bar (on a terminal) rather than writing lines
        self.started = time.monotonic()
        self.drawn = 0.0  # when the bar was last drawn

    def __enter__(self) -> Steps:
        self.bar = self.stream.isatty() and self.total > 1
        self.started = time.monotonic()
        if self.bar:
            self._draw()
        return self

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self.bar:
            if self.done >= self.total or time.monotonic() - self.drawn >= 0.1:
                self._draw()
        elif self.done % self.every == 0 or self.done == self.total:
            print(f"{self.label}: {self.done}/{self.total}", file=self.stream, flush=True)

    def _draw(self) -> None:
        """``label [#########...............] 120/300 0:42 left``, over the last one."""
        share = min(self.done / self.total, 1.0)
        filled = round(share * BAR)
        elapsed = time.monotonic() - self.started
        left = ""
        if 0 < self.done < self.total:
            seconds = int(elapsed * (self.total - self.done) / self.done)
            left = f" {seconds // 60}:{seconds % 60:02d} left"
        line = f"{self.label} [{'#' * filled}{'.' * (BAR - filled)}] {self.done}/{self.total}"
        self.stream.write(f"{CLEAR}{line}{left}")
        self.stream.flush()
        self.drawn = time.monotonic()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.bar:  # the bar goes; what the command prints next takes its line
            self.stream.write(CLEAR)
            self.stream.flush()
