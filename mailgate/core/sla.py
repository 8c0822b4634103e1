"""Service levels: answer and solve targets per type and priority, counted in business time.

Units are business time throughout (docs/decisions/0009-sla.md): an hour is an
office hour; a day is a full business day (the office hours of one working day,
8.5 hours by default); a week is 5 business days; a month is 21 business days.
A target may be "n/a" (none) or "to agree" (none until an agent sets one with
``#due``). One clock serves both targets: it runs while support must act and
pauses while the customer must act, the ticket is on hold, or it is closed. The
answer target is met by the first agent answer relayed to the customer; the
solve target by resolved or closed; a reopened ticket continues its solve clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from mailgate.core.calendar import BusinessCalendar
from mailgate.core.workflow import Group

HOUR = 3600
NA = "n/a"
TO_AGREE = "to agree"


@dataclass(frozen=True, slots=True)
class Duration:
    """A target as written ("2 days") and its length in business seconds."""

    amount: float
    unit: str  # hour | day | week | month

    def seconds(self, calendar: BusinessCalendar) -> int:
        return self.within(calendar.day_seconds)

    def within(self, day: int) -> int:
        """The length in business seconds where a business day lasts ``day`` seconds."""
        per = {"hour": HOUR, "day": day, "week": 5 * day, "month": 21 * day}[self.unit]
        return round(self.amount * per)

    def words(self, language: str) -> str:
        """ "binnen 2 werkdagen", "within 24 business hours"."""
        n = f"{self.amount:g}"
        one = self.amount == 1
        if language == "nl":
            noun = {
                "hour": "werkuur" if one else "werkuren",
                "day": "werkdag" if one else "werkdagen",
                "week": "werkweek" if one else "werkweken",
                "month": "maand" if one else "maanden",
            }[self.unit]
            return f"binnen {n} {noun}"
        noun = {"hour": "business hour", "day": "business day", "week": "week", "month": "month"}[
            self.unit
        ]
        return f"within {n} {noun}{'' if one else 's'}"


Target = Duration | None  # None: no target ("n/a", or "to agree" until an agent agrees one)

_UNITS = {
    "h": "hour",
    "hour": "hour",
    "hours": "hour",
    "uur": "hour",
    "d": "day",
    "day": "day",
    "days": "day",
    "dag": "day",
    "dagen": "day",
    "w": "week",
    "week": "week",
    "weeks": "week",
    "weken": "week",
    "mo": "month",
    "month": "month",
    "months": "month",
    "maand": "month",
    "maanden": "month",
}
_DURATION = re.compile(r"^\s*(\d+(?:[.,]\d+)?)\s*([a-z]+)\s*$")


def parse_duration(text: str) -> Duration | None:
    """ "24 hours", "2d", "1 month", "3 weken"; None when it is not a duration."""
    found = _DURATION.match(text.lower())
    if found is None or found[2] not in _UNITS:
        return None
    amount = float(found[1].replace(",", "."))
    return Duration(amount, _UNITS[found[2]]) if amount > 0 else None


@dataclass(frozen=True, slots=True)
class Targets:
    """Answer and solve target of one type x priority; ``agree``: the solve target is
    agreed per ticket."""

    answer: Target
    solve: Target
    agree: bool = False


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    targets: Mapping[tuple[str, str], Targets]  # (type, priority) -> targets
    warn_at: float = 0.8

    def for_ticket(self, type_: str, priority: str) -> Targets:
        return self.targets.get((type_, priority), Targets(None, None))


def _t(answer: str, solve: str) -> Targets:
    return Targets(parse_duration(answer), parse_duration(solve), agree=solve.lower() == TO_AGREE)


_BUG = (
    ("1 day", "2 days"),  # KampAdmin's "24 uur": one working day, before the solve target
    ("5 days", "2 weeks"),
    ("2 weeks", "1 month"),
    ("1 month", "5 months"),
)
_QUESTION = (("2 days", "5 days"), ("5 days", "1 week"), ("2 weeks", "1 month"),
             ("2 months", "5 months"))  # fmt: skip
_WISH = ((NA, NA), ("3 weeks", TO_AGREE), ("1 month", TO_AGREE), ("3 months", TO_AGREE))
_PRIORITIES = ("critical", "high", "medium", "low")

# KampAdmin's table: the shipped default.
DEFAULT_TARGETS: Mapping[tuple[str, str], tuple[str, str]] = {
    (kind, priority): pair
    for kinds, row in (
        (("bug",), _BUG),
        (("question", "configuration_change"), _QUESTION),
        (("feedback", "extra_request"), _WISH),
    )
    for kind in kinds
    for priority, pair in zip(_PRIORITIES, row, strict=True)
}


def policy_from(table: Mapping[tuple[str, str], tuple[str, str]], warn_at: float) -> SlaPolicy:
    return SlaPolicy({key: _t(*pair) for key, pair in table.items()}, warn_at)


DEFAULT_POLICY = policy_from(DEFAULT_TARGETS, 0.8)


@dataclass(frozen=True, slots=True)
class SlaClock:
    """The SLA clock of one ticket, as stored on it."""

    consumed: int = 0  # business seconds the clock ran before ``running_since``
    running_since: datetime | None = None  # None: paused
    answered_at: datetime | None = None
    solved_at: datetime | None = None
    agreed_solve: int | None = None  # an agent's #due as a duration (business seconds)
    fixed_solve_due: datetime | None = None  # an agent's #due as a date

    def used(self, calendar: BusinessCalendar, now: datetime) -> int:
        """Business seconds on the clock at ``now``."""
        if self.running_since is None:
            return self.consumed
        return self.consumed + calendar.business_seconds(self.running_since, now)


RUNNING_GROUPS = frozenset({Group.SUPPORT})
SOLVED_STATES = frozenset({"resolved", "closed"})


def on_status(
    clock: SlaClock, calendar: BusinessCalendar, *, status: str, group: Group, now: datetime
) -> SlaClock:
    """The clock after the ticket entered ``status``: running only while support must act;
    solved on resolved or closed; a reopened ticket continues where it stopped."""
    solved = status in SOLVED_STATES or group in (Group.CLOSED, Group.ARCHIVED)
    clock = replace(
        clock,
        solved_at=(clock.solved_at or now) if solved else None,
    )
    if group in RUNNING_GROUPS:
        return clock if clock.running_since else replace(clock, running_since=now)
    if clock.running_since is None:
        return clock
    return replace(clock, consumed=clock.used(calendar, now), running_since=None)


@dataclass(frozen=True, slots=True)
class Due:
    """Where one target stands."""

    target: int | None  # business seconds; None: no target
    due: datetime | None  # while running; None when paused, met or without target
    left: int | None  # business seconds left (negative: over); None without target
    met_at: datetime | None

    @property
    def breached(self) -> bool:
        return self.left is not None and self.left < 0 and self.met_at is None


def status_of(
    clock: SlaClock, targets: Targets, calendar: BusinessCalendar, now: datetime, *, which: str
) -> Due:
    """Where the answer (``which="answer"``) or solve target stands at ``now``."""
    if which == "answer":
        target = targets.answer.seconds(calendar) if targets.answer else None
        met = clock.answered_at
        fixed = None
    else:
        agreed = clock.agreed_solve
        target = agreed if agreed else (targets.solve.seconds(calendar) if targets.solve else None)
        met = clock.solved_at
        fixed = clock.fixed_solve_due
    if fixed is not None:
        if fixed > now:
            left = calendar.business_seconds(now, fixed)
        else:
            left = -calendar.business_seconds(fixed, now)
        return Due(None, None if met else fixed, left, met)
    if target is None:
        return Due(None, None, None, met)
    used = clock.used(calendar, now)
    left = target - used
    due = None
    if clock.running_since is not None and met is None:
        due = calendar.add_business_time(clock.running_since, max(target - clock.consumed, 0))
    return Due(target, due, left, met)


def alarm_times(
    clock: SlaClock, targets: Targets, calendar: BusinessCalendar, warn_at: float
) -> list[tuple[str, datetime]]:
    """(trigger, when) of the warnings and breaches still ahead on a running clock."""
    if clock.running_since is None:
        return []
    alarms: list[tuple[str, datetime]] = []
    for which in ("answer", "solve"):
        if which == "answer" and (clock.answered_at or not targets.answer):
            continue
        if which == "solve":
            if clock.solved_at:
                continue
            if clock.fixed_solve_due is not None:
                alarms.append((f"sla_{which}_breach", clock.fixed_solve_due))
                continue
        target_duration = targets.answer if which == "answer" else targets.solve
        target = (
            clock.agreed_solve
            if which == "solve" and clock.agreed_solve
            else (target_duration.seconds(calendar) if target_duration else None)
        )
        if target is None:
            continue
        for threshold, share in (("warning", warn_at), ("breach", 1.0)):
            at = int(target * share) - clock.consumed
            alarms.append(
                (f"sla_{which}_{threshold}", calendar.add_business_time(clock.running_since, at))
            )
    return alarms


def parse_due(text: str, calendar: BusinessCalendar, now: datetime) -> int | datetime | None:
    """An agent's ``#due``: a duration (business seconds) or a date (end of that business
    day) or date and time; None when it is neither, or lies in the past."""
    duration = parse_duration(text)
    if duration is not None:
        return duration.seconds(calendar)
    value = text.strip()
    for fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%d", "%d-%m-%Y %H:%M", "%d-%m-%Y"):
        try:
            parsed = datetime.strptime(value, fmt)  # the zone is the desk's
        except ValueError:
            continue
        if "%H" in fmt:
            at = parsed.replace(tzinfo=calendar.zone)
        else:
            closing = calendar.window(parsed.date())
            at = (
                closing.end
                if closing
                else datetime.combine(parsed.date(), calendar.closes, tzinfo=calendar.zone)
            )
        at = at.astimezone(UTC)
        return at if at > now else None
    return None


def hours(seconds: int) -> str:
    """Business seconds as hours for people: "12.5 h", "-3 h"."""
    return f"{seconds / HOUR:.1f} h".replace(".0 h", " h")
