"""Special periods (重点时段): a heightened alert level between two moments.

An admin of the school declares a period (level, start, end, note): holidays and big events put
the campus on 二级防控 (level 2) or 一级防控 (level 1, the highest). While it is in force, the
reminder rules tied to that level (``reminder_rules.alert_level``) run as well; when it ends,
they stop by themselves. The start and the end are announced once to the school's command,
staff and class groups: each announcement is claimed by a conditional UPDATE in the same
transaction as its messages, so two overlapping passes or a restart never send it twice.

Periods may overlap (a one-day level-1 event inside a level-2 holiday week): the highest level
in force wins (``level_at``). A period counts only from the moment it was declared, so declaring
one that "started" at midnight never makes this morning's level-bound reminders due after the
fact. Ending one early before it started cancels it: nothing is announced.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy import ColumnElement, and_, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.errors import DomainError
from bot.logs import log_event
from bot.outbox import Recipient
from bot.runtime import Runtime
from bot.services import org
from bot.services.models import Actor, Group, Purpose
from bot.services.notify import notify_groups
from bot.store.tables import groups, reminder_rules, special_periods

logger = logging.getLogger(__name__)

END = "alr:"  # /alert buttons: "alr:end:<period id>" ends an active period or cancels one ahead
LEVELS = (1, 2)  # 1 = 一级防控 (highest), 2 = 二级防控
MAX_NOTE = 200  # the column's length
MAX_LENGTH = timedelta(days=92)  # longer than a quarter is a standing rule, not a period
HORIZON = timedelta(days=366)  # a period must start within a year
RECENT = timedelta(days=30)  # /alert shows the periods over within this
MAX_LISTED = 10
# Who hears about a period: the duty chat, the guard team and every class (the department
# groups get their orders through their heads, as with other broadcasts).
AUDIENCE = (Purpose.COMMAND, Purpose.STAFF, Purpose.CLASS)
_LEVEL_WORDS = {"1": 1, "2": 2, "一级": 1, "二级": 2, "一": 1, "二": 2}
_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


# --- errors ----------------------------------------------------------------------------------


class Problem(StrEnum):
    """What can be wrong with a declaration (each has words in the templates)."""

    MISSING = "missing"  # too few words after /alert
    LEVEL = "level"  # not 1 or 2
    DATE = "date"  # not a date, or an impossible one ("2026-02-30")
    ORDER = "order"  # the end is not after the start
    PAST = "past"  # the end has already passed
    TOO_LONG = "too_long"
    TOO_FAR = "too_far"
    NOTE = "note"  # empty or too long


class PeriodRefused(DomainError):
    """The declaration cannot be stored as given (``problem``, ``value``); nothing was saved."""

    template = "special_periods/errors/refused.j2"

    def __init__(self, problem: Problem, value: str = "") -> None:
        super().__init__(problem=problem, value=value, max_note=MAX_NOTE, max_days=MAX_LENGTH.days)


# --- the level in force (pure) ---------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """A period as far as the level is concerned: in force from ``starts_at`` (but never before
    ``declared_at``) until ``until`` (the planned end or the early end)."""

    level: int
    starts_at: datetime
    until: datetime
    declared_at: datetime

    def covers(self, moment: datetime) -> bool:
        return self.declared_at <= moment and self.starts_at <= moment < self.until


def level_of(spans: list[Span], moment: datetime) -> int | None:
    """The highest (numerically lowest) level of the spans covering ``moment``; None: normal."""
    return min((span.level for span in spans if span.covers(moment)), default=None)


def allows(spans: list[Span], alert_level: int | None, moment: datetime) -> bool:
    """Whether a reminder rule tied to ``alert_level`` (None: not tied) runs at ``moment``: a
    rule of level 2 runs during level-2 and level-1 periods, one of level 1 only during level 1."""
    if alert_level is None:
        return True
    level = level_of(spans, moment)
    return level is not None and level <= alert_level


def windows(
    spans: list[Span], alert_level: int, since: datetime, until: datetime
) -> list[tuple[datetime, datetime]]:
    """The stretches of (since, until] in which a rule tied to ``alert_level`` runs, as
    (after, up to) pairs: the reminder pass looks for its occurrences only there, so a
    frequent rule that stayed silent for weeks costs nothing and is never behind."""
    tick = timedelta(microseconds=1)
    found = []
    for span in sorted(spans, key=lambda span: span.starts_at):
        if span.level > alert_level:
            continue
        after = max(since, max(span.starts_at, span.declared_at) - tick)
        up_to = min(until, span.until - tick)
        if after < up_to:
            found.append((after, up_to))
    return found


def _until(row: Any) -> datetime:
    """When a stored period stops being in force: its planned end, or the early one."""
    ends_at: datetime = row.ends_at
    return ends_at if row.ended_at is None else min(ends_at, row.ended_at)


def _span(row: Any) -> Span:
    return Span(
        level=row.level, starts_at=row.starts_at, until=_until(row), declared_at=row.created_at
    )


async def spans_between(conn: AsyncConnection, since: datetime, until: datetime) -> list[Span]:
    """Every period in force at some moment of [since, until]."""
    rows = await conn.execute(
        select(special_periods).where(
            special_periods.c.starts_at <= until,
            special_periods.c.ends_at > since,
            or_(special_periods.c.ended_at.is_(None), special_periods.c.ended_at > since),
        )
    )
    return [_span(row) for row in rows.all()]


async def level_at(source: AsyncConnection | Runtime, moment: datetime) -> int | None:
    """The alert level in force at ``moment`` (1 or 2), None outside every special period."""
    if isinstance(source, Runtime):
        async with source.db.read() as conn:
            return await level_at(conn, moment)
    return level_of(await spans_between(source, moment, moment), moment)


# --- reading a declaration -------------------------------------------------------------------


class Declaration(BaseModel):
    """What /alert was asked to declare; the moments are aware, in the school's zone."""

    level: int
    starts_at: datetime
    ends_at: datetime
    note: str


