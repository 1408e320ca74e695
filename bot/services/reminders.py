"""Reminder rules (提醒): broadcasts from the database on a schedule, optionally acknowledged.

A rule says what (a text with a few variables such as ``{date}``), when (once, daily, weekly on
given days, monthly on a day, or a cron expression, in the school's time zone), how long before
each due time (lead times), and to whom (groups by purpose and unit, and/or holders of a role
in private). The timing arithmetic is pure (``next_occurrences``).

Each occurrence — a rule, a due time and a lead — is recorded once under a unique key in the same
transaction as its messages, so a restart or two overlapping passes never send it twice. One
noticed later than the grace period (the bot was down) is recorded as missed, never dropped.
An occurrence that asks for acknowledgement gets one follow-up to the silent targets after the
rule's delay, and its creator gets the list of those still silent.
"""

from __future__ import annotations

import logging
import re
import string
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.errors import DomainError, StaleButton, UnknownUnit
from bot.logs import log_event
from bot.outbox import Button, Recipient
from bot.periods import SchoolCalendar
from bot.runtime import Runtime
from bot.services import org, yamlfile
from bot.services.models import Actor, Group, Person, Purpose, Role, Unit
from bot.services.notify import notify_group, notify_person
from bot.settings import parse_duration
from bot.store.tables import (
    groups,
    people,
    reminder_acks,
    reminder_occurrences,
    reminder_rules,
    roles,
    units,
)

logger = logging.getLogger(__name__)

ACK = "rk:"  # callback data of the acknowledgement button: "rk:<occurrence id>"
MANAGE = "rrm:"  # /reminders buttons: "rrm:<pause|resume|delete>:<rule id>"
MAX_FILE_BYTES = 200_000
MAX_RULES = 200
MAX_NAME = 64
MAX_TEXT = 2000
MAX_LEADS = 5
MAX_LEAD = timedelta(days=60)
LOOKBACK = timedelta(days=31)  # how far back a pass looks for occurrences it never handled
HORIZON = timedelta(days=366)  # a schedule must fire within this
VARIABLES = frozenset({"name", "date", "time", "weekday", "lead"})
KINDS = ("once", "daily", "weekly", "monthly", "quarterly", "semester", "yearly", "cron")
MAX_SEMESTER_DAY = 120
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
KEYS = frozenset(
    {"name", "text", "schedule", "at", "days", "day", "month", "cron", "leads"}
    | {"purpose", "unit", "role", "ack", "follow_up", "paused"}
)
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_WHEN = re.compile(r"^(\d{4}-\d{2}-\d{2})[ T]([01]?\d|2[0-3]):([0-5]\d)$")


# --- errors ----------------------------------------------------------------------------------


class PlanRejected(DomainError):
    """The plan file has problems; ``errors`` lists them all (nothing was stored)."""

    template = "reminders/errors/rejected.j2"


class UnknownRule(DomainError):
    template = "reminders/errors/unknown_rule.j2"


class Problem(StrEnum):
    """What can be wrong with a rule in a plan file (each has words in the templates)."""

    EMPTY = "empty"
    YAML = "yaml"
    SHAPE = "shape"
    UNKNOWN_KEY = "unknown_key"
    MISSING = "missing"  # a required key; ``value`` names it
    NAME = "name"  # empty or too long
    DUPLICATE_NAME = "duplicate_name"
    TEXT = "text"  # empty or too long
    VARIABLE = "variable"  # an unknown or unsafe {…} in the text
    KIND = "kind"
    TIME = "time"  # not HH:MM
    DATE = "date"  # an impossible date or time ("2026-02-30 09:00")
    DAYS = "days"
    DAY = "day"
    MONTH = "month"  # not 1–12 (yearly) or 1–3 (quarterly: the month of the quarter)
    SEMESTER_DAY = "semester_day"  # not 1–120
    CRON = "cron"  # not a cron expression
    NEVER = "never"  # fires never within a year (or a one-off in the past)
    LEAD = "lead"
    PURPOSE = "purpose"
    ROLE = "role"
    NO_TARGET = "no_target"
    UNKNOWN_UNIT = "unknown_unit"
    NOBODY = "nobody"  # the targets match no group and nobody
    FOLLOW_UP = "follow_up"
    FLAG = "flag"  # ack/paused not true or false
    TOO_MANY = "too_many"


class LineError(BaseModel):
    line: int
    problem: Problem
    value: str = ""
    other_line: int | None = None


# --- schedules (pure) ------------------------------------------------------------------------


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

    def __init__(self, problem: Problem, key: str, value: str = "") -> None:
        super().__init__(f"{key}: {problem.value} {value}")
        self.problem = problem
        self.key = key
        self.value = value


