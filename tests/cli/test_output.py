"""What every command shares: one way to print a moment."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from mailgate.cli.output import at

AMSTERDAM = ZoneInfo("Europe/Amsterdam")


def test_a_moment_is_printed_in_the_desks_zone_with_the_zones_name() -> None:
    assert at(AMSTERDAM, datetime(2026, 1, 5, 9, 0, tzinfo=UTC)) == "Mon 2026-01-05 10:00 CET"
    assert at(AMSTERDAM, datetime(2026, 7, 6, 9, 0, tzinfo=UTC)) == "Mon 2026-07-06 11:00 CEST"
    assert at(AMSTERDAM, None) == "-"
