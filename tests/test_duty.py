"""Duty roster services on a real SQLite file with a hand-moved clock: parsing a roster CSV with
row numbers, nothing half-imported, replacing the dates a file covers, who is on duty across a
night shift, handovers, shift reminders exactly once across a restart (a missed start recorded),
and the leader on duty as the escalation target."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from bot.errors import NotAllowed
from bot.runtime import Runtime
from bot.services import duty, org, reports
from bot.services.duty import DutyRole, Problem
from bot.services.models import Actor
from bot.services.reports import Draft, Severity
from bot.settings import SettingsError, load_settings, parse_duty_shifts
from bot.store.tables import duty_imports, duty_reminders, duty_shifts
from schedules import duty as duty_schedule
from schedules import escalation
from tests.support import (
    SUPERADMIN_ID,
    FakeClock,
    enrol,
    make_settings,
    messages,
    open_runtime,
    profile,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
SHIFTS = parse_duty_shifts("day=08:00-20:00,night=20:00-08:00")
BEFORE_DAY_SHIFT = datetime(2026, 9, 1, 7, 59, tzinfo=SHANGHAI)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A local (Shanghai) moment in September 2026."""
    return datetime(2026, 9, day, hour, minute, tzinfo=SHANGHAI)


def csv_of(*rows: str) -> bytes:
    return "\n".join(["date,shift,role,person", *rows]).encode()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(BEFORE_DAY_SHIFT.astimezone(UTC))


@dataclass
class Staff:
    boss: Actor
    leader: Actor  # @u12, holds the leader role
    officer: Actor  # @u11
    guard: Actor  # @u21
    admin: Actor  # @u13, admin of 信息学院 only
    deputy: Actor  # @u15, a second leader


@pytest.fixture
async def staff(rt: Runtime) -> Staff:
    boss = await org.identify(rt, profile(SUPERADMIN_ID, "处长", "boss"), private=True)
    return Staff(
        boss=boss,
        officer=await enrol(rt, boss, 11, "officer", "信息学院"),
        leader=await enrol(rt, boss, 12, "leader"),
        admin=await enrol(rt, boss, 13, "admin", "信息学院"),
        deputy=await enrol(rt, boss, 15, "leader"),
        guard=await enrol(rt, boss, 21, "guard"),
    )


async def count(rt: Runtime, table: Any, *conditions: Any) -> int:
    async with rt.db.read() as conn:
        query = select(func.count()).select_from(table).where(*conditions)
        return (await conn.execute(query)).scalar_one()


# --- parsing (pure) ------------------------------------------------------------------------


def test_a_good_roster_parses_in_any_column_order_with_a_bom_and_blank_lines() -> None:
    text = (
        "\ufeffPerson,Date,Role,Shift,note\n"
        "@u12,2026-09-01,leader,day,带班\n"
        "\n"
        "12,2026-09-01,guard,NIGHT,\n"
    )
    rows, errors = duty.parse_roster(duty.decode_roster(text.encode()), SHIFTS)
    assert errors == []
    assert [(r.line, r.day, r.shift, r.role, r.person) for r in rows] == [
        (2, date(2026, 9, 1), "day", DutyRole.LEADER, "@u12"),
        (4, date(2026, 9, 1), "night", DutyRole.GUARD, "12"),
    ]


def test_every_bad_row_is_named_with_its_line_number() -> None:
    text = csv_of(
        "2026-09-01,day,leader,@u12",
        "2026-9-1,day,guard,@u21",
        "2026-09-01,evening,guard,@u21",
        "2026-09-01,day,boss,@u21",
        "2026-09-01,day,guard,u21 小王",
        "2026-09-01,,guard,@u21",
        "2026-02-30,day,guard,@u21",
        "2026-09-01,day,officer,@U12",
    ).decode()
    rows, errors = duty.parse_roster(text, SHIFTS)
    assert [r.line for r in rows] == [2]
    assert [(e.line, e.problem, e.value) for e in errors] == [
        (3, Problem.DATE, "2026-9-1"),
        (4, Problem.SHIFT, "evening"),
        (5, Problem.ROLE, "boss"),
        (6, Problem.PERSON, "u21 小王"),
        (7, Problem.MISSING, "shift"),
        (8, Problem.DATE, "2026-02-30"),
        (9, Problem.DUPLICATE, "@U12"),
    ]
    assert errors[-1].other_line == 2


