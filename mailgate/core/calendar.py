"""Count business time: office hours on working days in the desk's zone, minus closed days.

Timers ("remind after 3 business days") count whole business days and keep the
time of day. SLA deadlines count business seconds: only the office hours of
working days that are not public holidays or closed days (half days close
early). ``add_business_time`` and ``business_seconds`` are exact inverses on
business moments, and adding is associative: adding d1 then d2 is adding d1 + d2.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo


@dataclass(frozen=True, slots=True)
class Window:
    """The office hours of one day, as aware datetimes in the desk's zone."""

    day: date
    start: datetime
    end: datetime

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())


@dataclass(frozen=True, slots=True, eq=False)
class BusinessCalendar:
    zone: tzinfo
    workdays: frozenset[int] = frozenset({0, 1, 2, 3, 4})  # Monday = 0
    closed: frozenset[date] = frozenset()  # public holidays and the desk's own days off
    opens: time = time(9, 0)
    closes: time = time(17, 30)
    half_days: Mapping[date, time] = field(default_factory=dict)  # day -> early closing time
    holiday_names: Mapping[date, str] = field(default_factory=dict)  # for explanations
    # Each day's window once worked out (the calendar never changes; SLA clocks ask often).
    _windows: dict[date, Window | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def is_business_day(self, day: date) -> bool:
        return day.weekday() in self.workdays and day not in self.closed

    @property
    def day_seconds(self) -> int:
        """The length of a full business day (the unit of "days" in targets)."""
        start = datetime.combine(date(2000, 1, 3), self.opens)
        return int((datetime.combine(date(2000, 1, 3), self.closes) - start).total_seconds())

    def window(self, day: date) -> Window | None:
        """The office hours of ``day``, or None when the desk is closed all day."""
        try:
            return self._windows[day]
        except KeyError:
            found = self._windows[day] = self._window(day)
            return found

    def _window(self, day: date) -> Window | None:
        if not self.is_business_day(day):
            return None
        closes = self.half_days.get(day, self.closes)
        if closes <= self.opens:
            return None
        return Window(
            day,
            datetime.combine(day, self.opens, tzinfo=self.zone),
            datetime.combine(day, closes, tzinfo=self.zone),
        )

    def windows(self, start: datetime, limit_days: int = 3700) -> Iterator[Window]:
        """The office-hour windows from ``start``'s local day on, in order."""
        day = start.astimezone(self.zone).date()
        for _ in range(limit_days):
            found = self.window(day)
            if found is not None:
                yield found
            day += timedelta(days=1)

    def add_business_time(self, start: datetime, seconds: int) -> datetime:
        """The moment ``seconds`` of office time after ``start`` (in UTC).

        Zero is ``start`` itself. A deadline that uses up a day exactly falls on
        that day's closing time, not on the next morning.
        """
        if seconds <= 0:
            return start.astimezone(UTC)
        cursor = start.astimezone(self.zone)
        left = seconds
        for window in self.windows(cursor):
            begin = max(window.start, cursor)
            if begin >= window.end:
                continue
            available = int((window.end - begin).total_seconds())
            if left <= available:
                return (begin + timedelta(seconds=left)).astimezone(UTC)
            left -= available
        raise ValueError("no business time in the next ten years: check [calendar]")

    def business_seconds(self, start: datetime, end: datetime) -> int:
        """Office time between ``start`` and ``end``; 0 when ``end`` is not later."""
        if end <= start:
            return 0
        begin_at = start.astimezone(self.zone)
        end_at = end.astimezone(self.zone)
        total = 0
        for window in self.windows(begin_at):
            if window.start >= end_at:
                break
            lo, hi = max(window.start, begin_at), min(window.end, end_at)
            if hi > lo:
                total += int((hi - lo).total_seconds())
        return total

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
