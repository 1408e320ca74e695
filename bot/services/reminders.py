"""Reminder rules (提醒): broadcasts from the database on a schedule, optionally acknowledged.

A rule says what (a text with a few variables such as ``{date}``), when (a schedule: see
``bot.services.recurrence``, where the timing arithmetic lives), how long before each due time
(lead times), and to whom (groups by purpose and unit, and/or holders of a role in private). It
comes from a YAML plan (``import_plan``) or from /remind (``preview``, ``create_rule``).

Each occurrence — a rule, a due time and a lead — is recorded once under a unique key in the same
transaction as its messages, so a restart or two overlapping passes never send it twice. One
noticed later than the grace period (the bot was down) is recorded as missed, never dropped.
An occurrence that asks for acknowledgement gets one follow-up to the silent targets after the
rule's delay, and its creator gets the list of those still silent.
"""

from __future__ import annotations

import logging
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from itertools import islice, takewhile
from typing import Any

import yaml
from pydantic import BaseModel
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.errors import DomainError, StaleButton, UnknownUnit
from bot.logs import log_event
from bot.outbox import Button, Recipient
from bot.periods import SchoolCalendar
from bot.runtime import Runtime
from bot.services import org, special_periods, yamlfile
from bot.services.models import Actor, Group, Person, Purpose, Role, Unit
from bot.services.notify import notify_groups, notify_person
from bot.services.recurrence import (
    DAY_NAMES,
    HORIZON,
    Schedule,
    ScheduleProblem,
    make_schedule,
    next_occurrences,
    occurrences,
)
from bot.settings import parse_duration
from bot.store.tables import (
    activities,
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
MAX_PER_PASS = 2000  # occurrences of one rule and lead a pass takes; the next goes on from there
VARIABLES = frozenset({"name", "date", "time", "weekday", "lead"})
KEYS = frozenset(
    {"name", "text", "schedule", "at", "days", "day", "month", "cron", "leads"}
    | {"purpose", "unit", "role", "ack", "follow_up", "paused", "alert_level"}
)


# --- errors ----------------------------------------------------------------------------------


class PlanRejected(DomainError):
    """The plan file has problems; ``errors`` lists them all (nothing was stored)."""

    template = "reminders/errors/rejected.j2"


class UnknownRule(DomainError):
    template = "reminders/errors/unknown_rule.j2"


class Problem(StrEnum):
    """What can be wrong with a rule in a plan file or in /remind (each has words in the
    templates); the schedule's own problems have the values of ``recurrence.WhenProblem``."""

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
    LEVEL = "level"  # alert_level not 1 or 2
    TOO_MANY = "too_many"


class LineError(BaseModel):
    line: int
    problem: Problem
    value: str = ""
    other_line: int | None = None


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
    paused: bool | None = None  # None: the file does not say (a replaced rule keeps its own)
    alert_level: int | None = None  # runs only during a special period of this level or higher


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
    where, value = text_of("alert_level")
    alert_level = int(value) if value in ("1", "2") else None
    if value is not None and alert_level is None:
        errors.append(LineError(line=where, problem=Problem.LEVEL, value=value))
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
            paused=flags.get("paused"),
            alert_level=alert_level,
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
        errors.append(
            LineError(line=at_line, problem=Problem(problem.problem), value=problem.value)
        )
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
        inside = select(units.c.id).where(units.c.id_path.startswith(unit.id_path))
        found_groups = await org.groups_where(
            conn,
            groups.c.purpose == purpose,
            groups.c.left_at.is_(None),
            groups.c.unit_id.in_(inside),
        )
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
    unreached: list[str] = []  # rules stored although their targets match nobody yet


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
        "paused": bool(rule.paused),
        "alert_level": rule.alert_level,
    }


async def _reach(conn: AsyncConnection, rule: RuleIn, now: datetime) -> tuple[Unit, Targets]:
    """The rule's unit and whom its targets match there (UnknownUnit or BadUnitPath if the
    unit does not exist); the callers decide whether matching nobody is acceptable."""
    unit = await org.find_unit(conn, rule.unit, now)
    return unit, await targets(conn, unit, rule.purpose, rule.role)


