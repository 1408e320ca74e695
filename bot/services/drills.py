"""Drills, trainings, dispute-review meetings and publicity events (演练 / 培训 / 会议 / 宣传).

One record type for all four (``kind``), since the assessment counts each of them: an officer
or admin plans one (kind, topic, time, place, target groups), may postpone or cancel it, and
records that it took place with the number of participants, a summary and photos — the
evidence the compliance calendar counts (``activities_done``). One held but never planned here
(a dispute-review meeting, a training) is recorded after the fact (``record_past``): done at
once, with no reminders and no notices, and its history says who entered it and when.

The lead-time reminders (7 days, 1 day and 1 hour before) are an ordinary one-off reminder
rule written in the same transaction as the activity, so the reminders pass
(``reminders.run_due``) sends each exactly once, survives restarts, and shows the rule in
/reminders like any other. Postponing moves the rule; cancelling or recording it done retires
the rule (``deleted_at``), so nothing more is sent for it. Every change is an event.
"""

from __future__ import annotations

import html
import re
import secrets
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, computed_field
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.errors import BadArguments, DomainError, NotAllowed
from bot.runtime import Runtime
from bot.services import org, recurrence, reminders
from bot.services.models import Actor, Group, Person, Purpose, Role, Unit
from bot.services.notify import notify_groups
from bot.services.reports import PhotoIn
from bot.store.tables import activities, activity_events, activity_photos, reminder_rules

REF_PREFIX = "D-"
MAX_TITLE = 200  # the columns' lengths
MAX_PLACE = 200
MAX_SUMMARY = 2000
MAX_REASON = 500
MAX_PHOTOS = 20
MAX_PARTICIPANTS = 100_000
MAX_AHEAD = timedelta(days=366)  # a plan further out is a typo, not a plan
# How far back an activity may be recorded after the fact: 92 days, the longest quarter. That
# covers the current assessment period (a quarter, the commonest one) and reaches a quarter
# into the previous one, whose evidence is still being gathered early in a quarter. An older
# event belongs to an assessment already closed; entering it now would rewrite that record.
MAX_BEHIND = timedelta(days=92)
HISTORY = 10  # /drills shows this many past activities
# The reminders before an activity, in seconds, as stored on its reminder rule.
LEADS = (7 * 86400, 86400, 3600)
ORGANISERS = (Role.ADMIN, Role.OFFICER)
# Who sees the calendar: the security office, the leaders, department heads and the guards who
# take part. Informants (students) are told through their class groups instead.
VIEWERS = (Role.ADMIN, Role.OFFICER, Role.LEADER, Role.UNIT_HEAD, Role.GUARD)
# Where an activity's reminders may go (a command group is for alerts, not for invitations).
TARGET_PURPOSES = (Purpose.CLASS, Purpose.STAFF, Purpose.UNIT)
_WHEN = re.compile(
    r"^\s*(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:\s+|T)(\d{1,2})[:：](\d{2})\s*$", re.ASCII
)
_COUNT = re.compile(r"^\s*([0-9]+)\s*人?\s*$")


class Kind(StrEnum):
    DRILL = "drill"  # 演练
    TRAINING = "training"  # 培训
    MEETING = "meeting"  # 会议 (e.g. the quarterly dispute review)
    PUBLICITY = "publicity"  # 宣传


class Topic(StrEnum):
    FIRE = "fire"  # 消防疏散
    ANTI_TERROR = "anti_terror"  # 反恐防暴
    EMERGENCY = "emergency"  # 应急
    TRAFFIC = "traffic"  # 交通
    DISPUTE = "dispute"  # 矛盾纠纷 (review meetings)
    OTHER = "other"


class State(StrEnum):
    PLANNED = "planned"  # also after a postponement
    DONE = "done"
    CANCELLED = "cancelled"


class Action(StrEnum):
    """What an event records (``activity_events.action``)."""

    PLANNED = "planned"
    POSTPONED = "postponed"
    CANCELLED = "cancelled"
    DONE = "done"
    PHOTO = "photo"
    RECORDED = "recorded"  # entered after the fact, already done (``detail.held``: when)


# --- errors ----------------------------------------------------------------------------------


