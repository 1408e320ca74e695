"""The compliance calendar (考评): school periods, the "平安校园" preset loaded idempotently, and
each obligation's status computed from the records (a drill recorded done, a fire inspection),
done / due / overdue across periods."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from bot.errors import NotAllowed
from bot.periods import Period, SchoolCalendar, parse_semester_starts
from bot.runtime import Runtime
from bot.services import compliance, drills, inspections, org
from bot.services.compliance import Status
from bot.services.inspections import Result
from bot.services.models import Actor
from bot.store.tables import obligations, reminder_rules
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
CAL = SchoolCalendar(SHANGHAI, ((2, 24), (9, 1)))


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=SHANGHAI).astimezone(UTC)  # type: ignore[misc]


def shown(bounds: tuple[datetime, datetime]) -> tuple[str, str]:
    start, end = bounds
    return start.astimezone(SHANGHAI).isoformat()[:10], end.astimezone(SHANGHAI).isoformat()[:10]


def test_periods_of_the_school_year() -> None:
    moment = at(2026, 11, 25, 23, 30)  # a Wednesday
    assert shown(CAL.bounds(Period.DAY, moment)) == ("2026-11-25", "2026-11-26")
    assert shown(CAL.bounds(Period.WEEK, moment)) == ("2026-11-23", "2026-11-30")
    assert shown(CAL.bounds(Period.QUARTER, moment)) == ("2026-10-01", "2027-01-01")
    assert shown(CAL.bounds(Period.HALF_YEAR, moment)) == ("2026-07-01", "2027-01-01")
    assert shown(CAL.bounds(Period.SEMESTER, moment)) == ("2026-09-01", "2027-02-24")
    assert shown(CAL.bounds(Period.SEMESTER, at(2026, 8, 31, 12))) == ("2026-02-24", "2026-09-01")
    assert shown(CAL.previous(Period.QUARTER, moment)) == ("2026-07-01", "2026-10-01")
    assert shown(CAL.previous(Period.MONTH, at(2026, 1, 15))) == ("2025-12-01", "2026-01-01")
    assert parse_semester_starts("09-01, 02-24") == ((2, 24), (9, 1))
    for bad in ("13-01", "02-29", "09-01,09-01", "spring"):
        with pytest.raises(ValueError, match=r"09-01|02-29|different"):
            parse_semester_starts(bad)


async def school(rt: Runtime) -> Actor:
    boss = await org.identify(rt, profile(SUPERADMIN_ID, "王处长", "boss"), private=True)
    await add_groups(rt, boss, [("-801", "信息学院/计科2201", "class"), ("-805", "", "command")])
    return boss


async def count(rt: Runtime, table: object) -> int:
    async with rt.db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar_one()  # type: ignore[arg-type]


async def test_the_preset_loads_idempotently(rt: Runtime) -> None:
    boss = await school(rt)
    first = await compliance.load_preset(rt, boss, "pingan-campus")
    assert len(first.obligations_added) == len(compliance.PINGAN_CAMPUS) == 9
    assert len(first.rules.created) == 9
    # No staff group is bound and nobody is a guard or a unit head yet: stored, and said.
    assert len(first.unreached) == 4
    second = await compliance.load_preset(rt, boss, "pingan-campus")
    assert (second.obligations_added, second.rules.created) == ([], [])
    assert (await count(rt, obligations), await count(rt, reminder_rules)) == (9, 9)
    with pytest.raises(compliance.UnknownPreset):
        await compliance.load_preset(rt, boss, "nope")


def status_of(calendar: compliance.Calendar, key: str) -> compliance.ObligationStatus:
    return next(item for item in calendar.items if item.key == key)


async def test_a_recorded_drill_is_the_quarters_evidence_and_a_missed_quarter_is_overdue(
    rt: Runtime, clock: FakeClock
) -> None:
    clock.current = at(2026, 10, 10, 9)
    boss = await school(rt)
    await compliance.load_preset(rt, boss, "pingan-campus")
    before = status_of(await compliance.calendar_view(rt, boss), "anti_terror_drill")
    assert (before.current.status, before.previous) == (Status.DUE, None)  # not tracked then

    draft = drills.ActivityDraft(
        topic=drills.Topic.ANTI_TERROR, when=at(2026, 10, 20, 15), place="体育馆"
    )
    drill = await drills.plan(rt, boss, draft)
    clock.current = at(2026, 10, 20, 17)
    await drills.record_done(rt, boss, drill.id, 320, "全校反恐防暴演练，用时 12 分钟")

    calendar = await compliance.calendar_view(rt, boss)
    done = status_of(calendar, "anti_terror_drill")
    assert (done.current.status, done.flag) == (Status.DONE, Status.DONE)
    assert [proof.ref for proof in done.current.proofs] == [drill.ref]
    # An anti-terror drill is not one of the semester's emergency drills.
    assert status_of(calendar, "emergency_drill").current.proofs == []
    college = drills.ActivityDraft(
        topic=drills.Topic.EMERGENCY, when=at(2026, 10, 21, 15), place="教学楼", unit="信息学院"
    )
    emergency = await drills.plan(rt, boss, college)
    clock.current = at(2026, 10, 21, 16)
    await drills.record_done(rt, boss, emergency.id, 80, "信息学院应急疏散")
    calendar = await compliance.calendar_view(rt, boss)
    (proof,) = status_of(calendar, "emergency_drill").current.proofs
    assert (proof.ref, proof.unit) == (emergency.ref, "信息学院")  # not the whole school's
    assert status_of(calendar, "anti_terror_drill").current.proofs[0].unit == ""

    clock.current = at(2027, 1, 5, 9)  # next quarter: due again, last quarter done
    next_quarter = status_of(await compliance.calendar_view(rt, boss), "anti_terror_drill")
    assert (next_quarter.current.status, next_quarter.previous.status) == (  # type: ignore[union-attr]
        Status.DUE,
        Status.DONE,
    )
    clock.current = at(2027, 4, 5, 9)  # Q1 2027 passed without one
    late = status_of(await compliance.calendar_view(rt, boss), "anti_terror_drill")
    assert late.previous is not None
    assert late.previous.status is Status.OVERDUE
    assert late.flag is Status.OVERDUE


CHECKLISTS = """
- name: 宿舍消防检查
  items: [疏散通道畅通, 灭火器在有效期]