def test_a_file_without_the_columns_or_rows_is_refused() -> None:
    _, errors = duty.parse_roster("date,shift,person\n2026-09-01,day,@u1\n", SHIFTS)
    assert [(e.line, e.problem, e.value) for e in errors] == [(1, Problem.HEADER, "role")]
    assert [e.problem for e in duty.parse_roster("", SHIFTS)[1]] == [Problem.EMPTY]
    assert [e.problem for e in duty.parse_roster(csv_of().decode(), SHIFTS)[1]] == [Problem.EMPTY]
    with pytest.raises(duty.RosterNotText):
        duty.decode_roster("日期".encode("gbk"))


def test_a_night_shift_ends_the_next_morning() -> None:
    starts, ends = duty.shift_window(date(2026, 9, 1), SHIFTS["night"], SHANGHAI)
    assert (starts, ends) == (at(1, 20).astimezone(UTC), at(2, 8).astimezone(UTC))


def test_shift_settings_are_checked_with_the_setting_named(tmp_path: Path) -> None:
    for bad in (
        "day=08:00-20:00,day=20:00-08:00",
        "day=8-20",
        "Day Shift=08:00-20:00",
        "x=08:00-08:00",
    ):
        with pytest.raises(SettingsError, match=r"^SAFECAMPUS_DUTY_SHIFTS: "):
            load_settings(_env_file=None, duty_shifts=bad)
    assert make_settings(tmp_path, duty_shifts="a=07:30-19:30").duty_shifts == {
        "a": parse_duty_shifts("a=07:30-19:30")["a"]
    }


# --- importing -----------------------------------------------------------------------------


async def test_one_bad_row_refuses_the_whole_file_and_nothing_is_stored(
    rt: Runtime, staff: Staff
) -> None:
    data = csv_of("2026-09-01,day,leader,@u12", "2026-09-01,day,guard,@nobody")
    with pytest.raises(duty.RosterRejected) as refused:
        await duty.import_roster(rt, staff.boss, data, "roster.csv", source="telegram")
    errors = refused.value.context["errors"]
    assert [(e.line, e.problem, e.value) for e in errors] == [
        (3, Problem.UNKNOWN_PERSON, "@nobody")
    ]
    assert await count(rt, duty_shifts) == 0
    assert await count(rt, duty_imports) == 0
    shown = rt.renderer.render("zh_CN", refused.value.template, **refused.value.context)
    assert "第 3 行" in shown
    assert "@nobody" in shown


async def test_one_person_under_two_references_on_one_shift_is_a_duplicate(
    rt: Runtime, staff: Staff
) -> None:
    data = csv_of(
        "2026-09-01,day,leader,@u12", "2026-09-01,night,guard,12", "2026-09-01,day,guard,12"
    )
    with pytest.raises(duty.RosterRejected) as refused:
        await duty.import_roster(rt, staff.boss, data, "roster.csv", source="telegram")
    errors = refused.value.context["errors"]
    assert [(e.line, e.problem, e.other_line) for e in errors] == [(4, Problem.DUPLICATE, 2)]
    assert await count(rt, duty_shifts) == 0


async def test_only_a_school_wide_admin_imports(rt: Runtime, staff: Staff) -> None:
    data = csv_of("2026-09-01,day,leader,@u12")
    for someone in (staff.admin, staff.officer):
        with pytest.raises(NotAllowed):
            await duty.import_roster(rt, someone, data, "roster.csv", source="telegram")
    assert await count(rt, duty_shifts) == 0


