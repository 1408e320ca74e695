"""Special periods (重点时段): declaring (and refusing bad input), the level in force with overlaps,
start and end announcements exactly once across overlapping passes and a restart, and the
reminder rules tied to an alert level firing only inside a period of that level or a higher one."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from bot.errors import NotAllowed
from bot.periods import DEFAULT_SEMESTER_STARTS, SchoolCalendar
from bot.runtime import Runtime
from bot.services import org, reminders, special_periods
from bot.services.models import Actor
from bot.services.special_periods import EndOutcome, PeriodRefused, Problem, Span
from bot.store.tables import reminder_occurrences
from bot.store.tables import special_periods as periods_table
from tests.support import (
    SUPERADMIN_ID,
    FakeClock,
    add_groups,
    enrol,
    make_settings,
    messages,
    open_runtime,
    profile,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 9, 28, 8, 0, tzinfo=SHANGHAI).astimezone(UTC)
PLAN = """
- name: 节日巡查
  text: "{date} 节日期间请加强巡查"
  schedule: daily
  at: "09:00"
  purpose: class
  alert_level: 2
- name: 一级防控点名
  text: "{date} 一级防控点名"
  schedule: daily
  at: "09:00"
  purpose: class
  alert_level: 1
- name: 日常提醒
  text: "{date} 日常提醒"
  schedule: daily
  at: "09:00"
  purpose: staff
"""
# The groups that hear about a period, and one (a department's) that does not.
AUDIENCE = {"-801", "-802", "-803", "-805"}


def at(day: int, hour: int, minute: int = 0, month: int = 9) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


async def school(rt: Runtime) -> Actor:
    """The boss, an informant, two class groups, the guard team's, the duty chat's and a
    department's; the plan above (imported from the command line)."""
    boss = await org.identify(rt, profile(SUPERADMIN_ID, "boss", "boss"), private=True)
    await enrol(rt, boss, 201, "informant", "信息学院/计科2201")
    groups = [
        ("-801", "信息学院/计科2201", "class"),
        ("-802", "信息学院/计科2202", "class"),
        ("-803", "", "staff"),
        ("-804", "总务处", "unit"),
        ("-805", "", "command"),
    ]
    await add_groups(rt, boss, groups)
    await reminders.import_plan(rt, None, PLAN.encode())
    return boss


async def count(rt: Runtime, table: Any) -> int:
    async with rt.db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar_one()


def fired(progress: reminders.Progress) -> list[str]:
    return sorted(key.split("@")[0] for key in progress.sent)


# --- the level in force (pure) ---------------------------------------------------------------


def test_overlapping_periods_the_highest_level_wins_and_rules_follow_their_level() -> None:
    week = Span(level=2, starts_at=at(30, 0), until=at(8, 0, month=10), declared_at=NOW)
    day = Span(level=1, starts_at=at(1, 0, month=10), until=at(2, 0, month=10), declared_at=NOW)
    spans = [week, day]
    assert special_periods.level_of(spans, at(29, 23)) is None
    assert special_periods.level_of(spans, at(30, 0)) == 2
    assert special_periods.level_of(spans, at(1, 12, month=10)) == 1
    assert special_periods.level_of(spans, at(2, 0, month=10)) == 2
    assert special_periods.level_of(spans, at(8, 0, month=10)) is None  # the end is exclusive
    assert special_periods.allows(spans, None, at(29, 9))  # a rule not tied to a level
    assert special_periods.allows(spans, 2, at(30, 9))
    assert special_periods.allows(spans, 2, at(1, 9, month=10))  # level 1 is higher than 2
    assert not special_periods.allows(spans, 1, at(30, 9))
    assert special_periods.allows(spans, 1, at(1, 9, month=10))
    assert not special_periods.allows(spans, 2, at(29, 9))
    # Declared at noon with a start at midnight: the morning stays as it was.
    late = Span(level=2, starts_at=at(28, 0), until=at(29, 0), declared_at=at(28, 12))
    assert special_periods.level_of([late], at(28, 9)) is None
    assert special_periods.level_of([late], at(28, 13)) == 2


