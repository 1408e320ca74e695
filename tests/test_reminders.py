"""Reminder rules (提醒): pure next-occurrence computation, plan validation, exactly-once firing
across restarts and overlapping passes, missed beyond the grace period, and acknowledgement."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from bot.outbox import Recipient
from bot.periods import SchoolCalendar
from bot.runtime import Runtime
from bot.services import org, reminders, special_periods
from bot.services.reminders import Problem
from bot.store.tables import outbox, reminder_acks, reminder_occurrences, reminder_rules
from tests.support import (
    SUPERADMIN_ID,
    FakeClock,
    add_groups,
    enrol,
    make_settings,
    open_runtime,
    profile,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
CAL = SchoolCalendar(SHANGHAI)
START = datetime(2026, 9, 1, 7, 30, tzinfo=SHANGHAI)  # a Tuesday
NOW = START.astimezone(UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


def local(moments: list[datetime]) -> list[str]:
    return [m.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") for m in moments]


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
    await add_groups(
        rt, boss, [("-801", "信息学院/计科2201", "class"), ("-802", "信息学院/计科2202", "class")]
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


async def test_a_weekly_reminder_fires_at_nine_local_on_both_sides_of_a_dst_change(
    tmp_path: Path, clock: FakeClock
) -> None:
    """New York falls back on 1 November 2026: Sunday 09:00 is 13:00 UTC, then 14:00 UTC."""
    clock.current = datetime(2026, 10, 20, tzinfo=UTC)
    rt = await open_runtime(make_settings(tmp_path, timezone="America/New_York"), clock)
    try:
        await school(rt)
        plan = WEEKLY.replace("days: [mon]", "days: [sun]").replace('"08:00"', '"09:00"')
        await reminders.import_plan(rt, None, plan.encode())
        fired = []
        for day, hour, minute in ((25, 12, 59), (25, 13, 0), (1, 13, 0), (1, 13, 59), (1, 14, 0)):
            month = 10 if day == 25 else 11
            clock.current = datetime(2026, month, day, hour, minute, tzinfo=UTC)
            if (await reminders.run_due(rt)).sent:
                fired.append(clock.current.strftime("%m-%d %H:%M"))
        assert fired == ["10-25 13:00", "11-01 14:00"]
    finally:
        await rt.db.close()


HOURLY = """
name: 整点提示
text: "整点安全提示"
schedule: cron
cron: "0 * * * *"
purpose: class
"""


async def test_a_long_outage_is_caught_up_pass_by_pass_and_the_current_one_is_sent(
    rt: Runtime, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two days down with an hourly rule: 47 occurrences beyond the grace period are recorded
    missed, 20 a pass at most, and the one due now is still sent."""
    monkeypatch.setattr(reminders, "MAX_PER_PASS", 20)
    await school(rt)
    await reminders.import_plan(rt, None, HOURLY.encode())
    clock.advance(days=2, minutes=1)  # from 07:30 to 07:31 two days later
    passes = [await reminders.run_due(rt) for _ in range(4)]
    assert [len(p.missed) for p in passes] == [20, 20, 7, 0]  # each goes on where the last stopped
    assert [len(p.sent) for p in passes] == [0, 0, 1, 0]
    assert passes[2].sent[0].startswith("整点提示@2026-09-02T23:00")  # 07:00 in Shanghai


DAILY = """
name: 周检
text: "{date} 周检"
schedule: daily
at: "09:00"
purpose: class
leads: [LEADS]
"""


