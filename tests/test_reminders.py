"""Reminder rules (提醒): pure next-occurrence computation, plan validation, exactly-once firing
across restarts and overlapping passes, missed beyond the grace period, and acknowledgement."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from bot.outbox import Recipient
from bot.periods import SchoolCalendar
from bot.runtime import Runtime
from bot.services import org, reminders
from bot.services.reminders import Problem, Schedule, next_occurrences
from bot.store.tables import outbox, reminder_acks, reminder_occurrences
from tests.support import SUPERADMIN_ID, FakeClock, enrol, make_settings, open_runtime, profile

SHANGHAI = ZoneInfo("Asia/Shanghai")
CAL = SchoolCalendar(SHANGHAI)
START = datetime(2026, 9, 1, 7, 30, tzinfo=SHANGHAI)  # a Tuesday
NOW = START.astimezone(UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


def local(moments: list[datetime]) -> list[str]:
    return [m.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") for m in moments]


def test_weekly_monthly_and_cron_occurrences() -> None:
    weekly = Schedule(kind="weekly", at="09:00", days=[0, 4])
    assert local(next_occurrences(weekly, NOW, 3, CAL)) == [
        "2026-09-04 09:00",
        "2026-09-07 09:00",
        "2026-09-11 09:00",
    ]
    monthly = Schedule(kind="monthly", at="10:30", day="last")
    assert local(next_occurrences(monthly, NOW, 3, CAL)) == [
        "2026-09-30 10:30",
        "2026-10-31 10:30",
        "2026-11-30 10:30",
    ]
    cron = Schedule(kind="cron", cron="0 8 1 */3 *")
    assert local(next_occurrences(cron, NOW, 2, CAL)) == [
        "2026-10-01 08:00",
        "2027-01-01 08:00",
    ]
    once = Schedule(kind="once", at="2026-09-01 07:00")
    assert next_occurrences(once, NOW, 5, CAL) == []


PLAN = """
- name: 消防检查
  text: "请于 {date} {time} 前完成消防检查（{lead}）"
  schedule: daily
  at: "09:00"
  leads: [1h, 0]
  purpose: class
  unit: 信息学院
  ack: true
  follow_up: 2h
"""


def test_validation_lists_every_problem_with_its_line() -> None:
    text = """
- name: a
  text: "{__class__}"
  schedule: once
  at: "2026-02-30 09:00"
  purpose: class
- name: b
  text: x
  schedule: cron
  cron: "0 0 30 2 *"
  role: informant
- name: c
  text: x
  schedule: monthly
  at: "25:00"
  colour: red