def _day(word: str) -> date | None:
    shown = _DATE.match(word)
    if shown is None:
        return None
    try:
        return date(*(int(part) for part in shown.groups()))
    except ValueError:
        raise PeriodRefused(Problem.DATE, word) from None


def _moment(words: list[str], at: int, zone: ZoneInfo, *, end: bool) -> tuple[datetime, int]:
    """The moment written at ``words[at]`` ("YYYY-MM-DD", optionally followed by "HH:MM") and
    the index after it. A bare date means the start of that day, or for an end its close
    (24:00), so "2026-09-30 2026-10-08" covers both days whole."""
    day = _day(words[at]) if at < len(words) else None
    if day is None:
        raise PeriodRefused(Problem.DATE, words[at] if at < len(words) else "")
    if at + 1 < len(words) and (shown := _HHMM.match(words[at + 1])):
        local = datetime.combine(day, time(int(shown.group(1)), int(shown.group(2))))
        return local.replace(tzinfo=zone), at + 2
    local = datetime.combine(day + timedelta(days=1) if end else day, time())
    return local.replace(tzinfo=zone), at + 1


def parse_declaration(words: list[str], zone: ZoneInfo) -> Declaration:
    """``/alert <level> <first day> [<last day>] <note>`` (days as YYYY-MM-DD, each optionally
    followed by HH:MM); without a last day the period is the first day (or the rest of it)."""
    if len(words) < 3:
        raise PeriodRefused(Problem.MISSING)
    level = _LEVEL_WORDS.get(words[0].strip())
    if level is None:
        raise PeriodRefused(Problem.LEVEL, words[0][:20])
    starts_at, at = _moment(words, 1, zone, end=False)
    if at < len(words) and _day(words[at]) is not None:
        ends_at, at = _moment(words, at, zone, end=True)
    else:
        ends_at = datetime.combine(starts_at.date() + timedelta(days=1), time(), tzinfo=zone)
    return Declaration(
        level=level, starts_at=starts_at, ends_at=ends_at, note=" ".join(words[at:]).strip()
    )