class UnknownActivity(DomainError):
    template = "drills/errors/unknown.j2"


class WrongState(DomainError):
    """The step does not apply to the activity as it is now; ``activity`` says how it is."""

    template = "drills/errors/wrong_state.j2"


class BadWhen(DomainError):
    """Not a date and time, or an impossible one ("2026-02-30 09:00")."""

    template = "drills/errors/bad_when.j2"


class InThePast(DomainError):
    template = "drills/errors/in_the_past.j2"


class TooFarAhead(DomainError):
    template = "drills/errors/too_far_ahead.j2"


class NotHeldYet(DomainError):
    """Recording after the fact a time still ahead: that is planning."""

    template = "drills/errors/not_held_yet.j2"


class TooLongAgo(DomainError):
    """Recording after the fact a time more than ``MAX_BEHIND`` ago."""

    template = "drills/errors/too_long_ago.j2"


class SameTime(DomainError):
    template = "drills/errors/same_time.j2"


class BadParticipants(DomainError):
    template = "drills/errors/bad_participants.j2"


class Empty(DomainError):
    """A required text (``what``: place or summary) is empty."""

    template = "drills/errors/empty.j2"


class TooLong(DomainError):
    template = "drills/errors/too_long.j2"


class NoTargetGroups(DomainError):
    """The chosen targets match no bound group: nobody would be reminded."""

    template = "drills/errors/no_target_groups.j2"


# --- models ----------------------------------------------------------------------------------


class ActivityDraft(BaseModel):
    """What the organiser has chosen so far (the guided flow fills it step by step)."""

    kind: Kind = Kind.DRILL
    topic: Topic | None = None
    when: datetime | None = None  # aware
    place: str = ""
    purpose: Purpose = Purpose.CLASS
    unit: str = ""  # a unit path; "" is the whole school
    title: str = ""  # "" gives the name of the kind and topic


class ActivityPhoto(BaseModel):
    id: int
    file_id: str
    path: str | None


class Activity(BaseModel):
    id: int
    ref: str
    kind: Kind
    topic: Topic
    title: str
    place: str
    planned_at: datetime
    state: State
    target_purpose: Purpose | None
    target_unit: Unit
    reminder_rule_id: int | None
    created_at: datetime
    done_at: datetime | None
    participants: int | None
    summary: str | None
    photos: list[ActivityPhoto]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def photo_count(self) -> int:
        return len(self.photos)


class Event(BaseModel):
    at: datetime
    actor: Person | None
    action: Action
    detail: dict[str, Any]


class ActivityView(BaseModel):
    activity: Activity
    events: list[Event]


class Listing(BaseModel):
    """/drills: what is coming (soonest first) and what happened lately (latest first)."""

    upcoming: list[Activity]
    history: list[Activity]


class ReminderTime(BaseModel):
    """One lead-time reminder as planned: ``sent`` False if its time had passed at planning."""

    lead: int  # seconds before the activity
    at: datetime
    sent: bool


class TargetCheck(BaseModel):
    """Where the reminders would go."""

    purpose: Purpose
    unit: Unit
    groups: list[Group]


# --- parsing ---------------------------------------------------------------------------------


def reference(activity_id: int) -> str:
    """The short code people see: D-0003."""
    return f"{REF_PREFIX}{activity_id:04d}"


def parse_reference(text: str) -> int:
    """The id behind "D-0003" (also "d3", "3"); UnknownActivity otherwise."""
    value = text.strip().upper().removeprefix(REF_PREFIX).removeprefix("D")
    if not value.isascii() or not value.isdigit() or int(value) < 1:
        raise UnknownActivity(ref=text)
    return int(value)


def parse_moment(text: str, zone: ZoneInfo) -> datetime:
    """ "2026-12-10 15:00" in the school's zone (also "2026/12/10 15：00"), as an aware UTC
    moment, past or ahead; BadWhen if it is not a date and time that exists."""
    shown = _WHEN.match(text)
    if shown is None:
        raise BadWhen(text=text)
    year, month, day, hour, minute = (int(part) for part in shown.groups())
    try:
        return datetime(year, month, day, hour, minute, tzinfo=zone).astimezone(UTC)
    except ValueError:
        raise BadWhen(text=text) from None