_CRONTAB_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _crontab_weekdays(field: str) -> str:
    """Crontab counts days of the week from 0 = Sunday; APScheduler from 0 = Monday. Spell
    numbers out as names so "1-5" means Monday to Friday, as any crontab reader expects."""
    return re.sub(r"\d+", lambda match: _CRONTAB_DAYS[int(match.group()) % 8], field)


def cron_trigger(expression: str, zone: ZoneInfo) -> CronTrigger:
    """A trigger for a standard five-field crontab line (ValueError if it is not one)."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"a crontab line has 5 fields, not {len(fields)}")
    minute, hour, day, month, weekday = fields
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


def _semester_days(
    schedule: Schedule, after: datetime, n: int, cal: SchoolCalendar
) -> list[datetime]:
    """The ``day``-th day of each semester at ``at``: computed from the configured starts."""
    year = after.astimezone(cal.zone).year
    starts = cal.semester_starts_between(year - 1, year + 2 + n)
    offset = timedelta(days=int(schedule.day) - 1)
    dues = sorted(_local(start + offset, schedule.at, cal.zone) for start in starts)
    return [due for due in dues if due > after][:n]


def next_occurrences(
    schedule: Schedule, after: datetime, n: int, calendar: SchoolCalendar
) -> list[datetime]:
    """The first ``n`` due times strictly after ``after`` (aware), in UTC."""
    if after.tzinfo is None:
        raise ValueError("next_occurrences needs an aware datetime")
    if schedule.kind == "once":
        shown = _WHEN.match(schedule.at)
        assert shown is not None, schedule.at
        day, hour, minute = shown.groups()
        due = _local(date.fromisoformat(day), f"{hour}:{minute}", calendar.zone)
        return [due] if due > after and n > 0 else []
    if schedule.kind == "semester":
        return _semester_days(schedule, after, n, calendar)
    trigger = _trigger(schedule, calendar.zone)
    found: list[datetime] = []
    previous: datetime | None = None
    start = after + timedelta(microseconds=1)
    while len(found) < n:
        fire = trigger.get_next_fire_time(previous, start)
        if fire is None:
            break
        found.append(fire.astimezone(UTC))
        previous = fire
        start = fire + timedelta(microseconds=1)
    return found


def _day_of_month(day: str | None) -> str:
    if day is None or not (day == "last" or (day.isdigit() and 1 <= int(day) <= 28)):
        raise ScheduleProblem(Problem.DAY, "day", day or "")
    return day


def _month(month: str | None, most: int) -> int:
    if month is None:
        return 1
    if not (month.isdigit() and 1 <= int(month) <= most):
        raise ScheduleProblem(Problem.MONTH, "month", month)
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
        raise ScheduleProblem(Problem.KIND, "schedule", kind)
    schedule = Schedule(kind=kind)
    if kind == "cron":
        if cron is None:
            raise ScheduleProblem(Problem.MISSING, "cron", "cron")
        try:
            cron_trigger(cron, calendar.zone)
        except ValueError:
            raise ScheduleProblem(Problem.CRON, "cron", cron) from None
        schedule.cron = cron
    elif at is None:
        raise ScheduleProblem(Problem.MISSING, "at", "at")
    elif kind == "once":
        shown = _WHEN.match(at)
        try:
            if shown is None:
                raise ValueError(at)
            date.fromisoformat(shown.group(1))
        except ValueError:
            raise ScheduleProblem(Problem.DATE, "at", at) from None
        schedule.at = at
    elif not _HHMM.match(at):
        raise ScheduleProblem(Problem.TIME, "at", at)
    else:
        schedule.at = at
    if kind == "weekly":
        indexes = [
            DAY_NAMES.index(d[:3].lower()) if d[:3].lower() in DAY_NAMES else -1 for d in days or []
        ]
        if not days or -1 in indexes:
            raise ScheduleProblem(Problem.DAYS, "days", ", ".join(days or []))
        schedule.days = sorted(set(indexes))
    if kind in ("monthly", "quarterly", "yearly"):
        schedule.day = _day_of_month(day)
    if kind in ("quarterly", "yearly"):
        schedule.month = _month(month, 3 if kind == "quarterly" else 12)
    if kind == "semester":
        if day is None or not (day.isdigit() and 1 <= int(day) <= MAX_SEMESTER_DAY):
            raise ScheduleProblem(Problem.SEMESTER_DAY, "day", day or "")
        schedule.day = day
    upcoming = next_occurrences(schedule, now, 1, calendar)
    if not upcoming or upcoming[0] > now + HORIZON:
        raise ScheduleProblem(Problem.NEVER, "schedule", kind)
    return schedule


def render_text(template: str, **values: str) -> str:
    """The rule's text with its variables filled in. Only the names in VARIABLES, plain
    ``{name}`` without attributes, indexes or formats (checked on import as well)."""
    for literal, field, spec, conversion in string.Formatter().parse(template):
        del literal
        if field is not None and (field not in VARIABLES or spec or conversion):
            return template  # never reached for stored rules; a safe fallback
    return template.format_map({name: values.get(name, "") for name in VARIABLES})


def check_text(text: str) -> str | None:
    """The first bad variable in ``text`` (None if it is fine)."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError:
        return "{"
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in VARIABLES or spec or conversion:
            return "{" + field + "}"
    return None


