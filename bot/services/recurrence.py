"""When a reminder is due: schedules and their arithmetic, pure and without a database.

A schedule is one of KINDS — once, daily, weekly on given days, monthly on a day, quarterly,
on the N-th day of each semester, yearly, or a crontab line — at a local time in the school's
calendar (its time zone and semester starts). ``make_schedule`` checks one from its parts as
typed (in a plan file or in /remind) and refuses one that would never fire; ``next_occurrences``
gives its due times. APScheduler's CronTrigger does the calendar work, daylight saving included.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from itertools import islice
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel

from bot.periods import SchoolCalendar

HORIZON = timedelta(days=366)  # a schedule must fire within this
KINDS = ("once", "daily", "weekly", "monthly", "quarterly", "semester", "yearly", "cron")
MAX_SEMESTER_DAY = 120
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_WHEN = re.compile(r"^(\d{4}-\d{2}-\d{2})[ T]([01]?\d|2[0-3]):([0-5]\d)$")


class WhenProblem(StrEnum):
    """What can be wrong with a schedule (the same words as a plan file's problems)."""

    KIND = "kind"
    MISSING = "missing"  # a part the kind needs; ``value`` names it
    SHAPE = "shape"  # /remind: the wrong number of parts on the line
    TIME = "time"  # not HH:MM
    DATE = "date"  # an impossible date or time ("2026-02-30 09:00")
    DAYS = "days"
    DAY = "day"
    MONTH = "month"  # not 1–12 (yearly) or 1–3 (quarterly: the month of the quarter)
    SEMESTER_DAY = "semester_day"  # not 1–MAX_SEMESTER_DAY
    CRON = "cron"  # not a cron expression
    NEVER = "never"  # fires never within a year (or a one-off in the past)


class Schedule(BaseModel):
    """When a rule is due, in the school's calendar. ``at`` is "HH:MM" (or, for a one-off,
    "YYYY-MM-DD HH:MM"); ``days`` are 0 = Monday; ``day`` is 1–28 or "last" (for a semester
    rule, the N-th day of the semester); ``month`` is the month of the year (yearly) or of the
    quarter, 1–3 (quarterly)."""

    kind: str
    at: str = ""
    days: list[int] = []
    day: str = ""
    month: int = 0
    cron: str = ""


class ScheduleProblem(ValueError):
    """One part of a schedule is wrong: ``key`` names it (as in a plan file), ``problem`` says
    how (it has words in the templates)."""

    def __init__(self, problem: WhenProblem, key: str, value: str = "") -> None:
        super().__init__(f"{key}: {problem.value} {value}")
        self.problem = problem
        self.key = key
        self.value = value


_CRONTAB_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


_WEEKDAY_ITEM = re.compile(r"^(\*|\w+)(?:-(\w+))?(?:/(\d+))?$")


def _crontab_day(word: str) -> int:
    """A crontab day of the week, 0 (or 7) = Sunday … 6 = Saturday, from a number or name."""
    if word.isdigit() and int(word) <= 7:
        return int(word) % 7
    if word[:3].lower() in _CRONTAB_DAYS:
        return _CRONTAB_DAYS.index(word[:3].lower())
    raise ValueError(f"no day of the week {word!r} (0 or 7 is Sunday)")


def _crontab_weekdays(field: str) -> str:
    """The days of the week of a crontab field as names ("mon,wed,fri"). Crontab counts from
    0 = Sunday and APScheduler from 0 = Monday, and they step differently, so the field is
    expanded here, as any crontab reader expects it: "1-5" is Monday to Friday, "*/2" Sunday,
    Tuesday, Thursday and Saturday."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for item in field.split(","):
        shown = _WEEKDAY_ITEM.match(item)
        if shown is None:
            raise ValueError(f"not a day of the week: {item}")
        first, last, step = shown.groups()
        if first == "*":
            start, end = 0, 6
        else:
            start = _crontab_day(first)
            end = _crontab_day(last) if last else (6 if step else start)
            if last and end == 0:
                end = 7 if last.isdigit() and int(last) == 7 else end  # "5-7": to Sunday
        if step is not None and int(step) == 0:
            raise ValueError(f"a step of 0: {item}")
        if end < start:
            raise ValueError(f"a range backwards: {item}")
        days.update(day % 7 for day in range(start, end + 1, int(step or 1)))
    return ",".join(_CRONTAB_DAYS[day] for day in sorted(days))


def cron_trigger(expression: str, zone: ZoneInfo) -> CronTrigger:
    """A trigger for a standard five-field crontab line (ValueError if it is not one)."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"a crontab line has 5 fields, not {len(fields)}")
    minute, hour, day, month, weekday = fields
    if day != "*" and weekday != "*":
        # Crontab fires on either day; APScheduler only when both match. Rather than send on
        # other days than the admin meant, say so.
        raise ValueError("give a day of the month or a day of the week, not both")
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=_crontab_weekdays(weekday),
        timezone=zone,
    )