def parse_when(text: str, now: datetime, zone: ZoneInfo) -> datetime:
    """A time to plan for: ``parse_moment``, lying ahead, within a year."""
    moment = parse_moment(text, zone)
    check_ahead(moment, now)
    return moment


def check_ahead(moment: datetime, now: datetime) -> None:
    """A time one may plan for: ahead, within a year."""
    if moment <= now:
        raise InThePast(when=moment)
    if moment - now > MAX_AHEAD:
        raise TooFarAhead(when=moment, days=MAX_AHEAD.days)


def check_held(moment: datetime, now: datetime) -> None:
    """A time one may record an activity at after the fact: past, within ``MAX_BEHIND``."""
    if moment > now:
        raise NotHeldYet(when=moment)
    if now - moment > MAX_BEHIND:
        raise TooLongAgo(when=moment, days=MAX_BEHIND.days)


def check_summary(text: str) -> str:
    """A summary as it will be stored (trimmed); Empty or TooLong otherwise."""
    return _text(text, MAX_SUMMARY, "summary")


def parse_participants(text: str) -> int:
    """How many took part: a whole number from 1 (also "120人")."""
    found = _COUNT.match(text)
    if found is None or not 1 <= int(found.group(1)) <= MAX_PARTICIPANTS:
        raise BadParticipants(text=text[:40], most=MAX_PARTICIPANTS)
    return int(found.group(1))


def _text(value: str, limit: int, what: str) -> str:
    cleaned = value.strip()
    if not cleaned:
        raise Empty(what=what)
    if len(cleaned) > limit:
        raise TooLong(what=what, limit=limit, length=len(cleaned))
    return cleaned


def reminder_times(planned_at: datetime, now: datetime) -> list[ReminderTime]:
    """The lead-time reminders of an activity at ``planned_at`` planned at ``now``: one whose
    time has already passed is not sent (the rule plans from ``now``)."""
    moments = [(lead, planned_at - timedelta(seconds=lead)) for lead in LEADS]
    return [ReminderTime(lead=lead, at=at, sent=at > now) for lead, at in moments]


# --- who may ---------------------------------------------------------------------------------


def may_organise(actor: Actor, unit: Unit | None = None) -> bool:
    """An officer or admin (over ``unit`` if given) plans, moves, cancels and records."""
    return any(actor.has_role(role, unit) for role in ORGANISERS)


def _require_organiser(actor: Actor, unit: Unit) -> None:
    if not may_organise(actor, unit):
        raise NotAllowed(needed=Role.OFFICER, unit=unit.path)


def home_unit(actor: Actor) -> str:
    """The unit (path) an activity recorded after the fact belongs to when nobody chose one:
    the widest the actor organises for, the whole school for the security office. It only
    decides who may change the record later; nobody is reminded or told."""
    scopes = [grant.unit for grant in actor.grants if grant.role in ORGANISERS]
    if actor.superadmin or not scopes:
        return ""  # someone who organises nowhere is refused when saving
    return min(scopes, key=lambda unit: (unit.id_path.count("/"), unit.path)).path


def may_view(actor: Actor) -> bool:
    return any(actor.has_role(role) for role in VIEWERS)


# --- reading ---------------------------------------------------------------------------------


async def _activities_from_rows(conn: AsyncConnection, rows: list[Row[Any]]) -> list[Activity]:
    if not rows:
        return []
    unit_map = {uid: await org.unit_by_id(conn, uid) for uid in {r.target_unit_id for r in rows}}
    photo_rows = (
        await conn.execute(
            select(activity_photos)
            .where(activity_photos.c.activity_id.in_([r.id for r in rows]))
            .order_by(activity_photos.c.id)
        )
    ).all()
    photos: dict[int, list[ActivityPhoto]] = {r.id: [] for r in rows}
    for p in photo_rows:
        photos[p.activity_id].append(ActivityPhoto(id=p.id, file_id=p.file_id, path=p.path))
    return [
        Activity(
            id=r.id,
            ref=r.ref,
            kind=Kind(r.kind),
            topic=Topic(r.topic),
            title=r.title,
            place=r.place,
            planned_at=r.planned_at,
            state=State(r.state),
            target_purpose=Purpose(r.target_purpose) if r.target_purpose else None,
            target_unit=unit_map[r.target_unit_id],
            reminder_rule_id=r.reminder_rule_id,
            created_at=r.created_at,
            done_at=r.done_at,
            participants=r.participants,
            summary=r.summary,
            photos=photos[r.id],
        )
        for r in rows
    ]