async def _live_rule_id(conn: AsyncConnection, name: str) -> int | None:
    """The id of the rule (not deleted) called ``name``: names identify rules in plan files."""
    row = (
        await conn.execute(
            select(reminder_rules.c.id).where(
                reminder_rules.c.name == name, reminder_rules.c.deleted_at.is_(None)
            )
        )
    ).first()
    return None if row is None else int(row.id)


async def _insert_rule(
    conn: AsyncConnection, rule: RuleIn, unit: Unit, actor: Actor | None, now: datetime
) -> int:
    """Store a new rule; it is planned from ``now``, so nothing due before it existed is sent
    or recorded as missed."""
    return int(
        (
            await conn.execute(
                insert(reminder_rules)
                .values(
                    **_values(rule, unit),
                    created_by=actor.person.id if actor else None,
                    created_at=now,
                    updated_at=now,
                    planned_from=now,
                )
                .returning(reminder_rules.c.id)
            )
        ).scalar_one()
    )


async def rename_rules(rt: Runtime, names: dict[str, str]) -> None:
    """Give live rules new names (old name → new name), unless a live rule has the new name
    already: how a built-in preset finds its rules again after the school's language changed."""
    now = rt.now()
    async with rt.db.transaction() as conn:
        for old, new in names.items():
            if old == new or await _live_rule_id(conn, new) is not None:
                continue
            await conn.execute(
                update(reminder_rules)
                .where(reminder_rules.c.name == old, reminder_rules.c.deleted_at.is_(None))
                .values(name=new, updated_at=now)
            )


async def _replace_rule(
    conn: AsyncConnection, rule_id: int, rule: RuleIn, unit: Unit, now: datetime
) -> None:
    """Give a known rule the settings of ``rule``. Its occurrences already handled stay as
    they were; if it now runs at other times (schedule or leads changed, or un-paused), it is
    planned from now, as /reminders' resume does, so nothing of the old times is replayed."""
    old = (await conn.execute(select(reminder_rules).where(reminder_rules.c.id == rule_id))).one()
    values = _values(rule, unit)
    if rule.paused is None:
        values["paused"] = old.paused
    if (
        old.schedule != values["schedule"]
        or list(old.leads) != values["leads"]
        or (old.paused and not values["paused"])
    ):
        values["planned_from"] = now
    await conn.execute(
        update(reminder_rules)
        .where(reminder_rules.c.id == rule_id)
        .values(**values, updated_at=now)
    )


