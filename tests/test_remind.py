"""Reminder rules made in /remind, at the service: the one typed line per kind, the preview
(whom it reaches, the next five due times) and create_rule's refusals with nothing stored."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from bot.errors import NotAllowed, UnknownUnit
from bot.periods import SchoolCalendar
from bot.runtime import Runtime
from bot.services import org, reminders
from bot.services.models import Actor
from bot.services.recurrence import Schedule, ScheduleProblem, WhenProblem, parse_when
from bot.services.reminders import Problem, RuleIn
from bot.store.tables import audit_log, reminder_rules
from tests.support import SUPERADMIN_ID, FakeClock, add_groups, enrol, profile

SHANGHAI = ZoneInfo("Asia/Shanghai")
CAL = SchoolCalendar(SHANGHAI)
NOW = datetime(2026, 9, 1, 7, 30, tzinfo=SHANGHAI).astimezone(UTC)  # a Tuesday


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


def local(moments: list[datetime]) -> list[str]:
    return [m.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M %a") for m in moments]


@pytest.mark.parametrize(
    ("kind", "typed", "expected"),
    [
        ("once", "2026-12-01 09:00", Schedule(kind="once", at="2026-12-01 09:00")),
        ("daily", "09:00", Schedule(kind="daily", at="09:00")),
        ("weekly", "mon,fri 09:00", Schedule(kind="weekly", at="09:00", days=[0, 4])),
        ("weekly", "周五、周一  09：00", Schedule(kind="weekly", at="09:00", days=[0, 4])),
        ("monthly", "last 09:00", Schedule(kind="monthly", at="09:00", day="last")),
        ("quarterly", "1 15 09:00", Schedule(kind="quarterly", at="09:00", day="15", month=1)),
        ("semester", "1 09:00", Schedule(kind="semester", at="09:00", day="1")),
        ("yearly", "3 15 09:00", Schedule(kind="yearly", at="09:00", day="15", month=3)),
        ("cron", " 0 8 * * 1-5 ", Schedule(kind="cron", cron="0 8 * * 1-5")),
    ],
)
def test_one_typed_line_per_kind(kind: str, typed: str, expected: Schedule) -> None:
    assert parse_when(kind, typed, NOW, CAL) == expected


@pytest.mark.parametrize(
    ("kind", "typed", "problem"),
    [
        ("once", "2026-02-30 09:00", WhenProblem.DATE),
        ("once", "2026-08-01 09:00", WhenProblem.NEVER),  # already past
        ("cron", "0 0 31 2 *", WhenProblem.NEVER),  # 31 February
        ("cron", "0 8 * *", WhenProblem.CRON),
        ("daily", "25:00", WhenProblem.TIME),
        ("weekly", "09:00", WhenProblem.SHAPE),  # the days are missing
        ("weekly", "someday 09:00", WhenProblem.DAYS),
        ("monthly", "31 09:00", WhenProblem.DAY),
        ("quarterly", "4 1 09:00", WhenProblem.MONTH),
        ("semester", "200 09:00", WhenProblem.SEMESTER_DAY),
        ("yearly", "", WhenProblem.SHAPE),
        ("hourly", "09:00", WhenProblem.KIND),
    ],
)
def test_a_bad_line_names_its_problem(kind: str, typed: str, problem: WhenProblem) -> None:
    with pytest.raises(ScheduleProblem) as caught:
        parse_when(kind, typed, NOW, CAL)
    assert caught.value.problem is problem


def test_the_name_is_the_first_line() -> None:
    assert reminders.rule_name("\n  消防检查  \n请于 {date} 前完成") == "消防检查"
    assert len(reminders.rule_name("长" * 100)) == reminders.MAX_NAME
    with pytest.raises(reminders.BadRule) as caught:
        reminders.check_rule_text("检查 {__class__}")
    assert caught.value.context["problem"] is Problem.VARIABLE
    with pytest.raises(reminders.BadRule):
        reminders.check_rule_text("   ")


async def school(rt: Runtime) -> tuple[Actor, Actor]:
    """The boss, an informant of 计科2201 and two class groups of 信息学院."""
    boss = await org.identify(rt, profile(SUPERADMIN_ID, "boss", "boss"), private=True)
    informant = await enrol(rt, boss, 201, "informant", "信息学院/计科2201")
    await add_groups(
        rt, boss, [("-801", "信息学院/计科2201", "class"), ("-802", "信息学院/计科2202", "class")]
    )
    return boss, informant


def weekly(**changes: Any) -> RuleIn:
    rule = RuleIn(
        line=0,
        name="消防检查",
        text="消防检查\n请于 {date} {time} 前完成",
        schedule=parse_when("weekly", "mon,fri 09:00", NOW, CAL),
        leads=[0],
        purpose="class",
        unit="信息学院",
        ack=True,
        follow_up=7200,
    )
    return rule.model_copy(update=changes)


async def count(rt: Runtime, table: Any, *where: Any) -> int:
    async with rt.db.read() as conn:
        query = select(func.count()).select_from(table).where(*where)
        return int((await conn.execute(query)).scalar_one())


async def test_preview_counts_whom_it_reaches_and_saves_nothing(rt: Runtime) -> None:
    boss, _ = await school(rt)
    shown = await reminders.preview(rt, boss, weekly())
    assert (shown.unit, shown.groups, shown.people) == ("信息学院", 2, 0)
    assert local(shown.next) == [
        "2026-09-04 09:00 Fri",
        "2026-09-07 09:00 Mon",
        "2026-09-11 09:00 Fri",
        "2026-09-14 09:00 Mon",
        "2026-09-18 09:00 Fri",
    ]
    informants = await reminders.preview(rt, boss, weekly(purpose=None, role="informant", unit=""))
    assert (informants.groups, informants.people, informants.unreachable) == (0, 1, 0)
    assert await count(rt, reminder_rules) == 0


async def test_create_rule_stores_it_for_its_creator_from_now(
    rt: Runtime, clock: FakeClock
) -> None:
    boss, _ = await school(rt)
    view = await reminders.create_rule(rt, boss, weekly())
    assert (view.name, view.unit, view.kind) == ("消防检查", "信息学院", "weekly")
    assert view.ask_ack
    assert local(view.next)[0] == "2026-09-04 09:00 Fri"
    async with rt.db.read() as conn:
        row = (await conn.execute(select(reminder_rules))).one()
    assert (row.created_by, row.planned_from, row.follow_up_s) == (boss.person.id, NOW, 7200)
    assert await count(rt, audit_log, audit_log.c.action == "reminder_created") == 1
    # The rule fires like an imported one.
    clock.current = datetime(2026, 9, 4, 9, 0, 30, tzinfo=SHANGHAI).astimezone(UTC)
    assert len((await reminders.run_due(rt)).sent) == 1


async def test_refusals_store_nothing(rt: Runtime) -> None:
    boss, informant = await school(rt)
    await reminders.create_rule(rt, boss, weekly())
    refusals: list[tuple[RuleIn, Actor, type[Exception]]] = [
        (weekly(name="别的"), informant, NotAllowed),
        (weekly(), boss, reminders.NameTaken),
        (weekly(name="指挥群", purpose="command"), boss, reminders.NobodyTargeted),
        (weekly(name="保卫处", unit="保卫处"), boss, UnknownUnit),
        (weekly(name="无变量", text="{oops}"), boss, reminders.BadRule),
        (weekly(name="无对象", purpose=None), boss, reminders.BadRule),
        (weekly(name="提前", leads=[-60]), boss, reminders.BadRule),
        (
            weekly(name="已过", schedule=Schedule(kind="once", at="2026-08-01 09:00")),
            boss,
            reminders.BadRule,
        ),
    ]
    for rule, actor, error in refusals:
        with pytest.raises(error):
            await reminders.create_rule(rt, actor, rule)
    assert await count(rt, reminder_rules) == 1
    with pytest.raises(reminders.NameTaken):
        await reminders.check_name(rt, boss, "消防检查")
    await reminders.check_name(rt, boss, "别的")
    with pytest.raises(NotAllowed):
        await reminders.authorize(rt, informant)
    await reminders.authorize(rt, boss)
