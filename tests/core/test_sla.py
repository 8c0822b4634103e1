from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailgate.core.calendar import BusinessCalendar
from mailgate.core.sla import (
    DEFAULT_POLICY,
    Duration,
    SlaClock,
    alarm_times,
    on_status,
    parse_due,
    parse_duration,
    status_of,
)
from mailgate.core.workflow import Group

AMS = ZoneInfo("Europe/Amsterdam")
BRU = ZoneInfo("Europe/Brussels")
HOUR = 3600


def calendar(country: str, zone: ZoneInfo = AMS, **extra: object) -> BusinessCalendar:
    days = holidays.country_holidays(country, years=range(2025, 2029))
    return BusinessCalendar(zone, closed=frozenset(days), **extra)  # type: ignore[arg-type]


NL = calendar("NL")
BE = calendar("BE", BRU)


def at(*args: int, zone: ZoneInfo = AMS) -> datetime:
    return datetime(*args, tzinfo=zone)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("start", "seconds", "due"),
    [
        (at(2026, 1, 5, 16, 0), 4 * HOUR, at(2026, 1, 6, 11, 30)),  # across an evening
        (at(2026, 1, 5, 20, 0), 1 * HOUR, at(2026, 1, 6, 10, 0)),  # sent after hours
        (at(2026, 1, 5, 7, 0), 1 * HOUR, at(2026, 1, 5, 10, 0)),  # before opening
        (at(2026, 1, 9, 16, 0), 2 * HOUR, at(2026, 1, 12, 9, 30)),  # across a weekend
        (at(2026, 1, 10, 12, 0), 1 * HOUR, at(2026, 1, 12, 10, 0)),  # sent on Saturday
        (at(2026, 4, 24, 16, 0), 2 * HOUR, at(2026, 4, 28, 9, 30)),  # King's Day (Mon 27/4)
        (at(2026, 12, 24, 16, 0), 8.5 * HOUR, at(2026, 12, 28, 16, 0)),  # Christmas
        (at(2026, 4, 2, 17, 0), 1 * HOUR, at(2026, 4, 7, 9, 30)),  # Good Friday, Easter Monday
        (at(2026, 1, 5, 9, 0), 8.5 * HOUR, at(2026, 1, 5, 17, 30)),  # a day ends at closing
    ],
    ids=[
        "evening",
        "after-hours",
        "before-opening",
        "weekend",
        "saturday",
        "kings-day",
        "christmas",
        "easter",
        "closing-time",
    ],
)
def test_dutch_deadlines(start: datetime, seconds: float, due: datetime) -> None:
    assert NL.add_business_time(start, int(seconds)) == due.astimezone(UTC)


def test_belgian_holidays() -> None:
    # National Day (Tuesday 21 July 2026) and Armistice Day (Wednesday 11 November 2026).
    assert BE.add_business_time(at(2026, 7, 20, 17, 0, zone=BRU), HOUR) == at(
        2026, 7, 22, 9, 30, zone=BRU
    ).astimezone(UTC)
    assert BE.add_business_time(at(2026, 11, 10, 17, 0, zone=BRU), HOUR) == at(
        2026, 11, 12, 9, 30, zone=BRU
    ).astimezone(UTC)
    assert NL.add_business_time(at(2026, 7, 20, 17, 0), HOUR) == at(2026, 7, 21, 9, 30).astimezone(
        UTC
    )


def test_half_days_close_early() -> None:
    cal = replace(NL, half_days={date(2026, 12, 31): time(13, 0)})
    assert cal.add_business_time(at(2026, 12, 31, 12, 0), 2 * HOUR) == at(
        2027, 1, 4, 10, 0
    ).astimezone(UTC)


def test_units_of_targets() -> None:
    assert NL.day_seconds == int(8.5 * HOUR)
    assert [parse_duration(t) for t in ("24 hours", "2d", "1 week", "3 weken", "1,5 dag")] == [
        Duration(24, "hour"),
        Duration(2, "day"),
        Duration(1, "week"),
        Duration(3, "week"),
        Duration(1.5, "day"),
    ]
    assert parse_duration("n/a") is None and parse_duration("soon") is None
    assert Duration(1, "month").seconds(NL) == 21 * NL.day_seconds
    assert Duration(2, "week").seconds(NL) == 10 * NL.day_seconds
    assert Duration(2, "day").words("nl") == "binnen 2 werkdagen"
    assert Duration(24, "hour").words("en") == "within 24 business hours"
    assert Duration(1, "month").words("nl") == "binnen 1 maand"


def test_the_shipped_table_has_na_and_to_agree() -> None:
    assert DEFAULT_POLICY.for_ticket("feedback", "critical").answer is None
    wish = DEFAULT_POLICY.for_ticket("feedback", "high")
    assert (wish.answer, wish.solve, wish.agree) == (Duration(3, "week"), None, True)
    bug = DEFAULT_POLICY.for_ticket("bug", "critical")
    assert (bug.answer, bug.solve) == (Duration(1, "day"), Duration(2, "day"))