def test_a_declaration_reads_whole_days_times_and_a_single_day() -> None:
    two_days = special_periods.parse_declaration(
        ["2", "2026-09-30", "2026-10-08", "国庆", "假期"], SHANGHAI
    )
    assert (two_days.level, two_days.note) == (2, "国庆 假期")
    assert (two_days.starts_at, two_days.ends_at) == (at(30, 0), at(9, 0, month=10))
    timed = special_periods.parse_declaration(
        ["一级", "2026-10-01", "18:00", "2026-10-01", "22:30", "晚会"], SHANGHAI
    )
    assert (timed.level, timed.starts_at, timed.ends_at) == (
        1,
        at(1, 18, month=10),
        at(1, 22, 30, month=10),
    )
    one_day = special_periods.parse_declaration(["1", "2026-10-01", "运动会"], SHANGHAI)
    assert (one_day.starts_at, one_day.ends_at) == (at(1, 0, month=10), at(2, 0, month=10))


@pytest.mark.parametrize(
    ("words", "problem"),
    [
        (["2", "2026-10-01"], Problem.MISSING),
        (["3", "2026-10-01", "x"], Problem.LEVEL),
        (["2", "2026-02-30", "x"], Problem.DATE),
        (["2", "明天", "x"], Problem.DATE),
        (["2", "2026-10-01", "2026-10-32", "x"], Problem.DATE),
    ],
)
def test_unreadable_declarations_say_why(words: list[str], problem: Problem) -> None:
    with pytest.raises(PeriodRefused) as caught:
        special_periods.parse_declaration(words, SHANGHAI)
    assert caught.value.context["problem"] is problem


# --- declaring -------------------------------------------------------------------------------


async def test_bad_input_and_a_non_admin_change_nothing(rt: Runtime) -> None:
    boss = await school(rt)
    informant = await org.identify(rt, profile(201, "a", "u201"), private=True)
    cases = [
        ((3, at(30, 0), at(1, 0, month=10), "国庆"), Problem.LEVEL),
        ((2, at(1, 0, month=10), at(30, 0), "国庆"), Problem.ORDER),
        ((2, at(20, 0), at(27, 0), "已过"), Problem.PAST),
        ((2, at(30, 0), at(1, 0, month=10), "x" * 201), Problem.NOTE),
        ((2, at(30, 0), at(1, 0, month=10), "   "), Problem.NOTE),
        ((2, at(30, 0), at(30, 0) + timedelta(days=93), "长期"), Problem.TOO_LONG),
        (
            (2, at(30, 0) + timedelta(days=400), at(30, 0) + timedelta(days=401), "远"),
            Problem.TOO_FAR,
        ),
    ]
    for (level, starts, ends, note), problem in cases:
        with pytest.raises(PeriodRefused) as caught:
            await special_periods.declare(rt, boss, level, starts, ends, note)
        assert caught.value.context["problem"] is problem
    with pytest.raises(NotAllowed):
        await special_periods.declare(rt, informant, 2, at(30, 0), at(1, 0, month=10), "国庆")
    with pytest.raises(NotAllowed):  # refused before the (bad) words are even read
        await special_periods.declare_words(rt, informant, ["9", "x"])
    with pytest.raises(NotAllowed):
        await special_periods.overview(rt, informant)
    assert await count(rt, periods_table) == 0
    assert await messages(rt, "special_periods.started") == []


# --- announcements and level-bound reminders -------------------------------------------------