- name: 季度消防隐患排查
  items: [消防设施完好]
"""


async def inspect(rt: Runtime, guard: Actor, name: str) -> None:
    checklist, _ = await inspections.choose_checklist(rt, guard, [name])
    inspection = await inspections.start(rt, guard, checklist, "3号楼")
    for item in inspection.items:
        await inspections.answer(rt, guard, inspection.id, item.id, Result.PASS)
    await inspections.finish(rt, guard, inspection.id)


async def test_inspections_count_by_what_their_checklist_is(rt: Runtime, clock: FakeClock) -> None:
    clock.current = at(2026, 11, 23, 9)  # a Monday
    boss = await school(rt)
    await compliance.load_preset(rt, boss, "pingan-campus")
    await inspections.import_checklists(rt, boss, CHECKLISTS.encode(), "lists.yaml")
    guard = await enrol(rt, boss, 301, "guard")
    await inspect(rt, guard, "宿舍消防检查")
    calendar = await compliance.calendar_view(rt, boss)
    assert status_of(calendar, "fire_inspection").current.status is Status.DONE
    assert status_of(calendar, "fire_survey").current.status is Status.DUE  # not a survey
    await inspect(rt, guard, "季度消防隐患排查")
    calendar = await compliance.calendar_view(rt, boss)
    (proof,) = status_of(calendar, "fire_survey").current.proofs
    assert proof.ref.endswith("季度消防隐患排查")
    assert status_of(calendar, "department_survey").current.status is Status.DONE
    clock.current = at(2026, 11, 30, 9)  # the next week: this week's inspection is due again
    calendar = await compliance.calendar_view(rt, boss)
    assert status_of(calendar, "fire_inspection").current.status is Status.DUE
    assert status_of(calendar, "fire_inspection").previous.status is Status.DONE  # type: ignore[union-attr]


async def test_only_admins_officers_and_leaders_see_it_and_only_admins_may_load(
    rt: Runtime,
) -> None:
    boss = await school(rt)
    informant = await enrol(rt, boss, 201, "informant", "信息学院/计科2201")
    officer = await enrol(rt, boss, 202, "officer")
    with pytest.raises(NotAllowed):
        await compliance.calendar_view(rt, informant)
    assert not (await compliance.calendar_view(rt, officer)).may_load_preset
    assert (await compliance.calendar_view(rt, boss)).may_load_preset
    with pytest.raises(NotAllowed):
        await compliance.load_preset(rt, officer, "pingan-campus")
    assert await count(rt, obligations) == 0


async def test_the_preset_loaded_in_another_language_is_renamed_not_doubled(
    tmp_path: Path, clock: FakeClock
) -> None:
    english = await open_runtime(make_settings(tmp_path, locale="en"), clock)
    try:
        boss = await school(english)
        await compliance.load_preset(english, boss, "pingan-campus")
    finally:
        await english.db.close()
    chinese = await open_runtime(make_settings(tmp_path), clock)
    try:
        await compliance.load_preset(chinese, boss, "pingan-campus")
        assert await count(chinese, reminder_rules) == 9
        async with chinese.db.read() as conn:
            names = (await conn.execute(select(reminder_rules.c.name))).scalars().all()
        assert all(name.startswith("平安校园") for name in names)
    finally:
        await chinese.db.close()
