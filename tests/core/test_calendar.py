from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from mailgate.core.calendar import BusinessCalendar

AMS = ZoneInfo("Europe/Amsterdam")
CAL = BusinessCalendar(AMS, closed=frozenset({date(2026, 4, 27)}))  # King's Day


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=AMS)  # type: ignore[misc]


def test_weekdays_count_and_weekends_do_not() -> None:
    assert CAL.add_business_days(at(2026, 1, 5, 10), 3) == at(2026, 1, 8, 10).astimezone(UTC)
    assert CAL.add_business_days(at(2026, 1, 9, 10), 1) == at(2026, 1, 12, 10).astimezone(UTC)


def test_a_start_on_a_closed_day_counts_from_the_next_business_day() -> None:
    assert CAL.add_business_days(at(2026, 1, 10, 15), 1) == at(2026, 1, 13, 0).astimezone(UTC)
    assert CAL.add_business_days(at(2026, 4, 24, 9), 1) == at(2026, 4, 28, 9).astimezone(UTC)


def test_calendar_days_when_not_business() -> None:
    start = at(2026, 1, 9, 10)
    assert CAL.add(start, 7, business=False) == at(2026, 1, 16, 10)


def test_a_zone_change_keeps_the_local_time() -> None:
    # Summer time starts on 29 March 2026: Friday 10:00 + 1 business day = Monday 10:00 local.
    assert CAL.add_business_days(at(2026, 3, 27, 10), 1) == at(2026, 3, 30, 10).astimezone(UTC)
