"""All-clear reports (零报告): once a period (weekly or daily), each class's informant says
"nothing to report"; a report filed for the class in that period counts as well. Before the
period closes the silent informants are reminded; at the close every command group hears which
classes in its scope stayed silent and which have no informant at all.

The period arithmetic is pure (``period_at`` takes ``now``). Every step that sends something is
recorded once per period in ``allclear_rounds``, so the scheduler may run as often, as late or
from as many timers as it likes: nothing is sent twice, and a close missed while the bot was down
is summarised on the next pass.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy import ColumnElement, and_, func, insert, or_, select, union
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.errors import DomainError, StaleButton
from bot.logs import log_event
from bot.outbox import Button, Recipient
from bot.runtime import Runtime
from bot.services import org
from bot.services.models import Actor, Group, Person, Purpose, Role, Unit, UnitKind
from bot.services.notify import notify_group, notify_person
from bot.services.reports import reference
from bot.settings import Settings
from bot.store.tables import allclear_rounds, allclears, groups, people, reports, roles, units

logger = logging.getLogger(__name__)

WEEKLY = "weekly"
DAILY = "daily"
BUTTON = "ac:"  # callback data of the reminder's button: "ac:<unit id>:<period key>"
MAX_LISTED = 30  # classes named per list in a summary; the rest are counted (message size)
_KEY = re.compile(r"^(weekly|daily)-(\d{4}-\d{2}-\d{2})$")


class Step(StrEnum):
    """What the cycle does once per period (the steps recorded in ``allclear_rounds``)."""

    WATCHED = "watched"  # the bot ran during the period, so its close will be summarised
    REMINDED = "reminded"
    SUMMARISED = "summarised"


class NotAnInformant(DomainError):
    """Only a class's informant may send its all-clear."""

    template = "allclear/errors/not_an_informant.j2"


class PeriodClosed(DomainError):
    """A button from a period that has already closed."""

    template = "allclear/errors/closed.j2"


# --- periods (pure) --------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """When periods close and when the silent are reminded, in the school's time zone."""

    kind: str  # WEEKLY or DAILY
    weekday: int | None  # 0 = Monday; None for daily periods
    at: time
    lead: timedelta  # the reminder goes out this long before the close
    zone: ZoneInfo


class Period(BaseModel):
    """One all-clear period: from the previous close (included) to its own close (excluded)."""

    kind: str
    key: str  # "weekly-2026-09-04": the kind and the local date of the close
    opens_at: datetime
    closes_at: datetime

    @property
    def weekly(self) -> bool:
        return self.kind == WEEKLY


def schedule_of(settings: Settings) -> Schedule:
    """The all-clear schedule the settings describe."""
    closing = settings.allclear_closing
    return Schedule(
        kind=settings.allclear_period,
        weekday=closing.weekday,
        at=closing.at,
        lead=settings.allclear_reminder_lead,
        zone=settings.zone,
    )


def _close_on(day: date, schedule: Schedule) -> datetime:
    # Combined in the local zone, so that a close stays at 16:00 local across DST changes.
    return datetime.combine(day, schedule.at, tzinfo=schedule.zone).astimezone(UTC)


def period_at(now: datetime, schedule: Schedule) -> Period:
    """The period ``now`` (timezone-aware) falls in. It closes at the first closing time after
    ``now``: a moment exactly at a close already belongs to the next period."""
    if now.tzinfo is None:
        raise ValueError("period_at needs an aware datetime")
    today = now.astimezone(schedule.zone).date()
    length = timedelta(days=7 if schedule.kind == WEEKLY else 1)
    close_day = today
    if schedule.kind == WEEKLY and schedule.weekday is not None:
        close_day += timedelta(days=(schedule.weekday - today.weekday()) % 7)
    if _close_on(close_day, schedule) <= now:
        close_day += length
    return Period(
        kind=schedule.kind,
        key=f"{schedule.kind}-{close_day.isoformat()}",
        opens_at=_close_on(close_day - length, schedule),
        closes_at=_close_on(close_day, schedule),
    )


def reminder_due_at(period: Period, schedule: Schedule) -> datetime:
    """When the silent informants of ``period`` are reminded."""
    return period.closes_at - schedule.lead


# --- results ---------------------------------------------------------------------------------