def _trigger(schedule: Schedule, zone: ZoneInfo) -> CronTrigger:
    if schedule.kind == "cron":
        return cron_trigger(schedule.cron, zone)
    hour, minute = (int(part) for part in schedule.at.split(":"))
    at = {"hour": hour, "minute": minute, "timezone": zone}
    if schedule.kind == "daily":
        return CronTrigger(**at)
    if schedule.kind == "weekly":
        weekdays = ",".join(DAY_NAMES[d] for d in sorted(set(schedule.days)))
        return CronTrigger(day_of_week=weekdays, **at)
    if schedule.kind == "quarterly":
        months = ",".join(str(schedule.month + 3 * q) for q in range(4))
        return CronTrigger(month=months, day=schedule.day, **at)
    if schedule.kind == "yearly":
        return CronTrigger(month=schedule.month, day=schedule.day, **at)
    return CronTrigger(day=schedule.day, **at)


def _local(day: date, at: str, zone: ZoneInfo) -> datetime:
    hour, minute = (int(part) for part in at.split(":"))
    return datetime.combine(day, time(hour, minute), tzinfo=zone).astimezone(UTC)


def _semester_days(schedule: Schedule, after: datetime, cal: SchoolCalendar) -> Iterator[datetime]:
    """The ``day``-th day of each semester at ``at``: computed from the configured starts."""
    offset = timedelta(days=int(schedule.day) - 1)
    year = after.astimezone(cal.zone).year - 1  # a late day of last year's second semester
    while True:
        dues = (
            _local(start + offset, schedule.at, cal.zone)
            for start in cal.semester_starts_between(year, year)
        )
        yield from sorted(due for due in dues if due > after)
        year += 1


def occurrences(
    schedule: Schedule, after: datetime, calendar: SchoolCalendar
) -> Iterator[datetime]:
    """The due times strictly after ``after`` (aware), in UTC and in order, computed as they
    are taken (a caller that needs only the next one pays for only one)."""
    if after.tzinfo is None:
        raise ValueError("occurrences needs an aware datetime")
    if schedule.kind == "once":
        shown = _WHEN.match(schedule.at)
        assert shown is not None, schedule.at
        day, hour, minute = shown.groups()
        due = _local(date.fromisoformat(day), f"{hour}:{minute}", calendar.zone)
        if due > after:
            yield due
        return
    if schedule.kind == "semester":
        yield from _semester_days(schedule, after, calendar)
        return
    trigger = _trigger(schedule, calendar.zone)
    previous: datetime | None = None
    start = after + timedelta(microseconds=1)
    while (fire := trigger.get_next_fire_time(previous, start)) is not None:
        # When clocks go back, a wall-clock time comes twice: a reminder due then is due once.
        if previous is None or fire.replace(tzinfo=None) != previous.replace(tzinfo=None):
            yield fire.astimezone(UTC)
        previous = fire
        # From UTC: from the second 01:30 of a fall-back night in local time, APScheduler
        # finds that same 01:30 again, for ever.
        start = fire.astimezone(UTC) + timedelta(microseconds=1)


def next_occurrences(
    schedule: Schedule, after: datetime, n: int, calendar: SchoolCalendar
) -> list[datetime]:
    """The first ``n`` due times strictly after ``after`` (aware), in UTC."""
    return list(islice(occurrences(schedule, after, calendar), n))


def _day_of_month(day: str | None) -> str:
    if day is None or not (day == "last" or (day.isdigit() and 1 <= int(day) <= 28)):
        raise ScheduleProblem(WhenProblem.DAY, "day", day or "")
    return day


def _month(month: str | None, most: int) -> int:
    if month is None:
        return 1
    if not (month.isdigit() and 1 <= int(month) <= most):
        raise ScheduleProblem(WhenProblem.MONTH, "month", month)
    return int(month)