async def _load(conn: AsyncConnection, activity_id: int) -> Activity:
    row = (await conn.execute(select(activities).where(activities.c.id == activity_id))).first()
    if row is None:
        raise UnknownActivity(ref=reference(activity_id))
    return (await _activities_from_rows(conn, [row]))[0]


async def _event(
    conn: AsyncConnection,
    activity_id: int,
    now: datetime,
    actor: Actor | None,
    action: Action,
    **detail: Any,
) -> None:
    await conn.execute(
        insert(activity_events).values(
            activity_id=activity_id,
            actor_id=actor.person.id if actor else None,
            at=now,
            action=action,
            detail=detail,
        )
    )


async def _tell_targets(
    conn: AsyncConnection, rt: Runtime, activity: Activity, template: str, **context: Any
) -> None:
    """The activity's target groups (as bound now), once, in the caller's transaction."""
    found = await reminders.targets(conn, activity.target_unit, activity.target_purpose, None)
    await notify_groups(
        conn,
        rt,
        found.groups,
        template,
        topic=f"drills.{template.split('/')[-1][:-3]}",
        activity=activity,
        **context,
    )


# --- planning --------------------------------------------------------------------------------


async def _targets(
    conn: AsyncConnection, actor: Actor, purpose: Purpose, path: str, now: datetime
) -> TargetCheck:
    if purpose not in TARGET_PURPOSES:
        raise NoTargetGroups(purpose=purpose, unit=path)
    unit = await org.find_unit(conn, path, now)
    _require_organiser(actor, unit)
    found = await reminders.targets(conn, unit, purpose, None)
    if not found.groups:
        raise NoTargetGroups(purpose=purpose, unit=unit.path)  # nobody would be reminded
    return TargetCheck(purpose=purpose, unit=unit, groups=found.groups)


async def check_targets(rt: Runtime, actor: Actor, purpose: Purpose, path: str) -> TargetCheck:
    """Where the reminders of an activity for ``purpose`` groups under ``path`` would go; the
    actor must be able to organise for that unit, and at least one group must match."""
    async with rt.db.read() as conn:
        return await _targets(conn, actor, purpose, path, rt.now())


def _braces(text: str) -> str:
    """User text inside a reminder rule's text, which is a str.format template."""
    return text.replace("{", "{{").replace("}", "}}")


def _rule_text(rt: Runtime, kind: Kind, topic: Topic, title: str, place: str, ref: str) -> str:
    """The rule's text in the school's language, with {date} {time} {weekday} {lead} left for
    the reminders pass to fill in."""
    rendered = rt.renderer.render(
        rt.settings.locale,
        "drills/reminder_text.j2",
        kind=kind,
        topic=topic,
        title=_braces(title),
        place=_braces(place),
        ref=ref,
    )
    # The renderer escapes for Telegram HTML; a rule's text is plain and the broadcast
    # template escapes it when it is sent, so undo the first escaping here.
    text = html.unescape(rendered)
    assert reminders.check_text(text) is None, text
    return text


def default_title(rt: Runtime, kind: Kind, topic: Topic) -> str:
    """The name of an activity nobody gave a title: "消防疏散演练"."""
    return rt.renderer.render(rt.settings.locale, "drills/title.j2", kind=kind, topic=topic)


def _once(planned_at: datetime, zone: ZoneInfo) -> dict[str, Any]:
    at = planned_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    return recurrence.Schedule(kind="once", at=at).model_dump()