"""
    _rules, errors = reminders.parse_plan(text, NOW, CAL)
    found = {(e.line, e.problem) for e in errors}
    assert (3, Problem.VARIABLE) in found
    assert (5, Problem.DATE) in found
    assert (10, Problem.CRON) in found or (9, Problem.NEVER) in found
    assert (16, Problem.UNKNOWN_KEY) in found
    assert (15, Problem.TIME) in found
    assert (12, Problem.NO_TARGET) in found


async def school(rt: Runtime) -> None:
    boss = await org.identify(rt, profile(SUPERADMIN_ID, "boss", "boss"), private=True)
    await enrol(rt, boss, 201, "informant", "信息学院/计科2201")
    async with rt.db.transaction() as conn:
        for address, path in (("-801", "信息学院/计科2201"), ("-802", "信息学院/计科2202")):
            await conn.execute(
                org.groups.insert().values(
                    channel="telegram",
                    address=address,
                    title=path,
                    purpose="class",
                    unit_id=(await org.ensure_unit(conn, boss, path, rt.now())).id,
                    joined_at=rt.now(),
                )
            )


async def count(rt: Runtime, table: object, *where: object) -> int:
    async with rt.db.read() as conn:
        return (
            await conn.execute(select(func.count()).select_from(table).where(*where))  # type: ignore[arg-type]
        ).scalar_one()


async def test_a_target_matching_nobody_is_refused(rt: Runtime) -> None:
    with pytest.raises(reminders.PlanRejected) as caught:
        await reminders.import_plan(rt, None, PLAN.encode())
    assert caught.value.context["errors"][0].problem in (Problem.UNKNOWN_UNIT, Problem.NOBODY)


async def test_fires_exactly_once_across_restart_and_overlap_and_misses_beyond_grace(
    tmp_path: Path, rt: Runtime, clock: FakeClock
) -> None:
    await school(rt)
    await reminders.import_plan(rt, None, PLAN.encode())
    queued = await count(rt, outbox)
    clock.current = datetime(2026, 9, 1, 8, 0, 30, tzinfo=SHANGHAI).astimezone(UTC)
    first, second = await asyncio.gather(reminders.run_due(rt), reminders.run_due(rt))
    assert len(first.sent) + len(second.sent) == 1
    assert await count(rt, outbox) == queued + 2  # two class groups
    again = await open_runtime(make_settings(tmp_path), clock)
    try:
        assert (await reminders.run_due(again)).sent == []
    finally:
        await again.db.close()
    clock.current = datetime(2026, 9, 1, 12, 0, tzinfo=SHANGHAI).astimezone(UTC)
    progress = await reminders.run_due(rt)
    assert len(progress.missed) == 1  # 09:00 at-due noticed 3 h late
    assert progress.sent == []


async def test_ack_once_per_person_and_follow_up_once(rt: Runtime, clock: FakeClock) -> None:
    await school(rt)
    await reminders.import_plan(rt, None, PLAN.encode())
    clock.current = datetime(2026, 9, 1, 8, 0, 30, tzinfo=SHANGHAI).astimezone(UTC)
    await reminders.run_due(rt)
    async with rt.db.read() as conn:
        occurrence = (await conn.execute(select(reminder_occurrences.c.id))).scalar_one()
    a = await org.identify(rt, profile(201, "a", "u201"), private=False)
    group = Recipient("telegram", "-801")
    first = await reminders.acknowledge(rt, a, occurrence, group, private=False)
    again = await reminders.acknowledge(rt, a, occurrence, group, private=False)
    assert (first.outcome, again.outcome) == ("recorded", "already")
    assert await count(rt, reminder_acks) == 1
    before = await count(rt, outbox)
    clock.advance(hours=3)
    assert (await reminders.run_due(rt)).followed_up == 1
    assert await count(rt, outbox) == before + 1  # only the silent group (the CLI made the rule)
    assert (await reminders.run_due(rt)).followed_up == 0


def test_crontab_weekday_numbers_count_from_sunday() -> None:
    zone = ZoneInfo("Asia/Shanghai")
    saturday = datetime(2026, 11, 28, 9, 0, tzinfo=zone)
    weekdays = reminders.cron_trigger("0 8 * * 1-5", zone).get_next_fire_time(None, saturday)
    sunday = reminders.cron_trigger("30 16 * * 0", zone).get_next_fire_time(None, saturday)
    assert weekdays is not None
    assert sunday is not None
    assert weekdays.strftime("%A %H:%M") == "Monday 08:00"
    assert sunday.strftime("%A %H:%M") == "Sunday 16:30"
    with pytest.raises(ValueError, match="5 fields"):
        reminders.cron_trigger("0 8 * *", zone)


def test_quarterly_yearly_and_semester_occurrences() -> None:
    quarterly = Schedule(kind="quarterly", at="09:00", day="10", month=2)
    assert local(next_occurrences(quarterly, NOW, 3, CAL)) == [
        "2026-11-10 09:00",
        "2027-02-10 09:00",
        "2027-05-10 09:00",
    ]
    yearly = Schedule(kind="yearly", at="08:00", day="last", month=12)
    assert local(next_occurrences(yearly, NOW, 2, CAL)) == ["2026-12-31 08:00", "2027-12-31 08:00"]
    semesters = SchoolCalendar(SHANGHAI, ((2, 24), (9, 1)))
    second_day = Schedule(kind="semester", at="10:00", day="2")
    assert local(next_occurrences(second_day, NOW, 3, semesters)) == [
        "2026-09-02 10:00",
        "2027-02-25 10:00",
        "2027-09-02 10:00",
    ]


def test_bad_schedules_are_named_by_their_part() -> None:
    cases = {
        ("once", "at", "2026-02-30 09:00"): Problem.DATE,
        ("once", "at", "2026-08-01 09:00"): Problem.NEVER,  # in the past
        ("cron", "cron", "0 0 31 2 *"): Problem.NEVER,  # 31 February
        ("cron", "cron", "0 8 * *"): Problem.CRON,
        ("quarterly", "month", "4"): Problem.MONTH,
        ("semester", "day", "200"): Problem.SEMESTER_DAY,
        ("hourly", "at", "09:00"): Problem.KIND,
    }
    for (kind, key, value), problem in cases.items():
        parts = {"at": "09:00", "day": "1", key: value}
        with pytest.raises(reminders.ScheduleProblem) as caught:
            reminders.make_schedule(kind, now=NOW, calendar=CAL, **parts)
        assert caught.value.problem is problem, (kind, value)


def test_a_weekly_time_stays_local_across_a_daylight_saving_change() -> None:
    new_york = SchoolCalendar(ZoneInfo("America/New_York"))
    sunday_nine = Schedule(kind="weekly", at="09:00", days=[6])
    after = datetime(2026, 10, 20, tzinfo=UTC)
    # Clocks go back on 1 November 2026: 09:00 is 13:00 UTC before and 14:00 UTC after.
    assert [
        d.strftime("%m-%d %H:%M") for d in next_occurrences(sunday_nine, after, 3, new_york)
    ] == [
        "10-25 13:00",
        "11-01 14:00",
        "11-08 14:00",
    ]


WEEKLY = """
name: 周一安全提示
text: "{weekday}安全提示"
schedule: weekly
days: [mon]
at: "08:00"
purpose: class
"""


async def test_weekly_reminder_across_a_month_end_with_a_restart_and_downtime(
    tmp_path: Path, rt: Runtime, clock: FakeClock
) -> None:
    """Mondays 08:00 in Shanghai: 28 September, 5 October (a new month, after a restart),
    12 October (the bot was down 30 minutes: sent late), 19 October (down 3 hours: missed)."""

    def at(day: int, month: int, hour: int, minute: int = 0) -> None:
        clock.current = datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)

    at(28, 9, 7, 0)
    await school(rt)
    await reminders.import_plan(rt, None, WEEKLY.encode())
    at(28, 9, 7, 59)
    assert (await reminders.run_due(rt)).sent == []
    at(28, 9, 8, 0)
    assert len((await reminders.run_due(rt)).sent) == 1
    at(4, 10, 23, 0)  # a restart on Sunday night
    again = await open_runtime(make_settings(tmp_path), clock)
    try:
        assert (await reminders.run_due(again)).sent == []
        at(5, 10, 8, 1)
        fired = (await reminders.run_due(again)).sent
        assert [key.split("@")[1][:16] for key in fired] == ["2026-10-05T00:00"]  # 08:00 local
        assert (await reminders.run_due(again)).sent == []
        at(12, 10, 8, 30)  # first pass after 30 minutes down
        assert len((await reminders.run_due(again)).sent) == 1
        at(19, 10, 11, 0)  # first pass after 3 hours down: beyond the grace period
        progress = await reminders.run_due(again)
        assert (len(progress.sent), len(progress.missed)) == (0, 1)
    finally:
        await again.db.close()
    async with rt.db.read() as conn:
        states = (
            (
                await conn.execute(
                    select(reminder_occurrences.c.state).order_by(reminder_occurrences.c.due_at)
                )
            )
            .scalars()
            .all()
        )
    assert states == ["sent", "sent", "sent", "missed"]