def make_schedule(
    kind: str,
    *,
    at: str | None = None,
    days: list[str] | None = None,
    day: str | None = None,
    month: str | None = None,
    cron: str | None = None,
    now: datetime,
    calendar: SchoolCalendar,
) -> Schedule:
    """A checked schedule from its parts as typed in a plan file or in /remind. Raises
    ScheduleProblem for the first part at fault, including a schedule that would not fire
    within a year (or a one-off in the past)."""
    if kind not in KINDS:
        raise ScheduleProblem(WhenProblem.KIND, "schedule", kind)
    schedule = Schedule(kind=kind)
    if kind == "cron":
        if cron is None:
            raise ScheduleProblem(WhenProblem.MISSING, "cron", "cron")
        try:
            cron_trigger(cron, calendar.zone)
        except ValueError:
            raise ScheduleProblem(WhenProblem.CRON, "cron", cron) from None
        schedule.cron = cron
    elif at is None:
        raise ScheduleProblem(WhenProblem.MISSING, "at", "at")
    elif kind == "once":
        shown = _WHEN.match(at)
        try:
            if shown is None:
                raise ValueError(at)
            date.fromisoformat(shown.group(1))
        except ValueError:
            raise ScheduleProblem(WhenProblem.DATE, "at", at) from None
        schedule.at = at
    elif not _HHMM.match(at):
        raise ScheduleProblem(WhenProblem.TIME, "at", at)
    else:
        schedule.at = at
    if kind == "weekly":
        indexes = [
            DAY_NAMES.index(d[:3].lower()) if d[:3].lower() in DAY_NAMES else -1 for d in days or []
        ]
        if not days or -1 in indexes:
            raise ScheduleProblem(WhenProblem.DAYS, "days", ", ".join(days or []))
        schedule.days = sorted(set(indexes))
    if kind in ("monthly", "quarterly", "yearly"):
        schedule.day = _day_of_month(day)
    if kind in ("quarterly", "yearly"):
        schedule.month = _month(month, 3 if kind == "quarterly" else 12)
    if kind == "semester":
        if day is None or not (day.isdigit() and 1 <= int(day) <= MAX_SEMESTER_DAY):
            raise ScheduleProblem(WhenProblem.SEMESTER_DAY, "day", day or "")
        schedule.day = day
    upcoming = next_occurrences(schedule, now, 1, calendar)
    if not upcoming or upcoming[0] > now + HORIZON:
        raise ScheduleProblem(WhenProblem.NEVER, "schedule", kind)
    return schedule


# The parts typed in /remind for each kind, in order, the time last ("once": date and time).
WHEN_PARTS = {
    "once": ("date", "at"),
    "daily": ("at",),
    "weekly": ("days", "at"),
    "monthly": ("day", "at"),
    "quarterly": ("month", "day", "at"),
    "semester": ("day", "at"),
    "yearly": ("month", "day", "at"),
}
# Phone keyboards in Chinese type full-width punctuation; weekdays may be written 周一 or 星期一.
_TYPED = str.maketrans({"：": ":", "，": ",", "、": ",", "　": " "})
_CHINESE_DAYS = dict(zip("一二三四五六日", DAY_NAMES, strict=True)) | {"天": "sun"}


def _weekday_word(word: str) -> str:
    """A weekday in Chinese ("周一", "星期一", "一") → "mon"; anything else is left as it is,
    for make_schedule to judge."""
    bare = word.removeprefix("星期").removeprefix("礼拜").removeprefix("周")
    return _CHINESE_DAYS.get(bare, word)


def parse_when(kind: str, typed: str, now: datetime, calendar: SchoolCalendar) -> Schedule:
    """The schedule of kind ``kind`` from the one line typed in /remind: "2026-12-01 09:00"
    (once), "09:00" (daily), "mon,fri 09:00" (weekly), "15 09:00" or "last 09:00" (monthly),
    "1 15 09:00" (quarterly: month of the quarter, day, time), "1 09:00" (semester: its N-th
    day), "3 15 09:00" (yearly: month, day, time), or a crontab line. Raises ScheduleProblem
    (WhenProblem.SHAPE when the number of parts is wrong) like make_schedule."""
    line = " ".join(typed.translate(_TYPED).split())
    if kind == "cron":
        return make_schedule(kind, cron=line, now=now, calendar=calendar)
    if kind not in WHEN_PARTS:
        raise ScheduleProblem(WhenProblem.KIND, "schedule", kind)
    words = re.sub(r"\s*,\s*", ",", line).split(" ") if line else []
    names = WHEN_PARTS[kind]
    if len(words) != len(names):
        raise ScheduleProblem(WhenProblem.SHAPE, "when", line)
    parts = dict(zip(names, words, strict=True))
    if kind == "once":
        parts["at"] = f"{parts.pop('date')} {parts['at']}"
    days = parts.pop("days", None)
    weekdays = [_weekday_word(d) for d in days.split(",") if d] if days is not None else None
    return make_schedule(kind, days=weekdays, now=now, calendar=calendar, **parts)