# --- rules as read from a file ---------------------------------------------------------------


class RuleIn(BaseModel):
    """A rule as read from a plan file (targets still by name)."""

    line: int
    name: str
    text: str
    schedule: Schedule
    leads: list[int]  # seconds before the due time
    purpose: str | None = None
    unit: str = ""
    role: str | None = None
    ack: bool = False
    follow_up: int | None = None  # seconds after sending
    paused: bool = False


def _scalar(node: yaml.Node) -> str | None:
    if isinstance(node, yaml.ScalarNode):
        return str(node.value).strip()
    return None


def _flag(value: str) -> bool | None:
    return {"true": True, "yes": True, "false": False, "no": False}.get(value.lower())


def _duration_seconds(text: str) -> int | None:
    if text.strip() == "0":
        return 0
    try:
        return int(parse_duration(text).total_seconds())
    except ValueError:
        return None


def _list(node: yaml.Node) -> list[str] | None:
    if isinstance(node, yaml.SequenceNode):
        items = [_scalar(item) for item in node.value]
        return None if any(item is None for item in items) else [str(i) for i in items]
    text = _scalar(node)
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def _rule_from_node(
    node: yaml.Node, now: datetime, calendar: SchoolCalendar
) -> tuple[RuleIn | None, list[LineError]]:
    line = node.start_mark.line + 1
    errors: list[LineError] = []
    if not isinstance(node, yaml.MappingNode):
        return None, [LineError(line=line, problem=Problem.SHAPE)]
    raw: dict[str, tuple[int, yaml.Node]] = {}
    for key_node, value_node in node.value:
        key = _scalar(key_node) or "?"
        key_line = key_node.start_mark.line + 1
        if key not in KEYS:
            errors.append(LineError(line=key_line, problem=Problem.UNKNOWN_KEY, value=key))
        else:
            raw[key] = (key_line, value_node)

    def text_of(key: str) -> tuple[int, str | None]:
        if key not in raw:
            return line, None
        where, value_node = raw[key]
        value = _scalar(value_node)
        if value is None:
            errors.append(LineError(line=where, problem=Problem.SHAPE, value=key))
        return where, value

    for key in ("name", "text", "schedule"):
        if key not in raw:
            errors.append(LineError(line=line, problem=Problem.MISSING, value=key))
    where, name = text_of("name")
    if name is not None and not (0 < len(name) <= MAX_NAME):
        errors.append(LineError(line=where, problem=Problem.NAME, value=name[:80]))
    where, text = text_of("text")
    if text is not None:
        if not (0 < len(text) <= MAX_TEXT):
            errors.append(LineError(line=where, problem=Problem.TEXT))
        elif (bad := check_text(text)) is not None:
            errors.append(LineError(line=where, problem=Problem.VARIABLE, value=bad))
    schedule = _schedule_from(raw, line, text_of, errors, now, calendar)
    leads: list[int] = [0]
    if "leads" in raw:
        where, value_node = raw["leads"]
        items = _list(value_node)
        parsed = [_duration_seconds(item) for item in items or []]
        if (
            not items
            or len(items) > MAX_LEADS
            or any(p is None or p > MAX_LEAD.total_seconds() for p in parsed)
        ):
            errors.append(LineError(line=where, problem=Problem.LEAD, value=", ".join(items or [])))
        else:
            leads = sorted({int(p or 0) for p in parsed}, reverse=True)
    where, purpose = text_of("purpose")
    if purpose is not None and purpose not in {p.value for p in Purpose}:
        errors.append(LineError(line=where, problem=Problem.PURPOSE, value=purpose))
    where, role = text_of("role")
    if role is not None and role not in {r.value for r in Role if r is not Role.SUPERADMIN}:
        errors.append(LineError(line=where, problem=Problem.ROLE, value=role))
    if purpose is None and role is None:
        errors.append(LineError(line=line, problem=Problem.NO_TARGET))
    _, unit = text_of("unit")
    flags: dict[str, bool] = {}
    for key in ("ack", "paused"):
        where, value = text_of(key)
        if value is not None:
            flag = _flag(value)
            if flag is None:
                errors.append(LineError(line=where, problem=Problem.FLAG, value=key))
            flags[key] = bool(flag)
    follow_up = None
    where, value = text_of("follow_up")
    if value is not None:
        follow_up = _duration_seconds(value)
        if not follow_up:
            errors.append(LineError(line=where, problem=Problem.FOLLOW_UP, value=value))
    if errors or schedule is None:
        return None, errors
    assert name is not None
    assert text is not None
    return (
        RuleIn(
            line=line,
            name=name,
            text=text,
            schedule=schedule,
            leads=leads,
            purpose=purpose,
            unit=unit or "",
            role=role,
            ack=flags.get("ack", False),
            follow_up=follow_up,
            paused=flags.get("paused", False),
        ),
        [],
    )