async def plan(rt: Runtime, actor: Actor, draft: ActivityDraft) -> Activity:
    """Put an activity on the calendar with its lead-time reminders to the target groups
    (an officer or admin over the target unit); committed when this returns."""
    if draft.topic is None or draft.when is None:
        raise BadArguments(usage="drills/usage.j2")
    place = _text(draft.place, MAX_PLACE, "place")
    now = rt.now()
    check_ahead(draft.when, now)
    title = (
        _text(draft.title, MAX_TITLE, "title")
        if draft.title.strip()
        else default_title(rt, draft.kind, draft.topic)
    )
    async with rt.db.transaction() as conn:
        found = await _targets(conn, actor, draft.purpose, draft.unit, now)
        unit = found.unit
        # The ref is the id, known only after the insert: a random placeholder meanwhile
        # keeps the unique column happy; nobody sees it outside this transaction.
        activity_id = (
            await conn.execute(
                insert(activities).values(
                    ref=f"new-{secrets.token_hex(6)}",
                    kind=draft.kind,
                    topic=draft.topic,
                    title=title,
                    place=place,
                    planned_at=draft.when,
                    state=State.PLANNED,
                    target_purpose=draft.purpose,
                    target_unit_id=unit.id,
                    created_by=actor.person.id,
                    created_at=now,
                    updated_at=now,
                )
            )
        ).inserted_primary_key[0]
        ref = reference(activity_id)
        rule_id = (
            await conn.execute(
                insert(reminder_rules).values(
                    name=f"{ref} {title}"[: reminders.MAX_NAME],
                    text=_rule_text(rt, draft.kind, draft.topic, title, place, ref),
                    schedule=_once(draft.when, rt.settings.zone),
                    leads=list(LEADS),
                    target_purpose=draft.purpose,
                    target_unit_id=unit.id,
                    target_role=None,
                    ask_ack=False,
                    follow_up_s=None,
                    paused=False,
                    created_by=actor.person.id,
                    created_at=now,
                    updated_at=now,
                    # Leads whose time has already passed are not sent after the fact.
                    planned_from=now,
                )
            )
        ).inserted_primary_key[0]
        await conn.execute(
            update(activities)
            .where(activities.c.id == activity_id)
            .values(ref=ref, reminder_rule_id=rule_id)
        )
        await _event(
            conn,
            activity_id,
            now,
            actor,
            Action.PLANNED,
            at=draft.when.isoformat(),
            groups=[g.id for g in found.groups],
        )
        return await _load(conn, activity_id)


async def _for_change(
    conn: AsyncConnection, actor: Actor, activity_id: int, *states: State
) -> Activity:
    activity = await _load(conn, activity_id)
    _require_organiser(actor, activity.target_unit)
    if activity.state not in states:
        raise WrongState(activity=activity)
    return activity


async def for_step(rt: Runtime, actor: Actor, activity_id: int, state: State) -> Activity:
    """The activity if ``actor`` may act on it and it is in ``state`` (checked before a guided
    step starts, and again when it is saved)."""
    async with rt.db.read() as conn:
        return await _for_change(conn, actor, activity_id, state)


async def _retire_rule(conn: AsyncConnection, activity: Activity, now: datetime) -> None:
    """No more reminders for an activity that was cancelled or has taken place."""
    if activity.reminder_rule_id is not None:
        await conn.execute(
            update(reminder_rules)
            .where(
                reminder_rules.c.id == activity.reminder_rule_id,
                reminder_rules.c.deleted_at.is_(None),
            )
            .values(deleted_at=now, updated_at=now)
        )


async def postpone(
    rt: Runtime, actor: Actor, activity_id: int, when: datetime, reason: str = ""
) -> Activity:
    """Move a planned activity: its reminders are planned afresh for the new time (those
    already sent stay sent), and the target groups are told once."""
    note = _text(reason, MAX_REASON, "reason") if reason.strip() else ""
    now = rt.now()
    check_ahead(when, now)
    async with rt.db.transaction() as conn:
        activity = await _for_change(conn, actor, activity_id, State.PLANNED)
        if when == activity.planned_at:
            raise SameTime(activity=activity)
        await conn.execute(
            update(activities)
            .where(activities.c.id == activity_id)
            .values(planned_at=when, updated_at=now)
        )
        if activity.reminder_rule_id is not None:
            # A rule an admin deleted or paused by hand stays so: only its time moves.
            await conn.execute(
                update(reminder_rules)
                .where(reminder_rules.c.id == activity.reminder_rule_id)
                .values(schedule=_once(when, rt.settings.zone), planned_from=now, updated_at=now)
            )
        await _event(
            conn,
            activity_id,
            now,
            actor,
            Action.POSTPONED,
            old=activity.planned_at.isoformat(),
            new=when.isoformat(),
            reason=note,
        )
        moved = await _load(conn, activity_id)
        await _tell_targets(
            conn, rt, moved, "drills/postponed_notice.j2", old=activity.planned_at, reason=note
        )
        return moved


