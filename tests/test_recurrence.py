"""Schedules (recurrence): due times of every kind in the school's calendar, across a
daylight-saving change, crontab weekdays counted from Sunday, and bad schedules named by the
part at fault."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bot.periods import SchoolCalendar
from bot.services.recurrence import (
    Schedule,
    ScheduleProblem,
    WhenProblem,
    cron_trigger,
    make_schedule,
    next_occurrences,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
CAL = SchoolCalendar(SHANGHAI)
NOW = datetime(2026, 9, 1, 7, 30, tzinfo=SHANGHAI).astimezone(UTC)  # a Tuesday


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


def test_crontab_weekday_numbers_count_from_sunday() -> None:
    zone = ZoneInfo("Asia/Shanghai")
    saturday = datetime(2026, 11, 28, 9, 0, tzinfo=zone)
    weekdays = cron_trigger("0 8 * * 1-5", zone).get_next_fire_time(None, saturday)
    sunday = cron_trigger("30 16 * * 0", zone).get_next_fire_time(None, saturday)
    assert weekdays is not None
    assert sunday is not None
    assert weekdays.strftime("%A %H:%M") == "Monday 08:00"
    assert sunday.strftime("%A %H:%M") == "Sunday 16:30"
    with pytest.raises(ValueError, match="5 fields"):
        cron_trigger("0 8 * *", zone)


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
        ("once", "at", "2026-02-30 09:00"): WhenProblem.DATE,
        ("once", "at", "2026-08-01 09:00"): WhenProblem.NEVER,  # in the past
        ("cron", "cron", "0 0 31 2 *"): WhenProblem.NEVER,  # 31 February
        ("cron", "cron", "0 8 * *"): WhenProblem.CRON,
        ("quarterly", "month", "4"): WhenProblem.MONTH,
        ("semester", "day", "200"): WhenProblem.SEMESTER_DAY,
        ("hourly", "at", "09:00"): WhenProblem.KIND,
    }
    for (kind, key, value), problem in cases.items():
        parts = {"at": "09:00", "day": "1", key: value}
        with pytest.raises(ScheduleProblem) as caught:
            make_schedule(kind, now=NOW, calendar=CAL, **parts)
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


def test_a_time_that_comes_twice_when_clocks_go_back_is_due_once() -> None:
    new_york = SchoolCalendar(ZoneInfo("America/New_York"))
    daily = Schedule(kind="daily", at="01:30")
    after = datetime(2026, 10, 31, 12, tzinfo=UTC)
    assert [d.strftime("%m-%d %H:%M") for d in next_occurrences(daily, after, 3, new_york)] == [
        "11-01 05:30",  # 01:30 EDT; 01:30 EST an hour later is the same wall-clock time
        "11-02 06:30",
        "11-03 06:30",
    ]


@pytest.mark.parametrize(
    ("weekdays", "expected"),
    [
        ("1-5", "mon,tue,wed,thu,fri"),
        ("1-5/2", "mon,wed,fri"),
        ("*/2", "sun,tue,thu,sat"),
        ("5-7", "sun,fri,sat"),
        ("0,7", "sun"),
        ("mon-fri", "mon,tue,wed,thu,fri"),
        ("*", "*"),
    ],
)
def test_crontab_weekdays_read_as_crontab_reads_them(weekdays: str, expected: str) -> None:
    trigger = cron_trigger(f"0 9 * * {weekdays}", SHANGHAI)
    field = next(f for f in trigger.fields if f.name == "day_of_week")
    assert str(field) == expected


@pytest.mark.parametrize("line", ["0 9 * * 1#2", "0 9 * * 9", "0 9 * * 5/0", "0 9 1 * 1"])
def test_crontab_lines_we_would_misread_are_refused(line: str) -> None:
    with pytest.raises(ValueError, match=r"day|step"):
        cron_trigger(line, SHANGHAI)
