"""The sections about the desk's rules: calendar, service levels, submission, workflow."""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from datetime import date, datetime, time

from mailgate.config.reader import Reader, Section, show
from mailgate.config.settings import CalendarConfig, SlaConfig
from mailgate.core.model import PRIORITIES, TICKET_TYPES
from mailgate.core.notify import Kind
from mailgate.core.sla import (
    DEFAULT_TARGETS,
    NA,
    TO_AGREE,
    parse_duration,
)
from mailgate.core.submission import KeywordRule
from mailgate.core.terms import priority, ticket_type
from mailgate.core.workflow import (
    DEFAULT_WORKFLOW,
    ClosedReply,
    Group,
    Party,
    State,
    Timer,
    Transition,
    Trigger,
    Workflow,
    problems,
)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def calendar_section(reader: Reader, check_holidays: bool) -> CalendarConfig:
    s = reader.section("calendar")
    zone = s.string("timezone", "Europe/Amsterdam")
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        s.problem("timezone", f"unknown time zone {show(zone)}")
        zone = "Europe/Amsterdam"
    days = s.strings("workdays", WEEKDAYS[:5])
    bad = [d for d in days if d.lower() not in WEEKDAYS]
    if bad:
        s.problem("workdays", f"expected day names {', '.join(WEEKDAYS)}, got {show(bad[0])}")
    closed: list[date] = []
    for text in s.strings("closed_days", ()):
        try:
            closed.append(date.fromisoformat(text))
        except ValueError:
            s.problem("closed_days", f"expected YYYY-MM-DD, got {show(text)}")
    opens = clock_time(s, "opens", "09:00")
    closes = clock_time(s, "closes", "17:30")
    if closes <= opens:
        s.problem("closes", "must be later than opens")
    country = s.string("holidays_country", "NL")
    subdivision = s.string("holidays_subdivision", "")
    if country and check_holidays:
        import holidays

        try:
            holidays.country_holidays(country, subdiv=subdivision or None, years=2026)
        except (NotImplementedError, KeyError) as exc:
            s.problem("holidays_country", f"no holiday calendar for {show(country)}: {exc}")
    half: list[tuple[date, time]] = []
    raw_half = s._get("half_days") or {}
    if not isinstance(raw_half, dict):
        s.problem("half_days", 'expected a table of "YYYY-MM-DD" = "HH:MM"')
        raw_half = {}
    for key, value in raw_half.items():
        try:
            half.append((date.fromisoformat(str(key)), time.fromisoformat(str(value))))
        except ValueError:
            s.problem("half_days", f'expected "YYYY-MM-DD" = "HH:MM", got {show(key)}')
    s.finish()
    workdays = tuple(sorted({WEEKDAYS.index(d.lower()) for d in days if d.lower() in WEEKDAYS}))
    if not workdays:
        s.problem("workdays", "at least one working day is required")
    return CalendarConfig(
        zone, workdays, tuple(closed), opens, closes, country, subdivision, tuple(half)
    )


def clock_time(s: Section, key: str, default: str) -> time:
    text = s.string(key, default)
    try:
        return time.fromisoformat(text)
    except ValueError:
        s.problem(key, f'expected "HH:MM", got {show(text)}')
        return time.fromisoformat(default)


def sla_section(reader: Reader, calendar: CalendarConfig) -> SlaConfig:
    """The targets table; an answer target longer than its solve target is refused."""
    s = reader.section("sla")
    warn_at = s.number("warn_at", 0.8, low=0.05, high=0.99)
    table = dict(DEFAULT_TARGETS)
    raw = s._get("targets")
    if raw is not None:
        if not isinstance(raw, dict):
            s.problem("targets", "expected a table of type = { priority = [answer, solve] }")
            raw = {}
        for kind, row in raw.items():
            key = f"targets.{kind}"
            if kind not in TICKET_TYPES:
                s.problem(key, f"unknown type; known: {', '.join(TICKET_TYPES)}")
                continue
            if not isinstance(row, dict):
                s.problem(key, "expected a table of priority = [answer, solve]")
                continue
            for level, pair in row.items():
                where = f"{key}.{level}"
                if level not in PRIORITIES:
                    s.problem(where, f"unknown priority; known: {', '.join(PRIORITIES)}")
                    continue
                if (
                    not isinstance(pair, list)
                    or len(pair) != 2
                    or not all(isinstance(v, str) for v in pair)
                ):
                    s.problem(where, 'expected ["answer", "solve"], e.g. ["24 hours", "2 days"]')
                    continue
                for value in pair:
                    if value.lower() not in (NA, TO_AGREE) and parse_duration(value) is None:
                        s.problem(
                            where,
                            f"{show(value)} is not a duration (hours, days, weeks, months), "
                            '"n/a" or "to agree"',
                        )
                table[(kind, level)] = (pair[0], pair[1])
    day = round(
        (
            datetime.combine(date.min, calendar.closes) - datetime.combine(date.min, calendar.opens)
        ).total_seconds()
    )
    for (kind, level), (answer_text, solve_text) in table.items():
        answer, solve = parse_duration(answer_text), parse_duration(solve_text)
        if answer is not None and solve is not None and answer.within(day) > solve.within(day):
            s.problem(
                f"targets.{kind}.{level}",
                f"the answer target {show(answer_text)} is longer than the solve target "
                f"{show(solve_text)} (both business time: an hour is an office hour, a day "
                "the office hours of a working day)",
            )
    s.finish()
    return SlaConfig(warn_at, tuple((k[0], k[1], v[0], v[1]) for k, v in table.items()))