def _check(level: int, starts: datetime, ends: datetime, note: str, now: datetime) -> None:
    if starts.tzinfo is None or ends.tzinfo is None:
        raise ValueError("a special period needs aware datetimes")
    if level not in LEVELS:
        raise PeriodRefused(Problem.LEVEL, str(level))
    if not 0 < len(note) <= MAX_NOTE:
        raise PeriodRefused(Problem.NOTE)
    if ends <= starts:
        raise PeriodRefused(Problem.ORDER)
    if ends <= now:
        raise PeriodRefused(Problem.PAST)
    if ends - starts > MAX_LENGTH:
        raise PeriodRefused(Problem.TOO_LONG)
    if starts > now + HORIZON:
        raise PeriodRefused(Problem.TOO_FAR)


# --- views -----------------------------------------------------------------------------------


class PeriodState(StrEnum):
    UPCOMING = "upcoming"
    ACTIVE = "active"
    OVER = "over"
    CANCELLED = "cancelled"  # ended before it started


class PeriodView(BaseModel):
    """A period as /alert and the announcements show it. ``ends_at`` is the planned end;
    ``ended_at`` an early one. ``first_day``/``last_day`` are set when it covers whole days."""

    id: int
    level: int
    starts_at: datetime
    ends_at: datetime
    ended_at: datetime | None
    note: str
    state: PeriodState
    first_day: date | None
    last_day: date | None


def _view(row: Any, now: datetime, zone: ZoneInfo) -> PeriodView:
    starts_at: datetime = row.starts_at
    ends_at: datetime = row.ends_at
    ended_at: datetime | None = row.ended_at
    until = _until(row)
    if until <= starts_at:
        state = PeriodState.CANCELLED
    elif now < starts_at:
        state = PeriodState.UPCOMING
    elif now < until:
        state = PeriodState.ACTIVE
    else:
        state = PeriodState.OVER
    first, last = starts_at.astimezone(zone), ends_at.astimezone(zone)
    whole = first.time() == time() and last.time() == time()
    return PeriodView(
        id=row.id,
        level=row.level,
        starts_at=starts_at,
        ends_at=ends_at,
        ended_at=ended_at if ended_at is not None and ended_at < ends_at else None,
        note=row.note,
        state=state,
        first_day=first.date() if whole else None,
        last_day=(last - timedelta(days=1)).date() if whole else None,
    )


async def _period(conn: AsyncConnection, rt: Runtime, period_id: int) -> PeriodView | None:
    row = (
        await conn.execute(select(special_periods).where(special_periods.c.id == period_id))
    ).first()
    return None if row is None else _view(row, rt.now(), rt.settings.zone)


async def extra_rules(conn: AsyncConnection, level: int | None) -> list[str]:
    """The names of the reminder rules that run only because ``level`` is in force."""
    if level is None:
        return []
    rows = await conn.execute(
        select(reminder_rules.c.name)
        .where(
            reminder_rules.c.alert_level >= level,
            reminder_rules.c.deleted_at.is_(None),
            reminder_rules.c.paused.is_(False),
        )
        .order_by(reminder_rules.c.alert_level, reminder_rules.c.name)
    )
    return list(rows.scalars().all())


class Overview(BaseModel):
    """/alert: the level now, the rules it adds, and the periods in force, ahead and just over."""

    level: int | None
    extra_rules: list[str]
    active: list[PeriodView]
    upcoming: list[PeriodView]
    recent: list[PeriodView]


