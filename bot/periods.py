"""The school's calendar: days, weeks, months, quarters, semesters, half-years and years.

Pure arithmetic in the school's time zone, shared by reminder schedules (the N-th day of each
semester) and the compliance calendar (is this quarter's drill done?). A semester runs from one
configured start (a month and day, e.g. 09-01) to the next one, so the two semesters of a year
cover it whole, winter and summer holidays included: an obligation "twice per semester" is
counted over the holidays that follow it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

SemesterStarts = tuple[tuple[int, int], ...]  # (month, day), in calendar order
DEFAULT_SEMESTER_STARTS: SemesterStarts = ((2, 20), (9, 1))


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"  # Monday to Sunday
    MONTH = "month"
    QUARTER = "quarter"
    SEMESTER = "semester"
    HALF_YEAR = "half_year"
    YEAR = "year"


@dataclass(frozen=True)
class SchoolCalendar:
    """The time zone and the semester starts every date computation uses."""

    zone: ZoneInfo
    semester_starts: SemesterStarts = DEFAULT_SEMESTER_STARTS

    def midnight(self, day: date) -> datetime:
        """The start of ``day`` in the school's zone, in UTC."""
        return datetime.combine(day, time(), tzinfo=self.zone).astimezone(UTC)

    def semester_starts_between(self, first_year: int, last_year: int) -> list[date]:
        """Every semester's first day in the years ``first_year``..``last_year``, in order."""
        return [
            date(year, month, day)
            for year in range(first_year, last_year + 1)
            for month, day in self.semester_starts
        ]

    def bounds(self, period: Period, moment: datetime) -> tuple[datetime, datetime]:
        """The period containing ``moment`` (aware) as [start, end), in UTC."""
        start, end = self.local_bounds(period, moment.astimezone(self.zone).date())
        return self.midnight(start), self.midnight(end)

    def local_bounds(self, period: Period, day: date) -> tuple[date, date]:
        """The period containing the local ``day`` as [first day, first day of the next)."""
        if period is Period.DAY:
            return day, day + timedelta(days=1)
        if period is Period.WEEK:
            monday = day - timedelta(days=day.weekday())
            return monday, monday + timedelta(days=7)
        if period is Period.SEMESTER:
            starts = self.semester_starts_between(day.year - 1, day.year + 1)
            first = max(start for start in starts if start <= day)
            return first, min(start for start in starts if start > first)
        months = {Period.MONTH: 1, Period.QUARTER: 3, Period.HALF_YEAR: 6, Period.YEAR: 12}[period]
        first_month = (day.month - 1) // months * months + 1
        first = date(day.year, first_month, 1)
        after = first_month + months
        return first, date(day.year + (after - 1) // 12, (after - 1) % 12 + 1, 1)

    def previous(self, period: Period, moment: datetime) -> tuple[datetime, datetime]:
        """The period just before the one containing ``moment``, in UTC."""
        start, _ = self.bounds(period, moment)
        return self.bounds(period, start - timedelta(seconds=1))


def parse_semester_starts(text: str) -> SemesterStarts:
    """ "02-20,09-01" → ((2, 20), (9, 1)); ValueError naming the first bad part."""
    starts: list[tuple[int, int]] = []
    for part in (piece.strip() for piece in text.split(",")):
        try:
            month, day = (int(number) for number in part.split("-"))
            date(2024, month, day)  # a leap year, so 02-29 is refused only by the next check
        except ValueError:
            raise ValueError(f"{part!r} is not a month and day like 09-01") from None
        if (month, day) == (2, 29):
            raise ValueError("02-29 is not in every year")
        starts.append((month, day))
    if not starts or len(set(starts)) != len(starts):
        raise ValueError("give one or more different dates like 02-20,09-01")
    return tuple(sorted(starts))
