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
    assert "removing: " not in stream.getvalue()  # no plain lines: a rich bar was drawn
    assert steps.done == 3 and steps.bar is not None