async def overview(rt: Runtime, actor: Actor) -> Overview:
    """The current level and the periods around now (school admins only)."""
    now = rt.now()
    zone = rt.settings.zone
    async with rt.db.read() as conn:
        actor.require_admin(await org.root_unit(conn, now))
        rows = (
            await conn.execute(
                select(special_periods)
                .where(special_periods.c.ends_at > now - RECENT)
                .order_by(special_periods.c.starts_at, special_periods.c.id)
            )
        ).all()
        views = [_view(row, now, zone) for row in rows]
        level = level_of([_span(row) for row in rows], now)
        extra = await extra_rules(conn, level)
    recent = [v for v in views if v.state in (PeriodState.OVER, PeriodState.CANCELLED)]
    recent.sort(key=lambda v: v.ended_at or v.ends_at, reverse=True)
    return Overview(
        level=level,
        extra_rules=extra,
        active=[v for v in views if v.state is PeriodState.ACTIVE][:MAX_LISTED],
        upcoming=[v for v in views if v.state is PeriodState.UPCOMING][:MAX_LISTED],
        recent=recent[:5],
    )


# --- declaring and ending --------------------------------------------------------------------


async def declare(
    rt: Runtime, actor: Actor, level: int, starts: datetime, ends: datetime, note: str
) -> PeriodView:
    """Store a special period (school admins only); PeriodRefused explains bad input and
    nothing is saved. If it is already in force, its announcement goes out at once."""
    now = rt.now()
    note = note.strip()
    async with rt.db.transaction() as conn:
        actor.require_admin(await org.root_unit(conn, now))
        _check(level, starts, ends, note, now)
        period_id = (
            await conn.execute(
                insert(special_periods)
                .values(
                    level=level,
                    starts_at=starts,
                    ends_at=ends,
                    note=note,
                    created_by=actor.person.id,
                    created_at=now,
                )
                .returning(special_periods.c.id)
            )
        ).scalar_one()
        await org.record(
            conn,
            now,
            actor,
            "special_period_declared",
            f"special_period:{period_id}",
            level=level,
            starts_at=starts.isoformat(),
            ends_at=ends.isoformat(),
        )
        view = await _period(conn, rt, period_id)
    assert view is not None
    log_event(logger, "special_period_declared", period=period_id, alert=level)
    await announce_due(rt)
    return view


async def declare_words(rt: Runtime, actor: Actor, words: list[str]) -> PeriodView:
    """/alert with arguments: the caller must be an admin before their words are even read."""
    async with rt.db.read() as conn:
        actor.require_admin(await org.root_unit(conn, rt.now()))
    wanted = parse_declaration(words, rt.settings.zone)
    return await declare(rt, actor, wanted.level, wanted.starts_at, wanted.ends_at, wanted.note)


class EndOutcome(StrEnum):
    ENDED = "ended"  # was in force; the end is announced
    CANCELLED = "cancelled"  # had not started; nothing was ever announced
    ALREADY = "already"  # over, cancelled or unknown: nothing changed


class EndReceipt(BaseModel):
    outcome: EndOutcome
    period: PeriodView | None  # None: no such period


async def end_early(rt: Runtime, actor: Actor, period_id: int) -> EndReceipt:
    """End a period now (school admins only): one in force ends and its end is announced at
    once; one still ahead is cancelled. A period already over is left as it is."""
    now = rt.now()
    async with rt.db.transaction() as conn:
        actor.require_admin(await org.root_unit(conn, now))
        before = await _period(conn, rt, period_id)
        if before is None or before.state not in (PeriodState.ACTIVE, PeriodState.UPCOMING):
            return EndReceipt(outcome=EndOutcome.ALREADY, period=before)
        await conn.execute(
            update(special_periods)
            .where(special_periods.c.id == period_id, special_periods.c.ended_at.is_(None))
            .values(ended_at=now)
        )
        await org.record(conn, now, actor, "special_period_ended", f"special_period:{period_id}")
        after = await _period(conn, rt, period_id)
    outcome = EndOutcome.ENDED if before.state is PeriodState.ACTIVE else EndOutcome.CANCELLED
    log_event(logger, "special_period_ended", period=period_id, outcome=outcome.value)
    await announce_due(rt)
    return EndReceipt(outcome=outcome, period=after)