class Outcome(StrEnum):
    RECORDED = "recorded"  # this call recorded the all-clear
    ALREADY = "already"  # someone had recorded it earlier in the period
    REPORTED = "reported"  # a report filed in the period already counts for the class


class ClassAnswer(BaseModel):
    """How one class stands after an informant's all-clear."""

    unit: Unit
    outcome: Outcome
    by: Person | None = None  # who had recorded the earlier all-clear
    at: datetime | None = None
    report: str | None = None  # the reference (R-0042) of a report that counts


class Receipt(BaseModel):
    """What an informant is told after /allclear or the reminder's button."""

    period: Period
    classes: list[ClassAnswer]

    @property
    def changed(self) -> bool:
        return any(answer.outcome is Outcome.RECORDED for answer in self.classes)


class Tally(BaseModel):
    """The classes in a scope at a period's close, by how they answered."""

    scope: Unit
    reported: list[Unit]
    silent: list[Unit]  # they have an informant, who sent nothing
    uncovered: list[Unit]  # nobody is the informant

    @property
    def total(self) -> int:
        return len(self.reported) + len(self.silent) + len(self.uncovered)


class Progress(BaseModel):
    """What one pass of the scheduler did."""

    summarised: list[str]  # period keys whose summary was sent in this pass
    reminded: int | None  # reminders queued, or None if no reminder round ran in this pass


# --- reading the board -----------------------------------------------------------------------