async def test_a_reimport_that_changes_when_a_rule_runs_replays_nothing(
    rt: Runtime, clock: FakeClock
) -> None:
    """Un-pausing a rule or adding a lead by plan file plans it from now, as resume does; a
    file that does not mention ``paused`` keeps an admin's pause."""
    await school(rt)
    plan = DAILY.replace("LEADS", "0")
    await reminders.import_plan(rt, None, (plan + "paused: true\n").encode())
    clock.current = datetime(2026, 9, 20, 9, 30, tzinfo=SHANGHAI).astimezone(UTC)
    await reminders.import_plan(rt, None, (plan + "paused: false\n").encode())
    progress = await reminders.run_due(rt)
    assert (progress.sent, progress.missed) == ([], [])  # 19 paused days not replayed
    clock.current = datetime(2026, 10, 15, 10, 0, tzinfo=SHANGHAI).astimezone(UTC)
    assert len((await reminders.run_due(rt)).missed) == 24  # 21 Sep – 14 Oct: down, not paused
    await reminders.import_plan(rt, None, DAILY.replace("LEADS", "1h, 0").encode())
    assert (await reminders.run_due(rt)).missed == []  # a month of the new lead not invented
    async with rt.db.transaction() as conn:
        await conn.execute(update(reminder_rules).values(paused=True))
    await reminders.import_plan(rt, None, DAILY.replace("LEADS", "1h, 0").encode())
    async with rt.db.read() as conn:
        assert (await conn.execute(select(reminder_rules.c.paused))).scalar_one() is True


LEVEL_BOUND = """
name: 加密巡查
text: "{time} 巡查"
schedule: cron
cron: "*/10 * * * *"
purpose: class
alert_level: 2
"""


async def test_a_frequent_level_bound_rule_fires_as_soon_as_a_period_starts(
    rt: Runtime, clock: FakeClock
) -> None:
    """Weeks of silence outside any period (far more than a pass takes at once) do not keep a
    level-bound rule behind: declared now, it sends in the period's first ten minutes."""
    await school(rt)
    boss = await org.identify(rt, profile(SUPERADMIN_ID, "boss", "boss"), private=True)
    await reminders.import_plan(rt, None, LEVEL_BOUND.encode())
    clock.advance(days=20)
    assert (await reminders.run_due(rt)).sent == []
    start = clock.current
    await special_periods.declare(rt, boss, 2, start, start + timedelta(days=2), "国庆")
    clock.advance(minutes=30)
    progress = await reminders.run_due(rt)
    assert len(progress.sent) == 4  # the declaration minute and the three ten minutes after
    assert progress.missed == []


async def test_a_pass_that_read_a_rule_before_it_was_paused_sends_nothing(
    rt: Runtime, clock: FakeClock
) -> None:
    await school(rt)
    await reminders.import_plan(rt, None, PLAN.encode())
    async with rt.db.read() as conn:
        stale = (await conn.execute(select(reminder_rules))).one()
    boss = await org.identify(rt, profile(SUPERADMIN_ID, "boss", "boss"), private=True)
    clock.advance(minutes=1)
    await reminders.manage(rt, boss, "pause", stale.id)
    due = datetime(2026, 9, 1, 9, 0, tzinfo=SHANGHAI).astimezone(UTC)
    before = await count(rt, outbox)
    assert await reminders._fire(rt, stale, due, 0) is None
    assert (await count(rt, outbox), await count(rt, reminder_occurrences)) == (before, 0)


async def test_someone_in_two_groups_acknowledges_for_each(rt: Runtime, clock: FakeClock) -> None:
    await school(rt)
    await reminders.import_plan(rt, None, PLAN.encode())
    clock.current = datetime(2026, 9, 1, 8, 0, 30, tzinfo=SHANGHAI).astimezone(UTC)
    await reminders.run_due(rt)
    async with rt.db.read() as conn:
        occurrence = (await conn.execute(select(reminder_occurrences.c.id))).scalar_one()
    teacher = await org.identify(rt, profile(301, "班主任", "u301"), private=False)
    outcomes = [
        (
            await reminders.acknowledge(rt, teacher, occurrence, Recipient("telegram", g), False)
        ).outcome
        for g in ("-801", "-802", "-802")
    ]
    assert outcomes == ["recorded", "recorded", "already"]
    clock.advance(hours=3)
    before = await count(rt, outbox)
    assert (await reminders.run_due(rt)).followed_up == 1
    assert await count(rt, outbox) == before  # both groups answered: no follow-up to either