async def cancel(rt: Runtime, actor: Actor, activity_id: int, reason: str = "") -> Activity:
    """Call off a planned activity: no more reminders, and the target groups are told once.
    The record stays (a cancelled drill is part of the history too)."""
    note = _text(reason, MAX_REASON, "reason") if reason.strip() else ""
    now = rt.now()
    async with rt.db.transaction() as conn:
        activity = await _for_change(conn, actor, activity_id, State.PLANNED)
        await conn.execute(
            update(activities)
            .where(activities.c.id == activity_id)
            .values(state=State.CANCELLED, updated_at=now)
        )
        await _retire_rule(conn, activity, now)
        await _event(conn, activity_id, now, actor, Action.CANCELLED, reason=note)
        cancelled = await _load(conn, activity_id)
        await _tell_targets(conn, rt, cancelled, "drills/cancelled_notice.j2", reason=note)
        return cancelled


async def record_done(
    rt: Runtime, actor: Actor, activity_id: int, participants: int, summary: str
) -> Activity:
    """Record that a planned activity took place: how many took part and what happened (the
    evidence the assessment counts). It counts as done at its planned time, or now if it
    took place early; any reminders still ahead are dropped."""
    if not 1 <= participants <= MAX_PARTICIPANTS:
        raise BadParticipants(text=str(participants), most=MAX_PARTICIPANTS)
    text = _text(summary, MAX_SUMMARY, "summary")
    now = rt.now()
    async with rt.db.transaction() as conn:
        activity = await _for_change(conn, actor, activity_id, State.PLANNED)
        # Recorded the day after a drill on the last day of a quarter, it still counts for
        # that quarter: it took place at its planned time. Not a drill planned long ago,
        # though: like a record after the fact, it may not rewrite a closed assessment.
        done_at = min(activity.planned_at, now)
        check_held(done_at, now)
        await conn.execute(
            update(activities)
            .where(activities.c.id == activity_id)
            .values(
                state=State.DONE,
                done_at=done_at,
                done_by=actor.person.id,
                participants=participants,
                summary=text,
                updated_at=now,
            )
        )
        await _retire_rule(conn, activity, now)
        await _event(
            conn,
            activity_id,
            now,
            actor,
            Action.DONE,
            done_at=done_at.isoformat(),
            participants=participants,
        )
        return await _load(conn, activity_id)


async def record_past(
    rt: Runtime, actor: Actor, draft: ActivityDraft, participants: int, summary: str
) -> Activity:
    """Record an activity that took place at ``draft.when`` but was never planned here (a
    dispute-review meeting, a training): stored done at that time, so the compliance calendar
    counts it, by an officer or admin over ``draft.unit``. No reminder rule and no notices:
    it is over. Its one event says who entered it and when; photos follow with add_photos."""
    if draft.topic is None or draft.when is None:
        raise BadArguments(usage="drills/usage.j2")
    if not 1 <= participants <= MAX_PARTICIPANTS:
        raise BadParticipants(text=str(participants), most=MAX_PARTICIPANTS)
    place = _text(draft.place, MAX_PLACE, "place")
    text = check_summary(summary)
    now = rt.now()
    check_held(draft.when, now)
    title = (
        _text(draft.title, MAX_TITLE, "title")
        if draft.title.strip()
        else default_title(rt, draft.kind, draft.topic)
    )
    async with rt.db.transaction() as conn:
        unit = await org.find_unit(conn, draft.unit, now)
        _require_organiser(actor, unit)
        activity_id = (
            await conn.execute(
                insert(activities).values(
                    ref=f"new-{secrets.token_hex(6)}",  # as in plan: the id is not known yet
                    kind=draft.kind,
                    topic=draft.topic,
                    title=title,
                    place=place,
                    planned_at=draft.when,
                    state=State.DONE,
                    target_purpose=None,  # nobody was reminded
                    target_unit_id=unit.id,
                    created_by=actor.person.id,
                    created_at=now,
                    updated_at=now,
                    done_at=draft.when,
                    done_by=actor.person.id,
                    participants=participants,
                    summary=text,
                )
            )
        ).inserted_primary_key[0]
        await conn.execute(
            update(activities)
            .where(activities.c.id == activity_id)
            .values(ref=reference(activity_id))
        )
        # One event, not "planned" then "done": it was never planned here. Its time and actor
        # are the entry (now, by whom); ``held`` is when the activity took place.
        await _event(
            conn,
            activity_id,
            now,
            actor,
            Action.RECORDED,
            held=draft.when.isoformat(),
            participants=participants,
        )
        return await _load(conn, activity_id)


