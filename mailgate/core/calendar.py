"""Count business days: working weekdays in the desk's time zone, minus closed days.

Timers ("remind after 3 business days") and, later, SLA deadlines count in
business time. ``add_business_days`` keeps the local time of day and skips
weekends and the closed dates given (public holidays, the desk's own days off).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo


@dataclass(frozen=True, slots=True)
class BusinessCalendar:
    zone: tzinfo
    workdays: frozenset[int] = frozenset({0, 1, 2, 3, 4})  # Monday = 0
    closed: frozenset[date] = frozenset()

    def is_business_day(self, day: date) -> bool:
        return day.weekday() in self.workdays and day not in self.closed

    def add_business_days(self, start: datetime, days: float) -> datetime:
        """``start`` plus ``days`` business days, at the same local time of day.

        A start on a closed day counts from the next business day's start of
        day; a fraction of a day is added as that many hours of the last day.
        """
        local = start.astimezone(self.zone)
        whole = int(days)
        if not self.is_business_day(local.date()):
            day = local.date()
            while not self.is_business_day(day):
                day += timedelta(days=1)
            local = datetime.combine(day, datetime.min.time(), tzinfo=self.zone)
        day = local.date()
        for _ in range(whole):
            day += timedelta(days=1)
            while not self.is_business_day(day):
                day += timedelta(days=1)
        moved = datetime.combine(day, local.time().replace(tzinfo=None), tzinfo=self.zone)
        return (moved + timedelta(days=days - whole)).astimezone(UTC)

    def add(self, start: datetime, days: float, *, business: bool) -> datetime:
        if business:
            return self.add_business_days(start, days)
        return start + timedelta(days=days)
