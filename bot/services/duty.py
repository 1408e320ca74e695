"""Duty roster (值班表): who is on duty when, as imported from a CSV file; handover notes (交班)
from one shift to the next; a reminder to each shift's people when it starts; and the leader on
duty (带班领导) as the escalation target other capabilities use.

A roster file is checked completely before anything is stored (``parse_roster`` is pure), so a
bad row refuses the whole file and nothing is half-imported. A good file replaces the roster of
the dates it covers; the replaced rows stay, marked, as evidence of what was planned.

Shift starts are handled once each (unique key in ``duty_reminders``), found in the database on
every pass, so a restart neither repeats nor forgets a reminder.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.errors import BadArguments, DomainError, NotAllowed, UnknownPerson
from bot.logs import log_event
from bot.runtime import Runtime
from bot.services import org
from bot.services.models import Actor, Person, Role
from bot.services.notify import notify_person
from bot.settings import ShiftTimes
from bot.store.tables import duty_imports, duty_reminders, duty_shifts, handovers, people

logger = logging.getLogger(__name__)

COLUMNS = ("date", "shift", "role", "person")
MAX_FILE_BYTES = 1_000_000  # a year of a large school's roster is well under this
MAX_ROWS = 5000
MAX_HANDOVER = 2000  # characters; a handover is a note, not a report
# A shift start noticed this late (the bot was down) is still worth a reminder; later than
# this the shift is well under way, so the start is recorded as missed instead.
REMINDER_GRACE = timedelta(hours=1)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_REFERENCE = re.compile(r"^(@[A-Za-z0-9_]{1,64}|-?\d{1,20})$")


class DutyRole(StrEnum):
    """The roles a roster names, in the order /duty lists them."""

    LEADER = "leader"  # 带班领导
    OFFICER = "officer"  # 值班员
    GUARD = "guard"  # 值班保安


ROSTER_ROLES = frozenset(role.value for role in DutyRole)
# Who may look at the roster with /duty (the people it concerns and those who plan it).
VIEWERS = (Role.ADMIN, Role.OFFICER, Role.GUARD, Role.LEADER)


# --- errors --------------------------------------------------------------------------------


class RosterRejected(DomainError):
    """The file has bad rows; ``errors`` lists them all (nothing was stored)."""

    template = "duty/errors/rejected.j2"


class RosterNotText(DomainError):
    """The file is not UTF-8 text (a spreadsheet saved in another format or encoding)."""

    template = "duty/errors/not_text.j2"


class NotOnDuty(DomainError):
    """Only someone on duty now may write the handover note."""

    template = "duty/errors/not_on_duty.j2"


# --- parsing (pure) ------------------------------------------------------------------------


class Problem(StrEnum):
    """What can be wrong with a roster file or one of its rows (each has words in the
    templates)."""

    EMPTY = "empty"  # no header, or a header and no rows
    HEADER = "header"  # a required column is missing from the header
    TOO_MANY = "too_many"
    MISSING = "missing"  # a required value is blank
    DATE = "date"
    SHIFT = "shift"
    ROLE = "role"
    PERSON = "person"  # not "@username" or a Telegram id
    UNKNOWN_PERSON = "unknown_person"  # well-formed, but the bot has never seen them
    DUPLICATE = "duplicate"


class RowError(BaseModel):
    """One thing wrong with the file: the line it is on (1 = the header), what, and the value."""

    line: int
    problem: Problem
    value: str = ""
    other_line: int | None = None  # the earlier line a duplicate repeats


class RosterRow(BaseModel):
    """One well-formed row: a person (still a reference) on a shift of a local date."""

    line: int
    day: date
    shift: str
    role: DutyRole
    person: str  # "@username" or a Telegram id, as written


def decode_roster(data: bytes) -> str:
    """The file's text; spreadsheet programs often add a byte-order mark, which is dropped."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RosterNotText() from None


