from __future__ import annotations

import io

from mailgate.cli.progress import Steps


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_when_not_on_a_terminal() -> None:
    stream = io.StringIO()
    with Steps("retrying", 25, stream) as steps:
        for _ in range(25):
            steps.advance()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "retrying: 2/25" and lines[-1] == "retrying: 25/25"
    assert len(lines) == 13  # every second item, and the last


def test_a_bar_on_a_terminal() -> None:
    stream = Terminal()
    with Steps("removing", 3, stream) as steps:
        steps.advance(3)
    drawn = stream.getvalue()
    assert "removing: " not in drawn  # no plain lines: a bar, redrawn in place
    assert "removing [" + "#" * 24 + "] 3/3" in drawn and "\n" not in drawn
    assert drawn.endswith("\r\x1b[K") and steps.done == 3 and steps.bar