def _held_at(moment: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    """An informant role in force at ``moment`` (a datetime or a column)."""
    return and_(
        roles.c.role == Role.INFORMANT,
        roles.c.granted_at <= moment,
        or_(roles.c.revoked_at.is_(None), roles.c.revoked_at > moment),
    )


@dataclass
class _Board:
    """Every class as of a moment: its informants then, and whether it answered the period."""

    classes: list[Unit]  # by path
    informants: dict[int, list[Person]]  # class id → informants in force at the moment
    answered: set[int]

    def tally(self, scope: Unit) -> Tally:
        inside = [unit for unit in self.classes if scope.contains(unit)]
        return Tally(
            scope=scope,
            reported=[u for u in inside if u.id in self.answered],
            silent=[u for u in inside if u.id not in self.answered and u.id in self.informants],
            uncovered=[
                u for u in inside if u.id not in self.answered and u.id not in self.informants
            ],
        )


async def _reports_in(conn: AsyncConnection, period: Period) -> dict[int, int]:
    """Class id → the first report that counts for it in ``period``: one filed for the class, or
    one filed by someone who was the class's informant when they filed it."""
    window = and_(reports.c.created_at >= period.opens_at, reports.c.created_at < period.closes_at)
    for_class = select(reports.c.unit_id.label("unit_id"), reports.c.id.label("report_id")).where(
        window
    )
    by_informant = (
        select(roles.c.unit_id.label("unit_id"), reports.c.id.label("report_id"))
        .join(roles, roles.c.person_id == reports.c.reporter_id)
        .where(window, _held_at(reports.c.created_at))
    )
    counted = union(for_class, by_informant).subquery()
    rows = await conn.execute(
        select(counted.c.unit_id, func.min(counted.c.report_id)).group_by(counted.c.unit_id)
    )
    return {unit_id: report_id for unit_id, report_id in rows.all()}


async def _board(conn: AsyncConnection, period: Period, moment: datetime) -> _Board:
    """The classes as of ``moment``: units marked as classes, and units that have had an
    informant (an informant's unit is a class, even when nobody bound a class group to it)."""
    had_informant = select(roles.c.unit_id).where(
        roles.c.role == Role.INFORMANT, roles.c.granted_at <= moment
    )
    class_ids = (
        (
            await conn.execute(
                select(units.c.id).where(
                    units.c.created_at <= moment,
                    or_(units.c.kind == UnitKind.CLASS, units.c.id.in_(had_informant)),
                )
            )
        )
        .scalars()
        .all()
    )
    classes = sorted(
        [await org.unit_by_id(conn, unit_id) for unit_id in class_ids], key=lambda u: u.path
    )
    informants: dict[int, list[Person]] = {}
    rows = await conn.execute(
        select(roles.c.unit_id, people)
        .join(people, people.c.id == roles.c.person_id)
        .where(_held_at(moment))
        .order_by(people.c.id)
    )
    for row in rows.all():
        informants.setdefault(row.unit_id, []).append(org.person_from_row(row))
    sent = await conn.execute(
        select(allclears.c.unit_id).where(allclears.c.period_key == period.key)
    )
    answered = set(sent.scalars().all()) | set(await _reports_in(conn, period))
    return _Board(classes=classes, informants=informants, answered=answered)


# --- the informant's all-clear ---------------------------------------------------------------


def _informant_classes(actor: Actor) -> list[Unit]:
    """The classes the actor is the informant of (held roles only: a superadmin is nobody's
    informant)."""
    return [grant.unit for grant in actor.grants if grant.role is Role.INFORMANT]


async def _answer(
    conn: AsyncConnection, period: Period, unit: Unit, actor: Actor, now: datetime
) -> ClassAnswer:
    earlier = (
        await conn.execute(
            select(allclears.c.at, people)
            .join(people, people.c.id == allclears.c.person_id)
            .where(allclears.c.unit_id == unit.id, allclears.c.period_key == period.key)
        )
    ).first()
    if earlier is not None:
        by = org.person_from_row(earlier)
        return ClassAnswer(unit=unit, outcome=Outcome.ALREADY, by=by, at=earlier.at)
    counted = (await _reports_in(conn, period)).get(unit.id)
    if counted is not None:
        # A report already says what happened; "nothing to report" would contradict it.
        return ClassAnswer(unit=unit, outcome=Outcome.REPORTED, report=reference(counted))
    await conn.execute(
        insert(allclears).values(
            unit_id=unit.id, period_key=period.key, person_id=actor.person.id, at=now
        )
    )
    return ClassAnswer(unit=unit, outcome=Outcome.RECORDED, by=actor.person, at=now)


async def send_allclear(rt: Runtime, actor: Actor) -> Receipt:
    """Record "nothing to report" for the current period, for every class the actor is the
    informant of; a class that already answered (an all-clear or a report) is left as it is."""
    classes = _informant_classes(actor)
    if not classes:
        raise NotAnInformant()
    now = rt.now()
    period = period_at(now, schedule_of(rt.settings))
    async with rt.db.transaction() as conn:
        answers = [await _answer(conn, period, unit, actor, now) for unit in classes]
    return Receipt(period=period, classes=answers)


async def allclear_from_button(rt: Runtime, actor: Actor, unit_id: int, key: str) -> Receipt:
    """The reminder's button: the same as /allclear, for the one class and period it names.
    Checked again here: the presser must be that class's informant, the period still open."""
    shown = _KEY.match(key)
    if shown is None:
        raise StaleButton()
    unit = next((u for u in _informant_classes(actor) if u.id == unit_id), None)
    if unit is None:
        raise NotAnInformant()
    now = rt.now()
    period = period_at(now, schedule_of(rt.settings))
    if key != period.key:
        if (
            date.fromisoformat(shown.group(2))
            < period.closes_at.astimezone(rt.settings.zone).date()
        ):
            raise PeriodClosed()
        raise StaleButton()
    async with rt.db.transaction() as conn:
        answer = await _answer(conn, period, unit, actor, now)
    return Receipt(period=period, classes=[answer])


def reminder_buttons(rt: Runtime, locale: str, period: Period, unit: Unit) -> list[list[Button]]:
    """The reminder's one button, which records the all-clear for ``unit`` in ``period``."""
    label = rt.renderer.render(locale, "allclear/buttons/all_clear.j2", period=period)
    return [[Button(text=label, action=f"{BUTTON}{unit.id}:{period.key}")]]


# --- the scheduled cycle ---------------------------------------------------------------------


async def _steps_done(conn: AsyncConnection, key: str) -> set[str]:
    rows = await conn.execute(
        select(allclear_rounds.c.step).where(allclear_rounds.c.period_key == key)
    )
    return set(rows.scalars().all())


async def _mark(
    conn: AsyncConnection, period: Period, step: Step, now: datetime, **detail: Any
) -> None:
    """Record that ``step`` was done for ``period``. Its unique key makes a racing second
    transaction fail (and roll back its messages) instead of sending twice."""
    await conn.execute(
        insert(allclear_rounds).values(
            period_key=period.key,
            step=step,
            opens_at=period.opens_at,
            closes_at=period.closes_at,
            done_at=now,
            detail=detail,
        )
    )


async def _command_groups(conn: AsyncConnection) -> list[Group]:
    rows = await conn.execute(
        select(groups.c.channel, groups.c.address).where(
            groups.c.purpose == Purpose.COMMAND,
            groups.c.unit_id.is_not(None),
            groups.c.left_at.is_(None),
        )
    )
    found = [await org.group_at(conn, Recipient(r.channel, r.address)) for r in rows.all()]
    return [group for group in found if group is not None]


async def _summarise(rt: Runtime, period: Period) -> bool:
    """Send ``period``'s summary to every command group with classes in its scope; False if
    another pass already did."""
    now = rt.now()
    async with rt.db.transaction() as conn:
        if Step.SUMMARISED in await _steps_done(conn, period.key):
            return False
        board = await _board(conn, period, period.closes_at)
        sent = 0
        for group in await _command_groups(conn):
            assert group.unit is not None
            tally = board.tally(group.unit)
            if tally.total == 0:
                continue  # a command group for departments only has no classes to hear about
            await notify_group(
                conn,
                rt,
                group,
                "allclear/summary.j2",
                topic="allclear.summary",
                period=period,
                tally=tally,
                listed=MAX_LISTED,
            )
            sent += 1
        school = board.tally(await org.root_unit(conn, now))
        await _mark(
            conn,
            period,
            Step.SUMMARISED,
            now,
            groups=sent,
            classes=school.total,
            reported=len(school.reported),
            silent=len(school.silent),
            uncovered=len(school.uncovered),
        )
    log_event(
        logger, "allclear_summarised", period=period.key, groups=sent, silent=len(school.silent)
    )
    return True


async def _remind(rt: Runtime, period: Period) -> int | None:
    """Remind the informants of every silent class in ``period``, once; None if another pass
    already did. Informants who never opened a chat with the bot cannot be written to."""
    now = rt.now()
    async with rt.db.transaction() as conn:
        if Step.REMINDED in await _steps_done(conn, period.key):
            return None
        board = await _board(conn, period, now)
        reminded = unreachable = 0
        for unit in board.classes:
            if unit.id in board.answered:
                continue
            for person in board.informants.get(unit.id, []):
                if not person.started:
                    unreachable += 1
                    continue
                await notify_person(
                    conn,
                    rt,
                    person,
                    "allclear/reminder.j2",
                    topic="allclear.reminder",
                    buttons=reminder_buttons(rt, person.language(rt.settings.locale), period, unit),
                    period=period,
                    unit=unit,
                )
                reminded += 1
        await _mark(conn, period, Step.REMINDED, now, reminded=reminded, unreachable=unreachable)
    log_event(
        logger, "allclear_reminded", period=period.key, reminded=reminded, unreachable=unreachable
    )
    return reminded


def _stored_period(row: Any) -> Period:
    shown = _KEY.match(row.period_key)
    assert shown is not None, row.period_key
    return Period(
        kind=shown.group(1), key=row.period_key, opens_at=row.opens_at, closes_at=row.closes_at
    )


async def run_due(rt: Runtime) -> Progress:
    """One pass of the cycle at ``rt.now()``: summarise every watched period that has closed,
    start watching the current one, and remind its silent informants once that is due.

    Everything is read from the database, so any number of passes, a restart or a pass after
    a long outage does each step exactly once. A period the bot never ran in (before it was
    installed, say) is never summarised: it would only list every class as silent."""
    now = rt.now()
    schedule = schedule_of(rt.settings)
    current = period_at(now, schedule)
    async with rt.db.read() as conn:
        summarised = select(allclear_rounds.c.period_key).where(
            allclear_rounds.c.step == Step.SUMMARISED
        )
        closed = (
            await conn.execute(
                select(allclear_rounds)
                .where(
                    allclear_rounds.c.step == Step.WATCHED,
                    allclear_rounds.c.closes_at <= now,
                    allclear_rounds.c.period_key.not_in(summarised),
                )
                .order_by(allclear_rounds.c.closes_at)
            )
        ).all()
        done = await _steps_done(conn, current.key)
    progress = Progress(summarised=[], reminded=None)
    for row in closed:
        period = _stored_period(row)
        if await _summarise(rt, period):
            progress.summarised.append(period.key)
    if Step.WATCHED not in done:
        async with rt.db.transaction() as conn:
            if Step.WATCHED not in await _steps_done(conn, current.key):
                await _mark(conn, current, Step.WATCHED, now)
    if Step.REMINDED not in done and now >= reminder_due_at(current, schedule):
        progress.reminded = await _remind(rt, current)
    return progress