def _parse_date(value: str) -> date | None:
    if not _DATE.match(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def parse_roster(
    text: str, shifts: dict[str, ShiftTimes]
) -> tuple[list[RosterRow], list[RowError]]:
    """Check every row of a roster CSV (``date,shift,role,person`` with a header row, in any
    column order; other columns are ignored). Returns the good rows and every problem found;
    the file may only be imported when there are no problems."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    names = [name.strip().lower() for name in header or []]
    if not any(names):
        return [], [RowError(line=1, problem=Problem.EMPTY)]
    missing = [column for column in COLUMNS if column not in names]
    if missing:
        return [], [RowError(line=1, problem=Problem.HEADER, value=", ".join(missing))]
    where = {column: names.index(column) for column in COLUMNS}
    rows: list[RosterRow] = []
    errors: list[RowError] = []
    seen: dict[tuple[date, str, str], int] = {}
    for fields in reader:
        line = reader.line_num
        if not any(field.strip() for field in fields):
            continue  # blank lines, often left at the end by spreadsheets
        if len(rows) + len(errors) >= MAX_ROWS:
            return [], [RowError(line=line, problem=Problem.TOO_MANY, value=str(MAX_ROWS))]
        values = {
            column: fields[index].strip() if index < len(fields) else ""
            for column, index in where.items()
        }
        row_errors = [
            RowError(line=line, problem=Problem.MISSING, value=column)
            for column in COLUMNS
            if not values[column]
        ]
        day = _parse_date(values["date"])
        if values["date"] and day is None:
            row_errors.append(RowError(line=line, problem=Problem.DATE, value=values["date"]))
        shift = values["shift"].lower()
        if shift and shift not in shifts:
            row_errors.append(RowError(line=line, problem=Problem.SHIFT, value=values["shift"]))
        role = values["role"].lower()
        if role and role not in ROSTER_ROLES:
            row_errors.append(RowError(line=line, problem=Problem.ROLE, value=values["role"]))
        person = values["person"]
        if person and not _REFERENCE.match(person):
            row_errors.append(RowError(line=line, problem=Problem.PERSON, value=person))
        if row_errors:
            errors.extend(row_errors)
            continue
        assert day is not None
        key = (day, shift, person.lower())
        if key in seen:
            errors.append(
                RowError(line=line, problem=Problem.DUPLICATE, value=person, other_line=seen[key])
            )
            continue
        seen[key] = line
        rows.append(RosterRow(line=line, day=day, shift=shift, role=DutyRole(role), person=person))
    if not rows and not errors:
        errors.append(RowError(line=1, problem=Problem.EMPTY))
    return rows, errors


def shift_window(day: date, times: ShiftTimes, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """A shift of local date ``day`` as UTC start and end. A shift ending at or before its start
    ends on the next day (a night shift). Combined in the local zone, so a shift keeps its
    wall-clock times across daylight-saving changes."""
    starts = datetime.combine(day, times.start, tzinfo=zone)
    end_day = day + timedelta(days=1) if times.end <= times.start else day
    ends = datetime.combine(end_day, times.end, tzinfo=zone)
    return starts.astimezone(UTC), ends.astimezone(UTC)


# --- importing -----------------------------------------------------------------------------


class ImportSummary(BaseModel):
    """What an accepted roster file did."""

    rows: int
    first_date: date
    last_date: date
    days: int  # dates covered (their earlier roster, if any, was replaced)
    replaced: int  # rows of the earlier roster for those dates that this file replaced
    people: int
    unreachable: list[Person]  # never opened a private chat with the bot: no reminders


async def _resolve(
    conn: AsyncConnection, rows: list[RosterRow]
) -> tuple[dict[str, Person], list[RowError]]:
    """Each distinct reference to a person known to the bot; an error for each row naming
    someone unknown, or someone already on the same shift under another reference."""
    found: dict[str, Person] = {}
    errors: list[RowError] = []
    seen: dict[tuple[date, str, int], int] = {}
    for row in rows:
        reference = row.person.lower()
        if reference not in found:
            try:
                found[reference] = await org.find_person(conn, row.person)
            except UnknownPerson:
                errors.append(
                    RowError(line=row.line, problem=Problem.UNKNOWN_PERSON, value=row.person)
                )
                continue
        # "@name" on one line and the same person's id on another are still one person.
        key = (row.day, row.shift, found[reference].id)
        if key in seen:
            errors.append(
                RowError(
                    line=row.line, problem=Problem.DUPLICATE, value=row.person, other_line=seen[key]
                )
            )
        seen.setdefault(key, row.line)
    return found, errors


async def import_roster(
    rt: Runtime, actor: Actor | None, data: bytes, file_name: str, *, source: str
) -> ImportSummary:
    """Check ``data`` as a roster CSV and, if every row is good, store it in place of the
    roster of the dates it covers. ``actor`` must be an admin of the whole school; None is the
    operator at the command line. Raises RosterRejected listing every bad row."""
    now = rt.now()
    rows, errors = parse_roster(decode_roster(data), rt.settings.duty_shifts)
    async with rt.db.transaction() as conn:
        if actor is not None:
            # The roster is school-wide: only an admin of the whole school may replace it.
            actor.require_admin(await org.root_unit(conn, now))
        found, unknown = await _resolve(conn, rows)
        errors = sorted([*errors, *unknown], key=lambda error: error.line)
        if errors:
            raise RosterRejected(errors=errors, shifts=list(rt.settings.duty_shifts))
        dates = sorted({row.day for row in rows})
        batch = (
            await conn.execute(
                insert(duty_imports)
                .values(
                    imported_by=actor.person.id if actor else None,
                    source=source,
                    file_name=file_name[:256],
                    rows=len(rows),
                    first_date=dates[0],
                    last_date=dates[-1],
                    at=now,
                )
                .returning(duty_imports.c.id)
            )
        ).scalar_one()
        replaced = (
            await conn.execute(
                update(duty_shifts)
                .where(duty_shifts.c.date.in_(dates), duty_shifts.c.replaced_at.is_(None))
                .values(replaced_at=now)
            )
        ).rowcount
        zone = rt.settings.zone
        values = []
        for row in rows:
            starts, ends = shift_window(row.day, rt.settings.duty_shifts[row.shift], zone)
            values.append(
                {
                    "import_id": batch,
                    "date": row.day,
                    "shift": row.shift,
                    "role": row.role.value,
                    "person_id": found[row.person.lower()].id,
                    "starts_at": starts,
                    "ends_at": ends,
                }
            )
        await conn.execute(insert(duty_shifts), values)
        await org.record(
            conn,
            now,
            actor,
            "duty_imported",
            f"duty_import:{batch}",
            file=file_name,
            rows=len(rows),
        )
    log_event(logger, "duty_imported", batch=batch, rows=len(rows), replaced=replaced)
    everyone = {person.id: person for person in found.values()}
    return ImportSummary(
        rows=len(rows),
        first_date=dates[0],
        last_date=dates[-1],
        days=len(dates),
        replaced=replaced,
        people=len(everyone),
        unreachable=[person for person in everyone.values() if not person.started],
    )


# --- who is on duty ------------------------------------------------------------------------


class DutyEntry(BaseModel):
    """One person on one shift."""

    id: int
    day: date
    shift: str
    role: DutyRole
    person: Person
    starts_at: datetime
    ends_at: datetime


class Handover(BaseModel):
    """A handover note and who wrote it on which shift."""

    text: str
    person: Person
    at: datetime
    day: date
    shift: str


class ShiftView(BaseModel):
    """One shift of a day with its people, by role."""

    day: date
    shift: str
    starts_at: datetime
    ends_at: datetime
    by_role: dict[str, list[Person]]  # DutyRole value → people, in DutyRole order


class DutyBoard(BaseModel):
    """What /duty shows: the shifts running now, today's roster, the latest handover."""

    now: datetime
    today: date
    current: list[ShiftView]
    shifts_today: list[ShiftView]
    handover: Handover | None


def _entry(row: Any) -> DutyEntry:
    return DutyEntry(
        id=row.duty_id,
        day=row.date,
        shift=row.shift,
        role=DutyRole(row.role),
        person=org.person_from_row(row),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
    )


async def _entries(conn: AsyncConnection, *conditions: Any) -> list[DutyEntry]:
    rows = await conn.execute(
        select(
            duty_shifts.c.id.label("duty_id"),
            duty_shifts.c.date,
            duty_shifts.c.shift,
            duty_shifts.c.role,
            duty_shifts.c.starts_at,
            duty_shifts.c.ends_at,
            people,
        )
        .join(people, people.c.id == duty_shifts.c.person_id)
        .where(duty_shifts.c.replaced_at.is_(None), *conditions)
        .order_by(duty_shifts.c.starts_at, duty_shifts.c.id)
    )
    return [_entry(row) for row in rows.all()]


async def on_duty(conn: AsyncConnection, at: datetime) -> list[DutyEntry]:
    """Everyone whose shift includes the moment ``at`` (start included, end excluded)."""
    return await _entries(conn, duty_shifts.c.starts_at <= at, duty_shifts.c.ends_at > at)


async def leaders_on_duty(conn: AsyncConnection, rt: Runtime, now: datetime) -> list[Person]:
    """The leaders on duty (带班领导) at ``now`` by the roster; empty when the roster names
    none for this moment (callers then fall back to the holders of the leader role)."""
    found: dict[int, Person] = {}
    for entry in await on_duty(conn, now):
        if entry.role is DutyRole.LEADER:
            found.setdefault(entry.person.id, entry.person)
    return list(found.values())


def _views(entries: Iterable[DutyEntry], order: list[str]) -> list[ShiftView]:
    """Entries grouped by shift occurrence, in time order; people by role within each."""
    grouped: dict[tuple[date, str], ShiftView] = {}
    for entry in entries:
        view = grouped.setdefault(
            (entry.day, entry.shift),
            ShiftView(
                day=entry.day,
                shift=entry.shift,
                starts_at=entry.starts_at,
                ends_at=entry.ends_at,
                by_role={},
            ),
        )
        view.by_role.setdefault(entry.role.value, []).append(entry.person)
    for view in grouped.values():
        view.by_role = {role: view.by_role[role] for role in DutyRole if role in view.by_role}
    rank = {name: index for index, name in enumerate(order)}
    return sorted(grouped.values(), key=lambda v: (v.starts_at, rank.get(v.shift, len(rank))))


async def latest_handover(conn: AsyncConnection, before: datetime) -> Handover | None:
    """The newest handover note written at or before ``before``."""
    row = (
        await conn.execute(
            select(
                handovers.c.text,
                handovers.c.at,
                duty_shifts.c.date,
                duty_shifts.c.shift,
                people,
            )
            .join(duty_shifts, duty_shifts.c.id == handovers.c.shift_id)
            .join(people, people.c.id == handovers.c.person_id)
            .where(handovers.c.at <= before)
            .order_by(handovers.c.at.desc(), handovers.c.id.desc())
        )
    ).first()
    if row is None:
        return None
    return Handover(
        text=row.text, person=org.person_from_row(row), at=row.at, day=row.date, shift=row.shift
    )


async def duty_board(rt: Runtime, actor: Actor) -> DutyBoard:
    """/duty: who is on duty now and on today's shifts (local date), and the latest handover.
    For the people the roster concerns and those who plan it (VIEWERS), or anyone on it."""
    now = rt.now()
    today = now.astimezone(rt.settings.zone).date()
    order = list(rt.settings.duty_shifts)
    async with rt.db.read() as conn:
        current = await on_duty(conn, now)
        if not any(actor.has_role(role) for role in VIEWERS) and not any(
            entry.person.id == actor.person.id for entry in current
        ):
            raise NotAllowed(needed=Role.OFFICER, unit="")
        todays = await _entries(conn, duty_shifts.c.date == today)
        handover = await latest_handover(conn, now)
    return DutyBoard(
        now=now,
        today=today,
        current=_views(current, order),
        shifts_today=_views(todays, order),
        handover=handover,
    )


async def record_handover(rt: Runtime, actor: Actor, words: str) -> Handover:
    """/handover: store a note from someone on duty now for the next shift to read."""
    note = words.strip()
    if not note:
        raise BadArguments(usage="duty/usage/handover.j2")
    if len(note) > MAX_HANDOVER:
        raise BadArguments(usage="duty/usage/handover_too_long.j2", limit=MAX_HANDOVER)
    now = rt.now()
    async with rt.db.transaction() as conn:
        mine = [entry for entry in await on_duty(conn, now) if entry.person.id == actor.person.id]
        if not mine:
            raise NotOnDuty()
        # Someone on two overlapping shifts writes for the one that ends first.
        shift = min(mine, key=lambda entry: entry.ends_at)
        await conn.execute(
            insert(handovers).values(
                shift_id=shift.id, person_id=actor.person.id, text=note, at=now
            )
        )
    return Handover(text=note, person=actor.person, at=now, day=shift.day, shift=shift.shift)


# --- shift reminders -----------------------------------------------------------------------


class ReminderStatus(StrEnum):
    SENT = "sent"
    MISSED = "missed"  # noticed more than REMINDER_GRACE after the start (the bot was down)


@dataclass(frozen=True)
class ShiftStart:
    """One shift occurrence whose start has not been handled yet."""

    day: date
    shift: str
    starts_at: datetime


class ReminderProgress(BaseModel):
    """What one pass of the reminder job did."""

    sent: list[str]  # "2026-09-01/day": starts whose reminders were queued in this pass
    missed: list[str]


async def _unhandled_starts(conn: AsyncConnection, now: datetime) -> list[ShiftStart]:
    done = select(duty_reminders.c.id).where(
        and_(
            duty_reminders.c.date == duty_shifts.c.date,
            duty_reminders.c.shift == duty_shifts.c.shift,
        )
    )
    rows = await conn.execute(
        select(duty_shifts.c.date, duty_shifts.c.shift, func.min(duty_shifts.c.starts_at))
        .where(
            duty_shifts.c.replaced_at.is_(None),
            duty_shifts.c.starts_at <= now,
            ~done.exists(),
        )
        .group_by(duty_shifts.c.date, duty_shifts.c.shift)
        .order_by(func.min(duty_shifts.c.starts_at))
    )
    return [ShiftStart(day=row[0], shift=row[1], starts_at=row[2]) for row in rows.all()]


async def _handle_start(rt: Runtime, start: ShiftStart) -> ReminderStatus | None:
    """Remind the people of one shift start (or record it as missed), exactly once; None if
    another pass got there first."""
    now = rt.now()
    status = (
        ReminderStatus.SENT if now - start.starts_at <= REMINDER_GRACE else ReminderStatus.MISSED
    )
    order = list(rt.settings.duty_shifts)
    try:
        async with rt.db.transaction() as conn:
            entries = await _entries(
                conn, duty_shifts.c.date == start.day, duty_shifts.c.shift == start.shift
            )
            if not entries:
                return None  # a new roster replaced this shift since the pass looked
            reached = [entry.person for entry in entries if entry.person.started]
            # The unique key makes a racing second pass fail here and roll back its messages.
            await conn.execute(
                insert(duty_reminders).values(
                    date=start.day,
                    shift=start.shift,
                    starts_at=start.starts_at,
                    status=status,
                    done_at=now,
                    detail={
                        "people": [entry.person.id for entry in entries],
                        "reminded": [person.id for person in reached]
                        if status is ReminderStatus.SENT
                        else [],
                    },
                )
            )
            if status is ReminderStatus.SENT:
                views = _views(entries, order)
                handover = await latest_handover(conn, now)
                for entry in entries:
                    if not entry.person.started:
                        continue  # the bot cannot write first to someone who never started it
                    await notify_person(
                        conn,
                        rt,
                        entry.person,
                        "duty/reminder.j2",
                        topic="duty.reminder",
                        entry=entry,
                        shift=views[0],
                        handover=handover,
                    )
    except IntegrityError:
        return None
    log_event(
        logger,
        "duty_shift_start",
        logging.INFO if status is ReminderStatus.SENT else logging.WARNING,
        day=start.day.isoformat(),
        shift=start.shift,
        status=status.value,
    )
    return status


async def remind_due(rt: Runtime) -> ReminderProgress:
    """Handle every shift start up to now that has not been handled: remind its people, or
    record it as missed if it is more than REMINDER_GRACE in the past."""
    async with rt.db.read() as conn:
        starts = await _unhandled_starts(conn, rt.now())
    progress = ReminderProgress(sent=[], missed=[])
    for start in starts:
        status = await _handle_start(rt, start)
        key = f"{start.day.isoformat()}/{start.shift}"
        if status is ReminderStatus.SENT:
            progress.sent.append(key)
        elif status is ReminderStatus.MISSED:
            progress.missed.append(key)
    return progress