async def test_a_period_is_announced_once_at_each_end_and_its_reminders_run_only_inside(
    tmp_path: Path, rt: Runtime, clock: FakeClock
) -> None:
    boss = await school(rt)
    period = await special_periods.declare(rt, boss, 2, at(30, 0), at(2, 0, month=10), "国庆假期")
    assert period.state == "upcoming"
    assert await messages(rt, "special_periods.started") == []  # not yet

    clock.current = at(29, 9, 1)  # the day before: only the everyday rule
    assert fired(await reminders.run_due(rt)) == ["日常提醒"]
    assert (await special_periods.announce_due(rt)).started == []

    clock.current = at(30, 0, 1)
    first, second = await asyncio.gather(
        special_periods.announce_due(rt), special_periods.announce_due(rt)
    )
    assert first.started + second.started == [period.id]
    started = await messages(rt, "special_periods.started")
    assert {m.address for m in started} == AUDIENCE  # not the department's group
    assert len(started) == len(AUDIENCE)
    text = started[0].payload["text"]
    assert "启动二级防控" in text
    assert "国庆假期" in text
    assert "2026-09-30 至 2026-10-01" in text
    assert "节日巡查" in text  # the extra reminder it brings
    assert "一级防控点名" not in text  # only for level 1

    clock.current = at(30, 9, 1)
    assert fired(await reminders.run_due(rt)) == ["日常提醒", "节日巡查"]

    # A restart in the middle repeats nothing.
    again = await open_runtime(make_settings(tmp_path), clock)
    try:
        assert (await special_periods.announce_due(again)).started == []
        assert (await reminders.run_due(again)).sent == []
        assert await special_periods.level_at(again, clock.current) == 2
    finally:
        await again.db.close()

    clock.current = at(1, 9, 1, month=10)
    assert fired(await reminders.run_due(rt)) == ["日常提醒", "节日巡查"]

    clock.current = at(2, 0, 1, month=10)
    first, second = await asyncio.gather(
        special_periods.announce_due(rt), special_periods.announce_due(rt)
    )
    assert first.ended + second.ended == [period.id]
    ended = await messages(rt, "special_periods.ended")
    assert {m.address for m in ended} == AUDIENCE
    assert len(ended) == len(AUDIENCE)
    assert "二级防控结束" in ended[0].payload["text"]
    assert "恢复日常防控" in ended[0].payload["text"]
    assert (await special_periods.announce_due(rt)).ended == []

    clock.current = at(2, 9, 1, month=10)  # after the end: nothing due, nothing "missed"
    progress = await reminders.run_due(rt)
    assert fired(progress) == ["日常提醒"]
    assert progress.missed == []
    assert len(await messages(rt, "special_periods.started")) == len(AUDIENCE)
    async with rt.db.read() as conn:
        holiday = (
            await conn.execute(
                select(func.count())
                .select_from(reminder_occurrences)
                .where(reminder_occurrences.c.rule_id == 1)
            )
        ).scalar_one()
    assert holiday == 2  # 30 Sep and 1 Oct, never the days around them


async def test_an_early_end_is_announced_once_and_stops_the_level_bound_reminders(
    rt: Runtime, clock: FakeClock
) -> None:
    boss = await school(rt)
    period = await special_periods.declare(rt, boss, 1, at(28, 0), at(5, 0, month=10), "重大活动")
    assert period.state == "active"
    assert len(await messages(rt, "special_periods.started")) == len(AUDIENCE)  # at once

    clock.current = at(28, 9, 1)  # level 1: both level-bound rules run
    assert fired(await reminders.run_due(rt)) == ["一级防控点名", "日常提醒", "节日巡查"]

    clock.current = at(28, 15)
    receipt = await special_periods.end_early(rt, boss, period.id)
    assert receipt.outcome is EndOutcome.ENDED
    ended = await messages(rt, "special_periods.ended")
    assert len(ended) == len(AUDIENCE)
    assert "提前结束" in ended[0].payload["text"]
    assert (await special_periods.announce_due(rt)).ended == []
    again = await special_periods.end_early(rt, boss, period.id)  # a second tap
    assert again.outcome is EndOutcome.ALREADY
    assert (await special_periods.end_early(rt, boss, 999)).outcome is EndOutcome.ALREADY
    assert len(await messages(rt, "special_periods.ended")) == len(AUDIENCE)

    clock.current = at(29, 9, 1)
    assert fired(await reminders.run_due(rt)) == ["日常提醒"]
    assert await special_periods.level_at(rt, clock.current) is None


