"""Settings from the environment and `.env`, all prefixed ``SAFECAMPUS_`` (the public contract)."""

from __future__ import annotations

import logging
import re
from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bot.periods import (
    DEFAULT_SEMESTER_STARTS,
    SchoolCalendar,
    SemesterStarts,
    parse_semester_starts,
)

ENV_PREFIX = "SAFECAMPUS_"
Locale = Literal["zh_CN", "en"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
AllClearPeriod = Literal["weekly", "daily"]


class ClosingTime(NamedTuple):
    """When an all-clear period closes, in local time: a weekday (0 = Monday) and a time of day
    for weekly periods; only the time of day for daily ones."""

    weekday: int | None
    at: time


class ShiftTimes(NamedTuple):
    """A duty shift's start and end, local time of day; ``end <= start`` crosses midnight."""

    start: time
    end: time


class Settings(BaseSettings):
    """Everything an operator may configure. Field names map to ``SAFECAMPUS_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    bot_token: SecretStr | None = None
    database_url: str = "sqlite+aiosqlite:///data/safecampus.db"
    api_base_url: str = "https://api.telegram.org/bot"
    api_file_base_url: str = "https://api.telegram.org/file/bot"
    timezone: str = "Asia/Shanghai"
    locale: Locale = "zh_CN"
    superadmins: Annotated[frozenset[int], NoDecode] = Field(default_factory=frozenset)
    data_dir: Path = Path("data")
    log_level: LogLevel = "INFO"
    # How long a report may wait for acknowledgement, per severity, before it is escalated.
    ack_deadlines: Annotated[dict[str, timedelta], NoDecode] = Field(
        default_factory=lambda: _parse_deadlines(DEFAULT_ACK_DEADLINES)
    )
    escalation_interval: Annotated[timedelta, NoDecode] = timedelta(minutes=15)
    # How long a unit has to rectify a hazard, per hazard severity (重大 / 较大 / 一般).
    hazard_deadlines: Annotated[dict[str, timedelta], NoDecode] = Field(
        default_factory=lambda: _parse_hazard_deadlines(DEFAULT_HAZARD_DEADLINES)
    )
    reports_per_minute: int = Field(default=5, ge=1, le=100)
    # All-clear reports (零报告): how often each class must report, when the period closes, and
    # how long before the close the silent informants are reminded. The close defaults to
    # Friday 16:00 for weekly periods and 16:00 for daily ones (see ``allclear_closing``).
    allclear_period: AllClearPeriod = "weekly"
    allclear_close: Annotated[ClosingTime | None, NoDecode] = None
    allclear_reminder_lead: Annotated[timedelta, NoDecode] = timedelta(hours=6)
    # Reminders (提醒): an occurrence noticed this late (the bot was down) is still sent;
    # later than this it is recorded as missed.
    reminder_grace: Annotated[timedelta, NoDecode] = timedelta(hours=1)
    # The first day of each semester, month-day, every year: a semester runs to the next start.
    semester_starts: Annotated[SemesterStarts, NoDecode] = DEFAULT_SEMESTER_STARTS
    # Duty roster shifts (班次): name=HH:MM-HH:MM, in local time; an end at or before the start
    # means the shift runs past midnight into the next day.
    duty_shifts: Annotated[dict[str, ShiftTimes], NoDecode] = Field(
        default_factory=lambda: parse_duty_shifts(DEFAULT_DUTY_SHIFTS)
    )

    @field_validator("duty_shifts", mode="before")
    @classmethod
    def _shifts(cls, value: object) -> object:
        return parse_duty_shifts(value) if isinstance(value, str) else value

    @field_validator("allclear_close", mode="before")
    @classmethod
    def _closing(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value
        return parse_closing_time(value, weekly=info.data.get("allclear_period") != "daily")

    @field_validator("allclear_reminder_lead", mode="before")
    @classmethod
    def _lead(cls, value: object, info: ValidationInfo) -> object:
        lead = parse_duration(value) if isinstance(value, str) else value
        length = PERIOD_LENGTHS.get(str(info.data.get("allclear_period")))
        # A lead as long as the period would remind before the period even opened.
        if isinstance(lead, timedelta) and length is not None and lead >= length:
            raise ValueError(f"must be shorter than the period ({length.days}d)")
        return lead

    @field_validator("ack_deadlines", mode="before")
    @classmethod
    def _deadlines(cls, value: object) -> object:
        return _parse_deadlines(value) if isinstance(value, str) else value

    @field_validator("hazard_deadlines", mode="before")
    @classmethod
    def _hazard_deadlines(cls, value: object) -> object:
        return _parse_hazard_deadlines(value) if isinstance(value, str) else value

    @field_validator("semester_starts", mode="before")
    @classmethod
    def _semesters(cls, value: object) -> object:
        return parse_semester_starts(value) if isinstance(value, str) else value

    @field_validator("reminder_grace", mode="before")
    @classmethod
    def _grace(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("escalation_interval", mode="before")
    @classmethod
    def _interval(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("superadmins", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
            for part in parts:
                if not part.lstrip("-").isdigit():
                    raise ValueError(f"{part!r} is not a Telegram user id (digits only)")
            return frozenset(int(part) for part in parts)
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (try Asia/Shanghai)") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _parsable_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"not a database URL: {value!r}") from exc
        if url.get_backend_name() == "sqlite" and url.get_driver_name() != "aiosqlite":
            raise ValueError(
                "SQLite needs the async driver: start the URL with sqlite+aiosqlite://"
            )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("api_base_url", "api_file_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value

    @property
    def zone(self) -> ZoneInfo:
        """The configured time zone, for display and scheduling."""
        return ZoneInfo(self.timezone)

    @property
    def calendar(self) -> SchoolCalendar:
        """The zone and semesters that schedules and the compliance calendar count in."""
        return SchoolCalendar(self.zone, self.semester_starts)

    @property
    def allclear_closing(self) -> ClosingTime:
        """When each all-clear period closes (the configured close, else the default)."""
        if self.allclear_close is not None:
            return self.allclear_close
        weekday = None if self.allclear_period == "daily" else DEFAULT_CLOSE_WEEKDAY
        return ClosingTime(weekday, DEFAULT_CLOSE_AT)

    @property
    def log_level_number(self) -> int:
        return logging.getLevelNamesMapping()[self.log_level]


SEVERITIES = ("urgent", "major", "serious", "routine")
DEFAULT_ACK_DEADLINES = "urgent=5m,major=30m,serious=4h,routine=24h"
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """``"5m"``, ``"4h"``, ``"1d"`` or ``"30s"`` as a timedelta (a positive number and a unit)."""
    value = text.strip().lower()
    if len(value) < 2 or value[-1] not in _UNITS or not value[:-1].isdigit() or int(value[:-1]) < 1:
        raise ValueError(f"{text!r} is not a duration like 5m, 4h or 1d")
    return timedelta(**{_UNITS[value[-1]]: int(value[:-1])})


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DEFAULT_CLOSE_WEEKDAY = WEEKDAYS.index("friday")
DEFAULT_CLOSE_AT = time(16, 0)
PERIOD_LENGTHS = {"weekly": timedelta(days=7), "daily": timedelta(days=1)}


def parse_closing_time(text: str, *, weekly: bool) -> ClosingTime:
    """``"fri 16:00"`` (or ``"friday 16:00"``) for weekly periods, ``"16:00"`` for daily ones."""
    parts = text.strip().lower().split()
    example = "a day and a time like 'fri 16:00'" if weekly else "a time like '16:00'"
    if len(parts) != (2 if weekly else 1):
        raise ValueError(f"{text!r}: {'weekly' if weekly else 'daily'} periods need {example}")
    weekday = None
    if weekly:
        days = [index for index, day in enumerate(WEEKDAYS) if parts[0] in (day, day[:3])]
        if not days:
            names = ", ".join(day[:3] for day in WEEKDAYS)
            raise ValueError(f"{parts[0]!r} is not a day of the week ({names})")
        weekday = days[0]
    hours, _, minutes = parts[-1].partition(":")
    if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"{parts[-1]!r} is not a time like 16:00")
    if int(hours) > 23 or int(minutes) > 59:
        raise ValueError(f"{parts[-1]!r} is not a time of day (00:00 to 23:59)")
    return ClosingTime(weekday, time(int(hours), int(minutes)))


def _parse_deadlines(text: object) -> dict[str, timedelta]:
    deadlines = {}
    for part in str(text).split(","):
        name, _, duration = part.partition("=")
        if name.strip() not in SEVERITIES:
            raise ValueError(f"{name.strip()!r} is not one of {', '.join(SEVERITIES)}")
        deadlines[name.strip()] = parse_duration(duration)
    missing = [name for name in SEVERITIES if name not in deadlines]
    if missing:
        raise ValueError(f"no deadline for {', '.join(missing)} (e.g. {DEFAULT_ACK_DEADLINES})")
    return deadlines


HAZARD_SEVERITIES = ("major", "serious", "routine")
DEFAULT_HAZARD_DEADLINES = "major=3d,serious=7d,routine=15d"


def _parse_hazard_deadlines(text: object) -> dict[str, timedelta]:
    deadlines = {}
    for part in str(text).split(","):
        name, _, duration = part.partition("=")
        if name.strip() not in HAZARD_SEVERITIES:
            raise ValueError(f"{name.strip()!r} is not one of {', '.join(HAZARD_SEVERITIES)}")
        deadlines[name.strip()] = parse_duration(duration)
    missing = [name for name in HAZARD_SEVERITIES if name not in deadlines]
    if missing:
        raise ValueError(f"no deadline for {', '.join(missing)} (e.g. {DEFAULT_HAZARD_DEADLINES})")
    return deadlines


DEFAULT_DUTY_SHIFTS = "day=08:00-20:00,night=20:00-08:00"
_SHIFT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,15}$")


def _time_of_day(text: str) -> time:
    hours, _, minutes = text.strip().partition(":")
    if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"{text.strip()!r} is not a time like 08:00")
    if int(hours) > 23 or int(minutes) > 59:
        raise ValueError(f"{text.strip()!r} is not a time of day (00:00 to 23:59)")
    return time(int(hours), int(minutes))


def parse_duty_shifts(text: object) -> dict[str, ShiftTimes]:
    """``"day=08:00-20:00,night=20:00-08:00"`` as shift name → times, in the order given."""
    shifts: dict[str, ShiftTimes] = {}
    for part in str(text).split(","):
        name, _, span = part.partition("=")
        name = name.strip().lower()
        if not _SHIFT_NAME.match(name):
            raise ValueError(
                f"{name!r} is not a shift name (a-z, digits, - or _, at most 16; "
                f"e.g. {DEFAULT_DUTY_SHIFTS})"
            )
        if name in shifts:
            raise ValueError(f"shift {name!r} is named twice")
        start, dash, end = span.partition("-")
        if not dash:
            raise ValueError(f"shift {name!r} needs a span like 08:00-20:00")
        times = ShiftTimes(_time_of_day(start), _time_of_day(end))
        if times.start == times.end:
            raise ValueError(f"shift {name!r} starts and ends at the same time")
        shifts[name] = times
    return shifts


class SettingsError(Exception):
    """A setting is missing or malformed; ``str()`` is one line naming the variable."""


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning pydantic's report into one line that names the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ENV_PREFIX + str(first["loc"][0]).upper() if first["loc"] else ENV_PREFIX
        message = first["msg"].removeprefix("Value error, ")
        raise SettingsError(f"{name}: {message}") from None