async def test_a_file_replaces_the_roster_of_the_dates_it_covers_only(
    rt: Runtime, staff: Staff
) -> None:
    first = csv_of(
        "2026-09-01,day,leader,@u12",
        "2026-09-01,day,guard,@u21",
        "2026-09-02,day,leader,@u12",
        "2026-09-02,night,guard,@u21",
    )
    summary = await duty.import_roster(rt, staff.boss, first, "sept.csv", source="telegram")
    assert (summary.rows, summary.days, summary.replaced, summary.people) == (4, 2, 0, 2)
    again = csv_of("2026-09-02,day,leader,@u15")
    summary = await duty.import_roster(rt, None, again, "fix.csv", source="cli")
    assert (summary.rows, summary.first_date, summary.replaced) == (1, date(2026, 9, 2), 2)
    async with rt.db.read() as conn:
        day_one = await duty.on_duty(conn, at(1, 9))
        day_two = await duty.on_duty(conn, at(2, 9))
        night_two = await duty.on_duty(conn, at(2, 21))
    assert {e.person.telegram_id for e in day_one} == {12, 21}
    assert [e.person.telegram_id for e in day_two] == [15]
    assert night_two == []  # the new file covers 09-02 and has no night shift for it
    assert await count(rt, duty_shifts, duty_shifts.c.replaced_at.is_not(None)) == 2


async def test_who_is_on_duty_across_a_night_shift_crossing_midnight(
    rt: Runtime, staff: Staff, clock: FakeClock
) -> None:
    data = csv_of(
        "2026-09-01,day,leader,@u12",
        "2026-09-01,night,leader,@u15",
        "2026-09-01,night,guard,@u21",
        "2026-09-02,day,leader,@u12",
    )
    await duty.import_roster(rt, staff.boss, data, "roster.csv", source="telegram")
    async with rt.db.read() as conn:
        assert {e.person.telegram_id for e in await duty.on_duty(conn, at(2, 2))} == {15, 21}
        assert [p.telegram_id for p in await duty.leaders_on_duty(conn, rt, at(2, 2))] == [15]
        assert [p.telegram_id for p in await duty.leaders_on_duty(conn, rt, at(2, 8))] == [12]
        assert await duty.leaders_on_duty(conn, rt, at(3, 9)) == []
    clock.current = at(2, 2).astimezone(UTC)  # 02:00 on 09-02: "today" is 09-02
    board = await duty.duty_board(rt, staff.guard)
    assert [(v.day, v.shift) for v in board.current] == [(date(2026, 9, 1), "night")]
    assert [(v.day, v.shift) for v in board.shifts_today] == [(date(2026, 9, 2), "day")]
    shown = rt.renderer.render("zh_CN", "duty/board.j2", board=board)
    assert "夜班 20:00–次日08:00" in shown
    assert "带班领导：user15" in shown


async def test_only_people_on_duty_write_a_handover_and_the_next_shift_sees_it(
    rt: Runtime, staff: Staff, clock: FakeClock
) -> None:
    data = csv_of("2026-09-01,day,guard,@u21", "2026-09-01,night,officer,@u11")
    await duty.import_roster(rt, staff.boss, data, "roster.csv", source="telegram")
    clock.current = at(1, 19, 30).astimezone(UTC)
    with pytest.raises(duty.NotOnDuty):
        await duty.record_handover(rt, staff.officer, "还没上班")
    note = await duty.record_handover(rt, staff.guard, "东门道闸故障，\n夜班人工放行")
    assert (note.day, note.shift) == (date(2026, 9, 1), "day")
    clock.current = at(1, 20).astimezone(UTC)
    # The day shift started long before anyone ran the job: recorded as missed, not sent.
    assert await duty_schedule.run(rt) == duty.ReminderProgress(
        sent=["2026-09-01/night"], missed=["2026-09-01/day"]
    )
    reminders = await messages(rt, "duty.reminder")
    assert [m.address for m in reminders] == ["11"]
    assert "东门道闸故障" in reminders[0].payload["text"]
    board = await duty.duty_board(rt, staff.officer)
    assert board.handover is not None
    assert board.handover.person.telegram_id == 21


# --- reminders -----------------------------------------------------------------------------