def submission_section(reader: Reader) -> tuple[KeywordRule, ...]:
    s = reader.section("submission")
    rules: list[KeywordRule] = []
    for index, table in enumerate(s.table_list("keywords")):
        r = Section(reader, f"[[submission.keywords]] #{index + 1}", table)
        phrases = r.strings("match", ())
        kind = r.string("type", "")
        level = r.string("priority", "")
        r.finish()
        if not phrases:
            r.problem("match", "at least one phrase is required")
        if kind and ticket_type(kind) is None:
            r.problem("type", f"expected one of {', '.join(TICKET_TYPES)}, got {show(kind)}")
        if level and priority(level) is None:
            r.problem("priority", f"expected one of {', '.join(PRIORITIES)}, got {show(level)}")
        if not kind and not level:
            r.problem("type", "a rule needs a type, a priority or both")
        rules.append(
            KeywordRule(
                tuple(p.lower() for p in phrases),
                ticket_type(kind) if kind else None,
                priority(level) if level else None,
            )
        )
    s.finish()
    return tuple(rules)


def workflow_section(reader: Reader, raw: object) -> Workflow:
    """``[workflow]``: each of its parts defaults to the shipped workflow's."""
    if raw is None:
        return DEFAULT_WORKFLOW
    s = reader.section("workflow")
    default = DEFAULT_WORKFLOW
    initial = s.string("initial", default.initial)
    reply_to_closed = ClosedReply(
        s.string(
            "reply_to_closed",
            default.reply_to_closed.value,
            choices=tuple(c.value for c in ClosedReply),
        )
    )
    reopen_to = s.string("reopen_to", default.reopen_to)
    states = _states(reader, s) if s._get("states") is not None else default.states
    transitions = default.transitions
    if s._get("transitions") is not None:
        transitions = tuple(
            _transition(Section(reader, f"[[workflow.transitions]] #{n + 1}", table), table)
            for n, table in enumerate(s.table_list("transitions"))
        )
    timers = default.timers
    if s._get("timers") is not None:
        timers = tuple(
            _timer(Section(reader, f"[[workflow.timers]] #{n + 1}", table), table)
            for n, table in enumerate(s.table_list("timers"))
        )
    s.finish()
    workflow = Workflow(initial, states, transitions, timers, reply_to_closed, reopen_to)
    for problem in problems(workflow, (k.value for k in Kind)):
        reader.problems.append(f"{reader.name}: [workflow] {problem}")
    return workflow


def _states(reader: Reader, s: Section) -> tuple[State, ...]:
    raw_states = s._get("states")
    if not isinstance(raw_states, dict) or not all(
        isinstance(v, dict) for v in raw_states.values()
    ):
        s.problem("states", "expected a table of state = { group, nl, en, next }")
        return DEFAULT_WORKFLOW.states
    parsed: list[State] = []
    for name, table in raw_states.items():
        t = Section(reader, f"[workflow.states.{name}]", table)
        group = t.string("group", "support", choices=tuple(g.value for g in Group))
        if "group" not in table:
            t.problem("group", "required")
        parsed.append(
            State(
                str(name),
                Group(group),
                t.string("nl", str(name)),
                t.string("en", str(name)),
                t.strings("next", ()),
            )
        )
        t.finish()
    return tuple(parsed)


def _transition(t: Section, table: Mapping[str, object]) -> Transition:
    on = t.string("on", "", choices=tuple(x.value for x in Trigger))
    if "on" not in table:
        t.problem("on", "required")
    rule = Transition(
        Trigger(on) if on else Trigger.CUSTOMER_REPLY,
        t.strings("from", ()),
        t.string("to", ""),
        t.string("template", ""),
        Party(t.string("notify", "customer", choices=tuple(a.value for a in Party))),
    )
    t.finish()
    return rule


def _timer(t: Section, table: Mapping[str, object]) -> Timer:
    fire = t.string("fire", "", choices=tuple(x.value for x in Trigger))
    for key in ("state", "after_days", "fire"):
        if key not in table:
            t.problem(key, "required")
    timer = Timer(
        t.string("state", ""),
        t.number("after_days", 1.0, low=0.0, high=3650.0),
        Trigger(fire) if fire else Trigger.REMIND,
        t.boolean("business_days", True),
    )
    t.finish()
    return timer