def _schedule_from(
    raw: dict[str, tuple[int, yaml.Node]],
    line: int,
    text_of: Any,
    errors: list[LineError],
    now: datetime,
    calendar: SchoolCalendar,
) -> Schedule | None:
    _, kind = text_of("schedule")
    if kind is None:
        return None
    parts = {key: text_of(key)[1] for key in ("at", "day", "month", "cron") if key in raw}
    days = _list(raw["days"][1]) if "days" in raw else None
    try:
        return make_schedule(kind, days=days, now=now, calendar=calendar, **parts)
    except ScheduleProblem as problem:
        at_line = raw[problem.key][0] if problem.key in raw else line
        errors.append(LineError(line=at_line, problem=problem.problem, value=problem.value))
        return None


def parse_plan(
    text: str, now: datetime, calendar: SchoolCalendar
) -> tuple[list[RuleIn], list[LineError]]:
    """Every rule in a YAML plan (one rule or a list) and every problem found, by line."""
    nodes = yamlfile.entries(text, MAX_RULES)
    if isinstance(nodes, yamlfile.FileTrouble):
        problem = {
            yamlfile.Trouble.YAML: Problem.YAML,
            yamlfile.Trouble.EMPTY: Problem.EMPTY,
            yamlfile.Trouble.TOO_MANY: Problem.TOO_MANY,
        }[nodes.trouble]
        return [], [LineError(line=nodes.line, problem=problem, value=nodes.detail)]
    found: list[RuleIn] = []
    errors: list[LineError] = []
    seen: dict[str, int] = {}
    for node in nodes:
        rule, problems = _rule_from_node(node, now, calendar)
        errors.extend(problems)
        if rule is None:
            continue
        key = rule.name.casefold()
        if key in seen:
            errors.append(
                LineError(
                    line=rule.line,
                    problem=Problem.DUPLICATE_NAME,
                    value=rule.name,
                    other_line=seen[key],
                )
            )
        seen.setdefault(key, rule.line)
        found.append(rule)
    return found, sorted(errors, key=lambda error: error.line)


# --- targets ---------------------------------------------------------------------------------


@dataclass
class Targets:
    groups: list[Group]
    people: list[Person]  # reachable or not; only those who started the bot are written to


async def targets(
    conn: AsyncConnection, unit: Unit, purpose: str | None, role: str | None
) -> Targets:
    """The active groups of ``purpose`` and the holders of ``role`` at or below ``unit`` (also
    used by drills, whose lead-time reminders are ordinary rules)."""
    found_groups: list[Group] = []
    if purpose is not None:
        rows = await conn.execute(
            select(groups.c.channel, groups.c.address)
            .join(units, units.c.id == groups.c.unit_id)
            .where(
                groups.c.purpose == purpose,
                groups.c.left_at.is_(None),
                units.c.id_path.startswith(unit.id_path),
            )
            .order_by(groups.c.id)
        )
        for row in rows.all():
            group = await org.group_at(conn, Recipient(row.channel, row.address))
            if group is not None:
                found_groups.append(group)
    found_people: dict[int, Person] = {}
    if role is not None:
        rows = await conn.execute(
            select(people)
            .join(roles, roles.c.person_id == people.c.id)
            .join(units, units.c.id == roles.c.unit_id)
            .where(
                roles.c.role == role,
                roles.c.revoked_at.is_(None),
                units.c.id_path.startswith(unit.id_path),
            )
            .order_by(people.c.id)
        )
        for row in rows.all():
            found_people.setdefault(row.id, org.person_from_row(row))
    return Targets(groups=found_groups, people=list(found_people.values()))


# --- importing and exporting -----------------------------------------------------------------


class ImportSummary(BaseModel):
    created: list[str]
    replaced: list[str]


def _values(rule: RuleIn, unit: Unit) -> dict[str, Any]:
    return {
        "name": rule.name,
        "text": rule.text,
        "schedule": rule.schedule.model_dump(),
        "leads": rule.leads,
        "target_purpose": rule.purpose,
        "target_unit_id": unit.id,
        "target_role": rule.role,
        "ask_ack": rule.ack,
        "follow_up_s": rule.follow_up,
        "paused": rule.paused,
    }