def test_the_clock_pauses_while_the_customer_acts_over_a_weekend() -> None:
    targets = DEFAULT_POLICY.for_ticket("bug", "critical")  # answer 1 day, solve 2 days
    clock = on_status(SlaClock(), NL, status="new", group=Group.SUPPORT, now=at(2026, 1, 9, 9))
    # Friday 09:00-13:00 running, then waiting for the customer until Monday 11:00.
    clock = on_status(
        clock, NL, status="waiting_customer", group=Group.CUSTOMER, now=at(2026, 1, 9, 13)
    )
    assert clock.consumed == 4 * HOUR and clock.running_since is None
    paused = status_of(clock, targets, NL, at(2026, 1, 12, 10), which="solve")
    assert (paused.due, paused.left) == (None, 13 * HOUR)
    clock = on_status(clock, NL, status="open", group=Group.SUPPORT, now=at(2026, 1, 12, 11))
    solve = status_of(clock, targets, NL, at(2026, 1, 12, 11), which="solve")
    # 17 h target - 4 h used = 13 h from Monday 11:00: Monday 6.5 h, Tuesday 6.5 h -> 15:30.
    assert solve.due == at(2026, 1, 13, 15, 30).astimezone(UTC)


def test_a_reopened_ticket_continues_its_solve_clock() -> None:
    targets = DEFAULT_POLICY.for_ticket("bug", "critical")
    clock = on_status(SlaClock(), NL, status="new", group=Group.SUPPORT, now=at(2026, 1, 5, 9))
    clock = on_status(clock, NL, status="closed", group=Group.CLOSED, now=at(2026, 1, 5, 15))
    assert clock.solved_at == at(2026, 1, 5, 15)
    assert status_of(clock, targets, NL, at(2026, 1, 6, 9), which="solve").met_at is not None
    clock = on_status(clock, NL, status="open", group=Group.SUPPORT, now=at(2026, 1, 7, 9))
    solve = status_of(clock, targets, NL, at(2026, 1, 7, 9), which="solve")
    assert solve.met_at is None and solve.left == 11 * HOUR


def test_alarms_at_the_warning_share_and_the_deadline() -> None:
    targets = DEFAULT_POLICY.for_ticket("bug", "critical")
    clock = on_status(SlaClock(), NL, status="new", group=Group.SUPPORT, now=at(2026, 1, 5, 9))
    alarms = dict(alarm_times(clock, targets, NL, 0.8))
    # One working day of 8.5 office hours: Monday 09:00 -> Monday 17:30; warned at 15:48.
    assert alarms["sla_answer_breach"] == at(2026, 1, 5, 17, 30).astimezone(UTC)
    assert alarms["sla_answer_warning"] == at(2026, 1, 5, 15, 48).astimezone(UTC)
    assert alarms["sla_solve_breach"] == at(2026, 1, 6, 17, 30).astimezone(UTC)
    answered = replace(clock, answered_at=at(2026, 1, 5, 10))
    assert {t for t, _ in alarm_times(answered, targets, NL, 0.8)} == {
        "sla_solve_warning",
        "sla_solve_breach",
    }
    paused = on_status(clock, NL, status="on_hold", group=Group.HOLD, now=at(2026, 1, 5, 10))
    assert alarm_times(paused, targets, NL, 0.8) == []


def test_to_agree_and_due() -> None:
    wish = DEFAULT_POLICY.for_ticket("extra_request", "medium")
    clock = on_status(SlaClock(), NL, status="new", group=Group.SUPPORT, now=at(2026, 1, 5, 9))
    assert status_of(clock, wish, NL, at(2026, 1, 5, 9), which="solve").left is None
    now = at(2026, 1, 5, 9).astimezone(UTC)
    assert parse_due("3 days", NL, now) == 3 * NL.day_seconds
    assert parse_due("2026-01-09", NL, now) == at(2026, 1, 9, 17, 30).astimezone(UTC)
    assert parse_due("2026-01-09 12:00", NL, now) == at(2026, 1, 9, 12).astimezone(UTC)
    assert parse_due("2025-01-01", NL, now) is None and parse_due("soon", NL, now) is None
    agreed = replace(clock, agreed_solve=3 * NL.day_seconds)
    due = status_of(agreed, wish, NL, at(2026, 1, 5, 9), which="solve")
    assert due.due == at(2026, 1, 7, 17, 30).astimezone(UTC)
    fixed = replace(clock, fixed_solve_due=at(2026, 1, 9, 17, 30).astimezone(UTC))
    late = status_of(fixed, wish, NL, at(2026, 1, 12, 10).astimezone(UTC), which="solve")
    assert late.breached and late.left == -HOUR


moments = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(AMS)
)
durations = st.integers(min_value=0, max_value=400 * HOUR)


@settings(max_examples=300, deadline=None)
@given(start=moments, d1=durations, d2=durations)
def test_adding_business_time_is_associative(start: datetime, d1: int, d2: int) -> None:
    for cal in (NL, BE):
        assert cal.add_business_time(cal.add_business_time(start, d1), d2) == (
            cal.add_business_time(start, d1 + d2)
        )


@settings(max_examples=200, deadline=None)
@given(start=moments, d=st.integers(min_value=1, max_value=400 * HOUR))
def test_business_seconds_measure_what_was_added(start: datetime, d: int) -> None:
    assert NL.business_seconds(start, NL.add_business_time(start, d)) == d
    assert NL.add_business_time(start, d) > start - timedelta(seconds=1)