async def test_a_period_declared_today_does_not_make_this_mornings_reminders_due(
    rt: Runtime, clock: FakeClock
) -> None:
    boss = await school(rt)
    clock.current = at(28, 10)  # after 09:00, declared from midnight
    await special_periods.declare(rt, boss, 2, at(28, 0), at(29, 0), "临时加强")
    progress = await reminders.run_due(rt)
    assert fired(progress) == ["日常提醒"]  # an hour late but within the grace period
    assert progress.missed == []
    assert await special_periods.level_at(rt, clock.current) == 2


async def test_a_cancelled_period_ahead_is_never_announced(rt: Runtime, clock: FakeClock) -> None:
    boss = await school(rt)
    period = await special_periods.declare(rt, boss, 2, at(30, 0), at(2, 0, month=10), "国庆")
    receipt = await special_periods.end_early(rt, boss, period.id)
    assert receipt.outcome is EndOutcome.CANCELLED
    clock.current = at(30, 9, 1)
    assert (await special_periods.announce_due(rt)).started == []
    assert fired(await reminders.run_due(rt)) == ["日常提醒"]
    overview = await special_periods.overview(rt, boss)
    assert (overview.level, overview.active, overview.upcoming) == (None, [], [])
    assert [p.state for p in overview.recent] == ["cancelled"]


async def test_overlapping_periods_announce_the_level_that_remains(
    rt: Runtime, clock: FakeClock
) -> None:
    boss = await school(rt)
    week = await special_periods.declare(rt, boss, 2, at(30, 0), at(8, 0, month=10), "国庆")
    day = await special_periods.declare(rt, boss, 1, at(1, 0, month=10), at(2, 0, month=10), "庆典")
    clock.current = at(1, 9, 1, month=10)
    assert (await special_periods.announce_due(rt)).started == [week.id, day.id]
    overview = await special_periods.overview(rt, boss)
    assert overview.level == 1
    assert overview.extra_rules == ["一级防控点名", "节日巡查"]
    clock.current = at(2, 0, 1, month=10)
    assert (await special_periods.announce_due(rt)).ended == [day.id]
    ended = (await messages(rt, "special_periods.ended"))[0].payload["text"]
    assert "一级防控结束" in ended
    assert "目前仍处于二级防控" in ended
    assert "一级防控点名" in ended  # the reminder that stops
    assert "节日巡查" not in ended  # still runs under level 2


# --- the plan file -------------------------------------------------------------------------


def test_a_plan_rejects_an_unknown_alert_level_and_keeps_a_good_one() -> None:
    text = PLAN.replace("alert_level: 1", "alert_level: 3")
    rules, errors = reminders.parse_plan(
        text, NOW, SchoolCalendar(SHANGHAI, DEFAULT_SEMESTER_STARTS)
    )
    assert [(e.line, e.problem, e.value) for e in errors] == [(13, reminders.Problem.LEVEL, "3")]
    assert [r.alert_level for r in rules] == [2, None]


async def test_the_alert_level_is_stored_exported_and_listed(rt: Runtime) -> None:
    boss = await school(rt)
    exported = await reminders.export_plan(rt)
    assert exported.count("alert_level: 2") == 1
    assert exported.count("alert_level: 1") == 1
    await special_periods.declare(rt, boss, 2, at(30, 0), at(2, 0, month=10), "国庆")
    views = {view.name: view for view in await reminders.list_rules(rt, boss)}
    assert views["节日巡查"].alert_level == 2
    assert views["节日巡查"].next == [at(30, 9), at(1, 9, month=10)]  # only inside the period
    assert views["一级防控点名"].next == []
    assert len(views["日常提醒"].next) == 5