async def add_photos(
    rt: Runtime, actor: Actor, activity_id: int, photos: list[PhotoIn]
) -> Activity:
    """Photos of an activity that took place (evidence), by those who may record it."""
    now = rt.now()
    async with rt.db.transaction() as conn:
        activity = await _for_change(conn, actor, activity_id, State.DONE)
        if activity.photo_count + len(photos) > MAX_PHOTOS:
            raise TooLong(
                what="photos", limit=MAX_PHOTOS, length=activity.photo_count + len(photos)
            )
        for photo in photos:
            await conn.execute(
                insert(activity_photos).values(
                    activity_id=activity_id, file_id=photo.file_id, path=photo.path, at=now
                )
            )
        await _event(conn, activity_id, now, actor, Action.PHOTO, count=len(photos))
        return await _load(conn, activity_id)


# --- views -----------------------------------------------------------------------------------


def _require_viewer(actor: Actor) -> None:
    if not may_view(actor):
        raise NotAllowed(needed=Role.OFFICER, unit="")


async def listing(rt: Runtime, actor: Actor) -> Listing:
    """/drills: every planned activity, soonest first (also those past their time and not yet
    recorded), and the latest done or cancelled ones."""
    _require_viewer(actor)
    async with rt.db.read() as conn:
        upcoming = (
            await conn.execute(
                select(activities)
                .where(activities.c.state == State.PLANNED)
                .order_by(activities.c.planned_at, activities.c.id)
            )
        ).all()
        history = (
            await conn.execute(
                select(activities)
                .where(activities.c.state != State.PLANNED)
                .order_by(
                    func.coalesce(activities.c.done_at, activities.c.updated_at).desc(),
                    activities.c.id.desc(),
                )
                .limit(HISTORY)
            )
        ).all()
        return Listing(
            upcoming=await _activities_from_rows(conn, list(upcoming)),
            history=await _activities_from_rows(conn, list(history)),
        )


async def view(rt: Runtime, actor: Actor, activity_id: int) -> ActivityView:
    """One activity with its history, for those who see the calendar."""
    _require_viewer(actor)
    async with rt.db.read() as conn:
        activity = await _load(conn, activity_id)
        rows = (
            await conn.execute(
                select(activity_events)
                .where(activity_events.c.activity_id == activity_id)
                .order_by(activity_events.c.id)
            )
        ).all()
        persons = await org.people_by_id(conn, {row.actor_id for row in rows if row.actor_id})
    events = [
        Event(
            at=row.at,
            actor=persons.get(row.actor_id) if row.actor_id else None,
            action=Action(row.action),
            detail={
                key: datetime.fromisoformat(value) if key in ("old", "new", "held") else value
                for key, value in row.detail.items()
            },
        )
        for row in rows
    ]
    return ActivityView(activity=activity, events=events)


async def activities_done(rt: Runtime, since: datetime, until: datetime) -> list[Activity]:
    """The activities that took place in [since, until), oldest first: the evidence the
    compliance calendar counts (filter by ``kind`` and ``topic`` as the obligation says)."""
    async with rt.db.read() as conn:
        rows = (
            await conn.execute(
                select(activities)
                .where(
                    activities.c.state == State.DONE,
                    activities.c.done_at >= since,
                    activities.c.done_at < until,
                )
                .order_by(activities.c.done_at, activities.c.id)
            )
        ).all()
        return await _activities_from_rows(conn, list(rows))