async def import_plan(rt: Runtime, actor: Actor | None, data: bytes) -> ImportSummary:
    """Check a YAML plan completely and store it, or raise PlanRejected listing every problem
    (nothing stored). A rule whose name is known replaces that rule's settings; occurrences
    already handled stay as they were. ``actor`` None is the operator at the command line."""
    now = rt.now()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PlanRejected(
            errors=[LineError(line=1, problem=Problem.YAML, value="not UTF-8")]
        ) from None
    rules, errors = parse_plan(text, now, rt.settings.calendar)
    summary = ImportSummary(created=[], replaced=[])
    async with rt.db.transaction() as conn:
        root = await org.root_unit(conn, now)
        if actor is not None:
            actor.require_admin(root)
        resolved: list[tuple[RuleIn, Unit]] = []
        for rule in rules:
            try:
                unit = await org.find_unit(conn, rule.unit, now)
            except (UnknownUnit, DomainError):
                errors.append(
                    LineError(line=rule.line, problem=Problem.UNKNOWN_UNIT, value=rule.unit)
                )
                continue
            found = await targets(conn, unit, rule.purpose, rule.role)
            if not found.groups and not found.people:
                errors.append(LineError(line=rule.line, problem=Problem.NOBODY, value=rule.name))
                continue
            resolved.append((rule, unit))
        if errors:
            raise PlanRejected(errors=sorted(errors, key=lambda e: e.line))
        for rule, unit in resolved:
            existing = (
                await conn.execute(
                    select(reminder_rules.c.id).where(
                        reminder_rules.c.name == rule.name, reminder_rules.c.deleted_at.is_(None)
                    )
                )
            ).first()
            if existing is None:
                await conn.execute(
                    insert(reminder_rules).values(
                        **_values(rule, unit),
                        created_by=actor.person.id if actor else None,
                        created_at=now,
                        updated_at=now,
                        planned_from=now,
                    )
                )
                summary.created.append(rule.name)
            else:
                await conn.execute(
                    update(reminder_rules)
                    .where(reminder_rules.c.id == existing.id)
                    .values(**_values(rule, unit), updated_at=now)
                )
                summary.replaced.append(rule.name)
        await org.record(
            conn,
            now,
            actor,
            "plan_imported",
            "reminders",
            created=summary.created,
            replaced=summary.replaced,
        )
    log_event(logger, "plan_imported", new=len(summary.created), replaced=len(summary.replaced))
    return summary