# --- announcements ---------------------------------------------------------------------------


class Announced(BaseModel):
    started: list[int]  # period ids
    ended: list[int]


async def _audience(conn: AsyncConnection) -> list[Group]:
    rows = await conn.execute(
        select(groups.c.channel, groups.c.address)
        .where(groups.c.purpose.in_([p.value for p in AUDIENCE]), groups.c.left_at.is_(None))
        .order_by(groups.c.id)
    )
    found = []
    for row in rows.all():
        group = await org.group_at(conn, Recipient(row.channel, row.address))
        if group is not None:
            found.append(group)
    return found


def _start_due(now: datetime) -> list[ColumnElement[bool]]:
    return [
        special_periods.c.started_sent_at.is_(None),
        special_periods.c.starts_at <= now,
        special_periods.c.ends_at > now,
        or_(special_periods.c.ended_at.is_(None), special_periods.c.ended_at > now),
    ]


def _end_due(now: datetime) -> list[ColumnElement[bool]]:
    # Only a period whose start was announced has an end to announce: one that passed
    # entirely while the bot was down, or was cancelled ahead, stays silent.
    return [
        special_periods.c.started_sent_at.is_not(None),
        special_periods.c.ended_sent_at.is_(None),
        or_(special_periods.c.ends_at <= now, special_periods.c.ended_at <= now),
    ]


async def _announce(rt: Runtime, period_id: int, *, start: bool) -> bool:
    """Claim and send one announcement; False if another pass claimed it first (or it is no
    longer due). The conditional UPDATE is the claim, in the transaction of the messages."""
    now = rt.now()
    claim, due = (
        (special_periods.c.started_sent_at, _start_due(now))
        if start
        else (special_periods.c.ended_sent_at, _end_due(now))
    )
    async with rt.db.transaction() as conn:
        claimed = (
            await conn.execute(
                update(special_periods)
                .where(special_periods.c.id == period_id, and_(*due))
                .values({claim: now})
            )
        ).rowcount
        if claimed != 1:
            return False
        period = await _period(conn, rt, period_id)
        assert period is not None
        level = level_of(await spans_between(conn, now, now), now)
        if start:
            template, topic = "special_periods/started.j2", "special_periods.started"
            changes = await extra_rules(conn, period.level)
        else:
            template, topic = "special_periods/ended.j2", "special_periods.ended"
            still = set(await extra_rules(conn, level))
            changes = [name for name in await extra_rules(conn, period.level) if name not in still]
        audience = await _audience(conn)
        await notify_groups(
            conn, rt, audience, template, topic=topic, period=period, level=level, rules=changes
        )
    log_event(
        logger,
        "special_period_started" if start else "special_period_over",
        period=period_id,
        groups=len(audience),
    )
    return True


async def announce_due(rt: Runtime) -> Announced:
    """One pass at ``rt.now()``: announce every period that has started and every one that has
    ended (at its end or early) and was not announced yet, each exactly once."""
    now = rt.now()
    async with rt.db.read() as conn:
        starting = (
            await conn.execute(
                select(special_periods.c.id)
                .where(*_start_due(now))
                .order_by(special_periods.c.starts_at)
            )
        ).scalars()
        starting_ids = list(starting.all())
        ending = (
            await conn.execute(
                select(special_periods.c.id)
                .where(*_end_due(now))
                .order_by(special_periods.c.ends_at)
            )
        ).scalars()
        ending_ids = list(ending.all())
    done = Announced(started=[], ended=[])
    for period_id in ending_ids:  # ends first: the next start's message states the level after
        if await _announce(rt, period_id, start=False):
            done.ended.append(period_id)
    for period_id in starting_ids:
        if await _announce(rt, period_id, start=True):
            done.started.append(period_id)
    return done