async def test_shift_reminders_go_out_once_across_a_restart_and_a_missed_start_is_recorded(
    tmp_path: Path, rt: Runtime, staff: Staff, clock: FakeClock
) -> None:
    data = csv_of(
        "2026-09-01,day,leader,@u12",
        "2026-09-01,day,guard,@u21",
        "2026-09-01,night,officer,@u11",
        "2026-09-02,day,guard,@u21",
    )
    await duty.import_roster(rt, staff.boss, data, "roster.csv", source="telegram")
    assert await duty_schedule.run(rt) == duty.ReminderProgress(sent=[], missed=[])
    clock.current = at(1, 8).astimezone(UTC)
    assert await duty_schedule.run(rt) == duty.ReminderProgress(sent=["2026-09-01/day"], missed=[])
    assert await duty_schedule.run(rt) == duty.ReminderProgress(sent=[], missed=[])
    sent = await messages(rt, "duty.reminder")
    assert sorted(m.address for m in sent) == ["12", "21"]
    assert "白班（08:00–20:00）开始了" in sent[0].payload["text"]

    # A restart: a new runtime on the same database knows the start was handled.
    restarted = await open_runtime(make_settings(tmp_path), clock)
    try:
        clock.advance(minutes=30)
        assert await duty_schedule.run(restarted) == duty.ReminderProgress(sent=[], missed=[])
        # Down from 19:00 to 21:30: the night start is 90 minutes old, too late to remind.
        clock.current = at(1, 21, 30).astimezone(UTC)
        assert await duty_schedule.run(restarted) == duty.ReminderProgress(
            sent=[], missed=["2026-09-01/night"]
        )
        # Down again past the next start, but back within the hour: still reminded.
        clock.current = at(2, 8, 59).astimezone(UTC)
        assert await duty_schedule.run(restarted) == duty.ReminderProgress(
            sent=["2026-09-02/day"], missed=[]
        )
    finally:
        await restarted.db.close()
    assert len(await messages(rt, "duty.reminder")) == 3
    async with rt.db.read() as conn:
        statuses = (
            await conn.execute(
                select(duty_reminders.c.shift, duty_reminders.c.status).order_by(
                    duty_reminders.c.starts_at
                )
            )
        ).all()
    assert [tuple(s) for s in statuses] == [("day", "sent"), ("night", "missed"), ("day", "sent")]


# --- escalation ----------------------------------------------------------------------------


async def test_escalation_goes_to_the_leader_on_duty_and_the_admins(
    rt: Runtime, staff: Staff, clock: FakeClock
) -> None:
    informant = await enrol(rt, staff.boss, 10, "informant", "信息学院/计科2201")
    clock.current = at(1, 9).astimezone(UTC)
    data = csv_of("2026-09-01,day,leader,@u15", "2026-09-01,day,officer,@u11")
    await duty.import_roster(rt, staff.boss, data, "roster.csv", source="telegram")
    urgent = await reports.file_report(
        rt, informant, Draft(severity=Severity.URGENT, description="有人打架")
    )
    clock.advance(minutes=5)
    assert [r.id for r in await escalation.run(rt)] == [urgent.id]
    escalated = await messages(rt, "reports.escalated")
    # The roster's leader (15) and the admins (13, superadmin), not the other leader (12).
    assert {m.address for m in escalated} == {"15", "13", str(SUPERADMIN_ID)}
    # After the roster's day shift, nobody is rostered: every leader stands in again.
    clock.current = at(1, 20, 30).astimezone(UTC)
    assert [r.id for r in await escalation.run(rt)] == [urgent.id]
    later = (await messages(rt, "reports.escalated"))[len(escalated) :]
    assert {m.address for m in later} == {"12", "15", "13", str(SUPERADMIN_ID)}


async def test_being_on_the_roster_gives_no_rights_of_its_own(
    rt: Runtime, staff: Staff, clock: FakeClock
) -> None:
    informant = await enrol(rt, staff.boss, 10, "informant", "信息学院/计科2201")
    clock.current = at(1, 9).astimezone(UTC)
    # The guard is listed as leader by mistake: they hold no leader role, so escalations
    # (which may carry a welfare report's words) do not go to them.
    data = csv_of("2026-09-01,day,leader,@u21")
    await duty.import_roster(rt, staff.boss, data, "roster.csv", source="telegram")
    urgent = await reports.file_report(
        rt, informant, Draft(severity=Severity.URGENT, description="同学情绪失控")
    )
    clock.advance(minutes=5)
    assert [r.id for r in await escalation.run(rt)] == [urgent.id]
    escalated = await messages(rt, "reports.escalated")
    assert "21" not in {m.address for m in escalated}
    assert {m.address for m in escalated} == {"12", "15", "13", str(SUPERADMIN_ID)}