async def import_plan(
    rt: Runtime, actor: Actor | None, data: bytes, *, reach_required: bool = True
) -> ImportSummary:
    """Check a YAML plan completely and store it, or raise PlanRejected listing every problem
    (nothing stored). A rule whose name is known replaces that rule's settings; occurrences
    already handled stay as they were. ``actor`` None is the operator at the command line.
    With ``reach_required`` False (a built-in preset, loaded before the groups are bound) a
    rule whose targets match nobody yet is stored and listed in ``unreached``."""
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
                unit, found = await _reach(conn, rule, now)
            except (UnknownUnit, DomainError):
                errors.append(
                    LineError(line=rule.line, problem=Problem.UNKNOWN_UNIT, value=rule.unit)
                )
                continue
            if not found.groups and not found.people:
                if reach_required:
                    errors.append(
                        LineError(line=rule.line, problem=Problem.NOBODY, value=rule.name)
                    )
                    continue
                summary.unreached.append(rule.name)
            resolved.append((rule, unit))
        if errors:
            raise PlanRejected(errors=sorted(errors, key=lambda e: e.line))
        for rule, unit in resolved:
            existing = await _live_rule_id(conn, rule.name)
            if existing is None:
                await _insert_rule(conn, rule, unit, actor, now)
                summary.created.append(rule.name)
            else:
                await _replace_rule(conn, existing, rule, unit, now)
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
    """Every rule (not deleted) as a YAML plan that ``import_plan`` reads back. A drill's
    reminders are left out: they belong to the drill (/drill postpone moves them), and imported
    back they would become rules of their own."""
    drill_rules = select(activities.c.reminder_rule_id).where(
        activities.c.reminder_rule_id.is_not(None)
    )
    async with rt.db.read() as conn:
        rows = (
            await conn.execute(
                select(reminder_rules)
                .where(
                    reminder_rules.c.deleted_at.is_(None),
                    reminder_rules.c.id.not_in(drill_rules),
                )
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
            if row.alert_level is not None:
                entry["alert_level"] = row.alert_level
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
    row: Any, since: datetime, handled_to: dict[int, datetime], now: datetime, cal: SchoolCalendar
) -> list[tuple[datetime, int]]:
    """(due, lead) pairs owed: firing time due − lead in (since, now] and, for each lead, due
    after the last one handled (``handled_to``); at most MAX_PER_PASS per lead, the oldest
    first. In firing order."""
    schedule = _rule_schedule(row)
    found: list[tuple[datetime, int]] = []
    for lead in row.leads:
        offset = timedelta(seconds=lead)
        after = max(since + offset, handled_to.get(lead, since + offset))
        dues = occurrences(schedule, after, cal)
        due_now = takewhile(lambda due, until=now + offset: due <= until, dues)
        found.extend((due, lead) for due in islice(due_now, MAX_PER_PASS))
    return sorted(found, key=lambda pair: pair[0] - timedelta(seconds=pair[1]))


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
    """Send (or record as missed) one occurrence, exactly once; None if another pass did, or
    if the rule was paused, deleted or changed since the pass read it (a drill cancelled
    during a long catch-up is not announced)."""
    now = rt.now()
    fire_at = due - timedelta(seconds=lead)
    state = State.SENT if now - fire_at <= rt.settings.reminder_grace else State.MISSED
    try:
        async with rt.db.transaction() as conn:
            current = await conn.execute(
                select(reminder_rules.c.id).where(
                    reminder_rules.c.id == row.id,
                    reminder_rules.c.updated_at == row.updated_at,
                    reminder_rules.c.deleted_at.is_(None),
                    reminder_rules.c.paused.is_(False),
                )
            )
            if current.first() is None:
                return None
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
                locale = rt.settings.locale
                await notify_groups(
                    conn,
                    rt,
                    found.groups,
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


async def _handled_to(conn: AsyncConnection, since: datetime) -> dict[int, dict[int, datetime]]:
    """rule id → lead → the due time of the last occurrence sent or recorded missed (due after
    ``since``): one grouped query over the unique key's index.

    Passes handle a rule's occurrences in firing order, so for each lead nothing due before the
    last one handled is still owed. Starting there keeps a pass short however long the rule has
    run, and lets a pass that stopped at MAX_PER_PASS go on where it stopped."""
    rows = await conn.execute(
        select(
            reminder_occurrences.c.rule_id,
            reminder_occurrences.c.lead_s,
            func.max(reminder_occurrences.c.due_at).label("due_at"),
        )
        .where(reminder_occurrences.c.due_at > since)
        .group_by(reminder_occurrences.c.rule_id, reminder_occurrences.c.lead_s)
    )
    handled: dict[int, dict[int, datetime]] = {}
    for row in rows.all():
        handled.setdefault(row.rule_id, {})[row.lead_s] = row.due_at
    return handled


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
        # Anything due before the look-back is out of reach anyway (see LOOKBACK).
        handled_to = await _handled_to(conn, now - LOOKBACK)
        spans = await special_periods.spans_between(conn, now - LOOKBACK, now)
    for row in rules:
        since = max(row.planned_from, now - LOOKBACK)
        # A rule tied to an alert level is due only inside its periods, never "missed" outside.
        stretches = (
            [(since, now)]
            if row.alert_level is None
            else special_periods.windows(spans, row.alert_level, since, now)
        )
        owed = [
            pair
            for after, up_to in stretches
            for pair in _due_fires(row, after, handled_to.get(row.id, {}), up_to, calendar)
        ]
        # A pass racing this one may send some of these first: _fire's unique key sorts it out.
        for due, lead in owed:
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
                    # Once per group it was pressed in: a teacher in two class groups answers
                    # for each of them.
                    reminder_acks.c.group_id.is_(None)
                    if group_id is None
                    else reminder_acks.c.group_id == group_id,
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
        for group in await org.groups_where(conn, groups.c.id.in_(row.detail.get("groups", []))):
            if group.id in acked_groups:
                answered.append((group, acked_groups[group.id]))
            elif group.active:
                silent_groups.append(group)
        sent_to = await org.people_by_id(conn, set(row.detail.get("people", [])))
        silent_people = [
            person for person_id, person in sorted(sent_to.items()) if person_id not in acked_people
        ]
        due_local = row.due_at
        await notify_groups(
            conn,
            rt,
            silent_groups,
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
    next: list[datetime]  # for a rule tied to an alert level: only those in declared periods
    alert_level: int | None = None


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
        spans = await special_periods.spans_between(conn, now, now + HORIZON)
        views = []
        for row in rows:
            unit = await org.unit_by_id(conn, row.target_unit_id)
            schedule = _rule_schedule(row)
            scan = 5 if row.alert_level is None else 200  # most fall outside any period
            upcoming = [
                due
                for due in next_occurrences(schedule, now, scan, rt.settings.calendar)
                if special_periods.allows(spans, row.alert_level, due)
            ]
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
                    next=upcoming[:5],
                    alert_level=row.alert_level,
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


# --- guided creation (/remind) ---------------------------------------------------------------

PREVIEW_COUNT = 5  # due times on the /remind confirmation card


class NobodyTargeted(DomainError):
    """The targets match no group and nobody in the unit: the rule would send nothing."""

    template = "reminders/errors/nobody.j2"


class NameTaken(DomainError):
    """Another live rule has this name (names identify rules in plan files)."""

    template = "reminders/errors/name_taken.j2"


class BadRule(DomainError):
    """A rule made in /remind has a part at fault: ``problem`` (a Problem), ``value``."""

    template = "reminders/errors/bad_rule.j2"


class Preview(BaseModel):
    """What saving a rule would do: where, whom it reaches, and its next due times (UTC)."""

    unit: str  # the unit's path; "" for the whole school
    groups: int
    people: int  # holders of the role, whether or not they can be written to
    unreachable: int  # of those, who never started the bot (they get nothing)
    next: list[datetime]


async def authorize(rt: Runtime, actor: Actor) -> None:
    """Raise NotAllowed unless ``actor`` may create reminder rules (an admin of the school)."""
    async with rt.db.read() as conn:
        actor.require_admin(await org.root_unit(conn, rt.now()))


def rule_name(text: str) -> str:
    """The name of a rule made in /remind: the first line of its text, cut to MAX_NAME."""
    lines = [line.strip() for line in text.strip().splitlines()]
    return lines[0][:MAX_NAME] if lines else ""


def check_rule_text(text: str) -> None:
    """Raise BadRule unless ``text`` can be a rule's text: not empty, at most MAX_TEXT
    characters, and only the variables in VARIABLES."""
    if not 0 < len(text.strip()) <= MAX_TEXT:
        raise BadRule(problem=Problem.TEXT, value=f"{len(text.strip())}/{MAX_TEXT}")
    bad = check_text(text)
    if bad is not None:
        raise BadRule(problem=Problem.VARIABLE, value=bad)


async def check_name(rt: Runtime, actor: Actor, name: str) -> None:
    """Raise BadRule for an unusable name, NameTaken if a live rule has it already."""
    if not 0 < len(name) <= MAX_NAME:
        raise BadRule(problem=Problem.NAME, value=name[:80])
    async with rt.db.read() as conn:
        actor.require_admin(await org.root_unit(conn, rt.now()))
        if await _live_rule_id(conn, name) is not None:
            raise NameTaken(rule=name)


def _check_schedule(schedule: Schedule, now: datetime, calendar: SchoolCalendar) -> None:
    """Check a schedule again from its parts, as if typed (a one-off may have passed since)."""
    try:
        make_schedule(
            schedule.kind,
            at=schedule.at or None,
            days=[DAY_NAMES[d] if 0 <= d < 7 else str(d) for d in schedule.days] or None,
            day=schedule.day or None,
            month=str(schedule.month) if schedule.month else None,
            cron=schedule.cron or None,
            now=now,
            calendar=calendar,
        )
    except ScheduleProblem as problem:
        raise BadRule(problem=Problem(problem.problem), value=problem.value) from None


def _check_rule(rule: RuleIn, now: datetime, calendar: SchoolCalendar) -> None:
    """Raise BadRule for the first part of a /remind rule at fault. The flow offers only good
    choices, but the service is where a request is trusted or not."""
    if not 0 < len(rule.name) <= MAX_NAME:
        raise BadRule(problem=Problem.NAME, value=rule.name[:80])
    check_rule_text(rule.text)
    _check_schedule(rule.schedule, now, calendar)
    if not 0 < len(rule.leads) <= MAX_LEADS or any(
        not 0 <= lead <= MAX_LEAD.total_seconds() for lead in rule.leads
    ):
        raise BadRule(problem=Problem.LEAD, value=", ".join(map(_duration_text, rule.leads)))
    if rule.purpose is not None and rule.purpose not in {p.value for p in Purpose}:
        raise BadRule(problem=Problem.PURPOSE, value=rule.purpose)
    if rule.role is not None and rule.role not in {r.value for r in Role} - {Role.SUPERADMIN}:
        raise BadRule(problem=Problem.ROLE, value=rule.role)
    if rule.purpose is None and rule.role is None:
        raise BadRule(problem=Problem.NO_TARGET, value="")
    if rule.follow_up is not None and rule.follow_up <= 0:
        raise BadRule(problem=Problem.FOLLOW_UP, value=str(rule.follow_up))


async def _reached(conn: AsyncConnection, rule: RuleIn, now: datetime) -> tuple[Unit, Targets]:
    unit, found = await _reach(conn, rule, now)
    if not found.groups and not found.people:
        raise NobodyTargeted(unit=unit.path, purpose=rule.purpose, role=rule.role)
    return unit, found


async def preview(rt: Runtime, actor: Actor, rule: RuleIn) -> Preview:
    """What saving ``rule`` would do, without saving it (school admins only): the next due
    times and how many groups and people its targets reach. UnknownUnit (or BadUnitPath) and
    NobodyTargeted as in ``create_rule``."""
    now = rt.now()
    async with rt.db.read() as conn:
        actor.require_admin(await org.root_unit(conn, now))
        unit, found = await _reached(conn, rule, now)
    return Preview(
        unit=unit.path,
        groups=len(found.groups),
        people=len(found.people),
        unreachable=sum(not person.started for person in found.people),
        next=next_occurrences(rule.schedule, now, PREVIEW_COUNT, rt.settings.calendar),
    )


async def create_rule(rt: Runtime, actor: Actor, rule: RuleIn) -> RuleView:
    """Store one new rule made in /remind (school admins only), created by ``actor`` and
    planned from now. Refused with nothing stored: BadRule, NameTaken, UnknownUnit or
    BadUnitPath, NobodyTargeted (the groups may have left since the preview)."""
    now = rt.now()
    calendar = rt.settings.calendar
    async with rt.db.transaction() as conn:
        actor.require_admin(await org.root_unit(conn, now))
        _check_rule(rule, now, calendar)
        if await _live_rule_id(conn, rule.name) is not None:
            raise NameTaken(rule=rule.name)
        unit, _found = await _reached(conn, rule, now)
        rule_id = await _insert_rule(conn, rule, unit, actor, now)
        await org.record(
            conn, now, actor, "reminder_created", f"reminder:{rule_id}", name=rule.name
        )
    log_event(logger, "reminder_created", rule=rule_id, kind=rule.schedule.kind)
    return RuleView(
        id=rule_id,
        name=rule.name,
        kind=rule.schedule.kind,
        paused=bool(rule.paused),
        ask_ack=rule.ack,
        purpose=rule.purpose,
        unit=unit.path,
        role=rule.role,
        leads=rule.leads,
        next=next_occurrences(rule.schedule, now, PREVIEW_COUNT, calendar),
    )