def _duration_text(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s" if seconds else "0"


async def export_plan(rt: Runtime) -> str:
    """Every rule (not deleted) as a YAML plan that ``import_plan`` reads back."""
    async with rt.db.read() as conn:
        rows = (
            await conn.execute(
                select(reminder_rules)
                .where(reminder_rules.c.deleted_at.is_(None))
                .order_by(reminder_rules.c.id)
            )
        ).all()
        plan: list[dict[str, Any]] = []
        for row in rows:
            unit = await org.unit_by_id(conn, row.target_unit_id)
            schedule = Schedule(**row.schedule)
            entry: dict[str, Any] = {"name": row.name, "text": row.text, "schedule": schedule.kind}
            if schedule.kind == "cron":
                entry["cron"] = schedule.cron
            else:
                entry["at"] = schedule.at
            if schedule.kind == "weekly":
                entry["days"] = [DAY_NAMES[d] for d in schedule.days]
            if schedule.day:
                entry["day"] = schedule.day
            if schedule.month:
                entry["month"] = schedule.month
            entry["leads"] = [_duration_text(s) for s in row.leads]
            if row.target_purpose:
                entry["purpose"] = row.target_purpose
            if unit.path:
                entry["unit"] = unit.path
            if row.target_role:
                entry["role"] = row.target_role
            entry["ack"] = bool(row.ask_ack)
            if row.follow_up_s:
                entry["follow_up"] = _duration_text(row.follow_up_s)
            entry["paused"] = bool(row.paused)
            plan.append(entry)
    return yaml.safe_dump(plan, allow_unicode=True, sort_keys=False)


# --- firing ----------------------------------------------------------------------------------


class State(StrEnum):
    SENT = "sent"
    MISSED = "missed"


class Progress(BaseModel):
    sent: list[str]  # "<rule name>@<due iso>/<lead s>"
    missed: list[str]
    followed_up: int


def _rule_schedule(row: Any) -> Schedule:
    return Schedule(**row.schedule)


def _due_fires(
    row: Any, since: datetime, now: datetime, calendar: SchoolCalendar
) -> list[tuple[datetime, int]]:
    """(due, lead) pairs whose firing time due − lead lies in (since, now]."""
    schedule = _rule_schedule(row)
    found: list[tuple[datetime, int]] = []
    for lead in row.leads:
        offset = timedelta(seconds=lead)
        after = since + offset
        for due in (
            next_occurrences(schedule, after, 1000, calendar)
            if schedule.kind == "once"
            else _until(schedule, after, now + offset, calendar)
        ):
            if since < due - offset <= now:
                found.append((due, lead))
    return sorted(found, key=lambda pair: pair[0] - timedelta(seconds=pair[1]))


def _until(
    schedule: Schedule, after: datetime, until: datetime, calendar: SchoolCalendar
) -> list[datetime]:
    found: list[datetime] = []
    while len(found) < 2000:
        batch = next_occurrences(schedule, after, 50, calendar)
        for due in batch:
            if due > until:
                return found
            found.append(due)
        if len(batch) < 50:
            return found
        after = batch[-1]
    return found


def _variables(rt: Runtime, name: str, due: datetime, lead: int, locale: str) -> dict[str, str]:
    local = due.astimezone(rt.settings.zone)
    weekday = rt.renderer.render(locale, "reminders/weekday.j2", weekday=local.weekday()).strip()
    lead_text = rt.renderer.render(locale, "reminders/lead.j2", seconds=lead).strip()
    return {
        "name": name,
        "date": local.strftime("%Y-%m-%d"),
        "time": local.strftime("%H:%M"),
        "weekday": weekday,
        "lead": lead_text,
    }


def ack_buttons(rt: Runtime, locale: str, occurrence_id: int) -> list[list[Button]]:
    label = rt.renderer.render(locale, "reminders/buttons/ack.j2").strip()
    return [[Button(text=label, action=f"{ACK}{occurrence_id}")]]


async def _fire(rt: Runtime, row: Any, due: datetime, lead: int) -> State | None:
    """Send (or record as missed) one occurrence, exactly once; None if another pass did."""
    now = rt.now()
    fire_at = due - timedelta(seconds=lead)
    state = State.SENT if now - fire_at <= rt.settings.reminder_grace else State.MISSED
    try:
        async with rt.db.transaction() as conn:
            unit = await org.unit_by_id(conn, row.target_unit_id)
            found = await targets(conn, unit, row.target_purpose, row.target_role)
            reached = [p for p in found.people if p.started]
            follow_up_at = (
                now + timedelta(seconds=row.follow_up_s)
                if state is State.SENT and row.ask_ack and row.follow_up_s
                else None
            )
            occurrence_id = (
                await conn.execute(
                    insert(reminder_occurrences)
                    .values(
                        rule_id=row.id,
                        due_at=due,
                        lead_s=lead,
                        state=state,
                        done_at=now,
                        follow_up_at=follow_up_at,
                        detail={
                            "groups": [g.id for g in found.groups] if state is State.SENT else [],
                            "people": [p.id for p in reached] if state is State.SENT else [],
                        },
                    )
                    .returning(reminder_occurrences.c.id)
                )
            ).scalar_one()
            if state is State.SENT:
                for group in found.groups:
                    locale = rt.settings.locale
                    await notify_group(
                        conn,
                        rt,
                        group,
                        "reminders/broadcast.j2",
                        topic="reminders.broadcast",
                        buttons=ack_buttons(rt, locale, occurrence_id) if row.ask_ack else None,
                        text=render_text(row.text, **_variables(rt, row.name, due, lead, locale)),
                        ask_ack=row.ask_ack,
                    )
                for person in reached:
                    locale = person.language(rt.settings.locale)
                    await notify_person(
                        conn,
                        rt,
                        person,
                        "reminders/broadcast.j2",
                        topic="reminders.broadcast",
                        buttons=ack_buttons(rt, locale, occurrence_id) if row.ask_ack else None,
                        text=render_text(row.text, **_variables(rt, row.name, due, lead, locale)),
                        ask_ack=row.ask_ack,
                    )
    except IntegrityError:
        return None
    log_event(
        logger,
        "reminder_fired",
        logging.INFO if state is State.SENT else logging.WARNING,
        rule=row.id,
        due=due.isoformat(),
        lead=lead,
        state=state.value,
    )
    return state


async def _handled(conn: AsyncConnection, rule_id: int) -> set[tuple[datetime, int]]:
    rows = await conn.execute(
        select(reminder_occurrences.c.due_at, reminder_occurrences.c.lead_s).where(
            reminder_occurrences.c.rule_id == rule_id
        )
    )
    return {(row.due_at, row.lead_s) for row in rows.all()}


async def run_due(rt: Runtime) -> Progress:
    """One pass at ``rt.now()``: every occurrence of an active rule whose firing time has come
    and that was never handled is sent (or recorded as missed beyond the grace period); then
    every follow-up that is due goes out once."""
    now = rt.now()
    calendar = rt.settings.calendar
    progress = Progress(sent=[], missed=[], followed_up=0)
    async with rt.db.read() as conn:
        rules = (
            await conn.execute(
                select(reminder_rules).where(
                    reminder_rules.c.deleted_at.is_(None), reminder_rules.c.paused.is_(False)
                )
            )
        ).all()
        handled = {row.id: await _handled(conn, row.id) for row in rules}
    for row in rules:
        since = max(row.planned_from, now - LOOKBACK)
        for due, lead in _due_fires(row, since, now, calendar):
            if (due, lead) in handled[row.id]:
                continue
            state = await _fire(rt, row, due, lead)
            key = f"{row.name}@{due.isoformat()}/{lead}"
            if state is State.SENT:
                progress.sent.append(key)
            elif state is State.MISSED:
                progress.missed.append(key)
    progress.followed_up = await _follow_up_due(rt)
    return progress


# --- acknowledgement -------------------------------------------------------------------------


class AckOutcome(StrEnum):
    RECORDED = "recorded"
    ALREADY = "already"


class AckReceipt(BaseModel):
    outcome: AckOutcome
    name: str
    at: datetime


async def acknowledge(
    rt: Runtime, actor: Actor, occurrence_id: int, chat: Recipient, private: bool
) -> AckReceipt:
    """Record ``actor``'s acknowledgement of an occurrence, once. The button's data is only a
    hint: the occurrence must ask for it and have been sent to this chat (or this person)."""
    now = rt.now()
    async with rt.db.transaction() as conn:
        row = (
            await conn.execute(
                select(reminder_occurrences, reminder_rules.c.name, reminder_rules.c.ask_ack)
                .join(reminder_rules, reminder_rules.c.id == reminder_occurrences.c.rule_id)
                .where(reminder_occurrences.c.id == occurrence_id)
            )
        ).first()
        if row is None or not row.ask_ack or row.state != State.SENT:
            raise StaleButton()
        group_id: int | None = None
        if private:
            if actor.person.id not in row.detail.get("people", []):
                raise StaleButton()
        else:
            group = await org.group_at(conn, chat)
            if group is None or group.id not in row.detail.get("groups", []):
                raise StaleButton()
            group_id = group.id
        earlier = (
            await conn.execute(
                select(reminder_acks.c.at).where(
                    reminder_acks.c.occurrence_id == occurrence_id,
                    reminder_acks.c.person_id == actor.person.id,
                )
            )
        ).first()
        if earlier is not None:
            return AckReceipt(outcome=AckOutcome.ALREADY, name=row.name, at=earlier.at)
        await conn.execute(
            insert(reminder_acks).values(
                occurrence_id=occurrence_id, person_id=actor.person.id, group_id=group_id, at=now
            )
        )
    return AckReceipt(outcome=AckOutcome.RECORDED, name=row.name, at=now)


async def _follow_up_due(rt: Runtime) -> int:
    now = rt.now()
    async with rt.db.read() as conn:
        due = (
            (
                await conn.execute(
                    select(reminder_occurrences.c.id).where(
                        reminder_occurrences.c.follow_up_at <= now,
                        reminder_occurrences.c.followed_up_at.is_(None),
                    )
                )
            )
            .scalars()
            .all()
        )
    done = 0
    for occurrence_id in due:
        if await _follow_up(rt, occurrence_id):
            done += 1
    return done


async def _follow_up(rt: Runtime, occurrence_id: int) -> bool:
    """One follow-up to the silent targets and the list to the creator; False if another pass
    claimed it first (the conditional update is the claim)."""
    now = rt.now()
    async with rt.db.transaction() as conn:
        claimed = (
            await conn.execute(
                update(reminder_occurrences)
                .where(
                    reminder_occurrences.c.id == occurrence_id,
                    reminder_occurrences.c.followed_up_at.is_(None),
                )
                .values(followed_up_at=now)
            )
        ).rowcount
        if claimed != 1:
            return False
        row = (
            await conn.execute(
                select(reminder_occurrences, reminder_rules.c.name, reminder_rules.c.created_by)
                .join(reminder_rules, reminder_rules.c.id == reminder_occurrences.c.rule_id)
                .where(reminder_occurrences.c.id == occurrence_id)
            )
        ).one()
        acks = (
            await conn.execute(
                select(reminder_acks.c.group_id, people)
                .join(people, people.c.id == reminder_acks.c.person_id)
                .where(reminder_acks.c.occurrence_id == occurrence_id)
                .order_by(reminder_acks.c.at)
            )
        ).all()
        acked_groups: dict[int, list[Person]] = {}
        acked_people: set[int] = set()
        for ack in acks:
            acked_people.add(ack.id)
            if ack.group_id is not None:
                acked_groups.setdefault(ack.group_id, []).append(org.person_from_row(ack))
        silent_groups: list[Group] = []
        answered: list[tuple[Group, list[Person]]] = []
        for group_id in row.detail.get("groups", []):
            address = (
                await conn.execute(
                    select(groups.c.channel, groups.c.address).where(groups.c.id == group_id)
                )
            ).one()
            group = await org.group_at(conn, Recipient(address.channel, address.address))
            assert group is not None
            if group_id in acked_groups:
                answered.append((group, acked_groups[group_id]))
            elif group.active:
                silent_groups.append(group)
        silent_people: list[Person] = []
        for person_id in row.detail.get("people", []):
            if person_id in acked_people:
                continue
            person_row = (await conn.execute(select(people).where(people.c.id == person_id))).one()
            silent_people.append(org.person_from_row(person_row))
        due_local = row.due_at
        for group in silent_groups:
            await notify_group(
                conn,
                rt,
                group,
                "reminders/follow_up.j2",
                topic="reminders.follow_up",
                buttons=ack_buttons(rt, rt.settings.locale, occurrence_id),
                rule_name=row.name,
                due=due_local,
            )
        for person in silent_people:
            await notify_person(
                conn,
                rt,
                person,
                "reminders/follow_up.j2",
                topic="reminders.follow_up",
                buttons=ack_buttons(rt, person.language(rt.settings.locale), occurrence_id),
                rule_name=row.name,
                due=due_local,
            )
        if row.created_by is not None:
            creator_row = (
                await conn.execute(select(people).where(people.c.id == row.created_by))
            ).first()
            creator = org.person_from_row(creator_row) if creator_row is not None else None
            if creator is not None and creator.started:
                await notify_person(
                    conn,
                    rt,
                    creator,
                    "reminders/silent.j2",
                    topic="reminders.silent",
                    rule_name=row.name,
                    due=due_local,
                    silent_groups=silent_groups,
                    silent_people=silent_people,
                    answered=answered,
                )
    log_event(
        logger,
        "reminder_followed_up",
        occurrence=occurrence_id,
        groups=len(silent_groups),
        people=len(silent_people),
    )
    return True


# --- the admin's list ------------------------------------------------------------------------


class RuleView(BaseModel):
    id: int
    name: str
    kind: str
    paused: bool
    ask_ack: bool
    purpose: str | None
    unit: str
    role: str | None
    leads: list[int]
    next: list[datetime]


async def list_rules(rt: Runtime, actor: Actor) -> list[RuleView]:
    """/reminders: every rule with its next five due times (school admins only)."""
    now = rt.now()
    async with rt.db.read() as conn:
        actor.require_admin(await org.root_unit(conn, now))
        rows = (
            await conn.execute(
                select(reminder_rules)
                .where(reminder_rules.c.deleted_at.is_(None))
                .order_by(reminder_rules.c.id)
            )
        ).all()
        views = []
        for row in rows:
            unit = await org.unit_by_id(conn, row.target_unit_id)
            schedule = _rule_schedule(row)
            views.append(
                RuleView(
                    id=row.id,
                    name=row.name,
                    kind=schedule.kind,
                    paused=row.paused,
                    ask_ack=row.ask_ack,
                    purpose=row.target_purpose,
                    unit=unit.path,
                    role=row.target_role,
                    leads=list(row.leads),
                    next=next_occurrences(schedule, now, 5, rt.settings.calendar),
                )
            )
    return views


async def manage(rt: Runtime, actor: Actor, action: str, rule_id: int) -> str:
    """Pause, resume or delete a rule (school admins only); returns the rule's name. Resuming
    plans from now on: what fell due while paused is neither sent nor recorded as missed."""
    now = rt.now()
    async with rt.db.transaction() as conn:
        actor.require_admin(await org.root_unit(conn, now))
        row = (
            await conn.execute(
                select(reminder_rules).where(
                    reminder_rules.c.id == rule_id, reminder_rules.c.deleted_at.is_(None)
                )
            )
        ).first()
        if row is None:
            raise UnknownRule()
        values: dict[str, Any]
        if action == "pause":
            values = {"paused": True}
        elif action == "resume":
            values = {"paused": False, "planned_from": now} if row.paused else {}
        elif action == "delete":
            values = {"deleted_at": now}
        else:
            raise StaleButton()
        if values:
            await conn.execute(
                update(reminder_rules)
                .where(reminder_rules.c.id == rule_id)
                .values(updated_at=now, **values)
            )
        await org.record(conn, now, actor, f"reminder_{action}", f"reminder:{rule_id}")
    return str(row.name)
