"""Hazards (隐患): a photo becomes a ledger entry that is given to a responsible unit with a
deadline, rectified, and verified by someone other than the fixer. Every step is an event.

Lifecycle: reported (an informant's, awaiting an officer's confirmation) → registered (in the
ledger, nobody responsible yet) → rectifying (a unit and a deadline) → awaiting_verification
(the unit head sent the fix) → closed (an officer verified it); a rejected fix goes back to
rectifying with the deadline unchanged. An officer may also dismiss a hazard that is none.
"""

from __future__ import annotations

import re
import statistics
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlalchemy import and_, false, func, insert, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.errors import DomainError, NotAllowed
from bot.outbox import Button, Recipient
from bot.runtime import Runtime
from bot.services import org, reports
from bot.services.models import Actor, Person, Purpose, Role, Unit, UnitKind
from bot.services.notify import notify_group, notify_person
from bot.services.reports import PhotoIn
from bot.store.tables import (
    checkpoints,
    groups,
    hazard_events,
    hazard_photos,
    hazards,
    people,
    units,
)

__all__ = ["HazardDraft", "PhotoIn", "reference", "register"]

MAX_DESCRIPTION = 2000
MAX_NOTE = 1000
MAX_PLACE = 200
MAX_PHOTOS = 10
PAGE_SIZE = 8
REF_PREFIX = "H-"
REMIND_BEFORE = timedelta(days=1)
ESCALATE_EVERY = timedelta(days=1)
MAX_DEADLINE = timedelta(days=366)
REPORTERS = (Role.GUARD, Role.OFFICER, Role.ADMIN, Role.UNIT_HEAD, Role.INFORMANT)
HANDLERS = (Role.OFFICER, Role.ADMIN)
WATCHERS = (Role.OFFICER, Role.ADMIN, Role.LEADER)
CAPTION = re.compile(r"^\s*(#隐患|/hazard(@\w+)?)(\s+|$)", re.IGNORECASE)


class Category(StrEnum):
    FIRE = "fire"  # 消防
    ELECTRICAL = "electrical"  # 用电 (incl. illegal appliances)
    FACILITIES = "facilities"  # 校舍设施
    TRAFFIC = "traffic"  # 交通
    CHEMICALS = "chemicals"  # 危化品
    FOOD = "food"  # 食品卫生
    OTHER = "other"  # 其他


class Severity(StrEnum):
    ROUTINE = "routine"  # 一般
    SERIOUS = "serious"  # 较大
    MAJOR = "major"  # 重大

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


class State(StrEnum):
    REPORTED = "reported"  # by an informant: an officer confirms it first
    REGISTERED = "registered"  # in the ledger, not yet assigned
    RECTIFYING = "rectifying"  # a unit is fixing it by the deadline
    AWAITING_VERIFICATION = "awaiting_verification"
    CLOSED = "closed"  # verified
    DISMISSED = "dismissed"  # not a hazard after all (an officer said why)

    @property
    def open(self) -> bool:
        return self not in (State.CLOSED, State.DISMISSED)


class PhotoKind(StrEnum):
    BEFORE = "before"
    AFTER = "after"


# --- errors ----------------------------------------------------------------------------------


class EmptyHazard(DomainError):
    template = "hazards/errors/empty.j2"


class TooLong(DomainError):
    template = "hazards/errors/too_long.j2"


class UnknownHazard(DomainError):
    template = "hazards/errors/unknown.j2"


class WrongState(DomainError):
    """The step does not apply in the hazard's current state; ``hazard`` says which it is."""

    template = "hazards/errors/wrong_state.j2"


class NeedsSeverity(DomainError):
    template = "hazards/errors/needs_severity.j2"


class NeedsInterimMeasures(DomainError):
    template = "hazards/errors/needs_interim.j2"


class NeedsPhoto(DomainError):
    template = "hazards/errors/needs_photo.j2"


class NotUnitHead(DomainError):
    template = "hazards/errors/not_unit_head.j2"


class OwnFix(DomainError):
    """Four-eyes: whoever submitted a fix cannot verify it."""

    template = "hazards/errors/own_fix.j2"


class BadDeadline(DomainError):
    template = "hazards/errors/bad_deadline.j2"


class NotADepartment(DomainError):
    template = "hazards/errors/not_a_department.j2"


class HazardClosed(DomainError):
    """Nothing more may be added to a closed or dismissed hazard (the record is final)."""

    template = "hazards/errors/closed.j2"


class DeadlineKept(DomainError):
    """Reassigning a hazard under rectification keeps its deadline: a new one goes through
    ``extend``, which records who granted it and why."""

    template = "hazards/errors/deadline_kept.j2"


# --- models ----------------------------------------------------------------------------------


class HazardDraft(BaseModel):
    """What the reporter has said: a quick photo may leave category and severity to later."""

    category: Category | None = None
    severity: Severity | None = None
    description: str = ""
    place: str = ""
    latitude: float | None = None
    longitude: float | None = None
    checkpoint_id: int | None = None
    photos: list[PhotoIn] = Field(default_factory=list)
    inspection_id: int | None = None
    # The checklist item that failed: recorded on the "registered" event so that a retried
    # answer finds the hazard it already registered (see ``for_inspection_item``).
    inspection_item: int | None = None


class HazardPhoto(BaseModel):
    id: int
    kind: PhotoKind
    file_id: str
    path: str | None
    size: int | None
    note: str | None


class Hazard(BaseModel):
    id: int
    reporter: Person
    unit: Unit
    category: Category | None
    severity: Severity | None
    place: str
    latitude: float | None
    longitude: float | None
    checkpoint_id: int | None
    checkpoint_name: str | None
    description: str
    state: State
    responsible_unit: Unit | None
    deadline: datetime | None
    interim_measures: str | None
    inspection_id: int | None
    confirmed: bool
    fixed_by: Person | None
    created_at: datetime
    assigned_at: datetime | None
    closed_at: datetime | None
    escalations: int
    photos: list[HazardPhoto]

    @property
    def ref(self) -> str:
        return reference(self.id)

    @property
    def missing(self) -> list[str]:
        """The fields a quick report left open ("category", "severity")."""
        return [name for name in ("category", "severity") if getattr(self, name) is None]

    @property
    def before_photos(self) -> list[HazardPhoto]:
        return [p for p in self.photos if p.kind is PhotoKind.BEFORE]

    @property
    def after_photos(self) -> list[HazardPhoto]:
        return [p for p in self.photos if p.kind is PhotoKind.AFTER]

    def overdue(self, now: datetime) -> bool:
        return self.state is State.RECTIFYING and self.deadline is not None and self.deadline < now


class Handling(BaseModel):
    """The result of a step: the hazard as it is now, and whether this call changed it."""

    hazard: Hazard
    changed: bool = True


class Event(BaseModel):
    at: datetime
    actor: Person | None
    kind: str
    detail: dict[str, Any]


class HazardView(BaseModel):
    hazard: Hazard
    events: list[Event]


class HazardPage(BaseModel):
    hazards: list[Hazard]
    which: str
    number: int
    total_pages: int
    total: int


class Summary(BaseModel):
    """The ledger in one message (the figures the assessment asks for)."""

    total: int
    this_month: int
    this_quarter: int
    rectified: int
    open: int
    overdue: int
    rate: float | None  # rectified / registered, in percent (None with nothing registered)
    median_days: float | None


class DeadlineRun(BaseModel):
    reminded: list[Hazard] = Field(default_factory=list)
    escalated: list[Hazard] = Field(default_factory=list)


# --- small helpers ---------------------------------------------------------------------------


def reference(hazard_id: int) -> str:
    """The short code people see: H-0107."""
    return f"{REF_PREFIX}{hazard_id:04d}"


def parse_reference(text: str) -> int:
    """The id behind "H-0107" (also "h107", "107"); UnknownHazard otherwise."""
    value = text.strip().upper().removeprefix(REF_PREFIX).removeprefix("H")
    if not value.isdigit() or int(value) < 1:
        raise UnknownHazard(ref=text)
    return int(value)


def caption_text(caption: str | None) -> str | None:
    """The description after "#隐患" or "/hazard" at the start of a caption; None if the
    caption does not start with either (then the photo is not a hazard report)."""
    if not caption:
        return None
    match = CAPTION.match(caption)
    if match is None:
        return None
    return caption[match.end() :].strip()


def _check_text(text: str, limit: int, *, allow_empty: bool = False) -> str:
    value = text.strip()
    if not value and not allow_empty:
        raise EmptyHazard()
    if len(value) > limit:
        raise TooLong(limit=limit, length=len(value))
    return value


def parse_deadline(text: str, now: datetime, zone: ZoneInfo) -> datetime:
    """ "3" or "3d" (days from now) or "2026-09-10" (end of that day, local time)."""
    value = text.strip().lower()
    if value.endswith("d") or value.endswith("天"):
        value = value[:-1]
    if value.isdigit() and 1 <= int(value) <= MAX_DEADLINE.days:
        return now + timedelta(days=int(value))
    try:
        day = datetime.strptime(text.strip(), "%Y-%m-%d")
    except ValueError:
        raise BadDeadline(text=text) from None
    moment = day.replace(hour=23, minute=59, tzinfo=zone)
    if moment <= now or moment - now > MAX_DEADLINE:
        raise BadDeadline(text=text)
    return moment


# --- reading ---------------------------------------------------------------------------------


async def _load(conn: AsyncConnection, hazard_id: int) -> Hazard:
    row = (await conn.execute(select(hazards).where(hazards.c.id == hazard_id))).first()
    if row is None:
        raise UnknownHazard(ref=reference(hazard_id))
    return (await _hazards_from_rows(conn, [row]))[0]


async def get(rt: Runtime, hazard_id: int) -> Hazard:
    """A hazard by id, no questions asked (for other services, e.g. inspections)."""
    async with rt.db.read() as conn:
        return await _load(conn, hazard_id)


async def _hazards_from_rows(conn: AsyncConnection, rows: list[Row[Any]]) -> list[Hazard]:
    person_ids = {r.reporter_id for r in rows} | {r.fixed_by for r in rows if r.fixed_by}
    persons = {
        row.id: org.person_from_row(row)
        for row in (await conn.execute(select(people).where(people.c.id.in_(person_ids)))).all()
    }
    unit_ids = {r.unit_id for r in rows} | {
        r.responsible_unit_id for r in rows if r.responsible_unit_id
    }
    unit_map = {uid: await org.unit_by_id(conn, uid) for uid in unit_ids}
    checkpoint_ids = {r.checkpoint_id for r in rows if r.checkpoint_id}
    names = {
        row.id: row.name
        for row in (
            await conn.execute(
                select(checkpoints.c.id, checkpoints.c.name).where(
                    checkpoints.c.id.in_(checkpoint_ids)
                )
            )
        ).all()
    }
    photo_rows = (
        await conn.execute(
            select(hazard_photos)
            .where(hazard_photos.c.hazard_id.in_([r.id for r in rows]))
            .order_by(hazard_photos.c.id)
        )
    ).all()
    photos: dict[int, list[HazardPhoto]] = {r.id: [] for r in rows}
    for p in photo_rows:
        photos[p.hazard_id].append(
            HazardPhoto(
                id=p.id,
                kind=PhotoKind(p.kind),
                file_id=p.file_id,
                path=p.path,
                size=p.size,
                note=p.note,
            )
        )
    return [
        Hazard(
            id=r.id,
            reporter=persons[r.reporter_id],
            unit=unit_map[r.unit_id],
            category=Category(r.category) if r.category else None,
            severity=Severity(r.severity) if r.severity else None,
            place=r.place,
            latitude=r.latitude,
            longitude=r.longitude,
            checkpoint_id=r.checkpoint_id,
            checkpoint_name=names.get(r.checkpoint_id) if r.checkpoint_id else None,
            description=r.description,
            state=State(r.state),
            responsible_unit=unit_map.get(r.responsible_unit_id) if r.responsible_unit_id else None,
            deadline=r.deadline,
            interim_measures=r.interim_measures,
            inspection_id=r.inspection_id,
            confirmed=r.confirmed,
            fixed_by=persons.get(r.fixed_by) if r.fixed_by else None,
            created_at=r.created_at,
            assigned_at=r.assigned_at,
            closed_at=r.closed_at,
            escalations=r.escalations,
            photos=photos[r.id],
        )
        for r in rows
    ]


async def _event(
    conn: AsyncConnection,
    hazard_id: int,
    now: datetime,
    actor: Actor | None,
    kind: str,
    **detail: Any,
) -> int:
    result = await conn.execute(
        insert(hazard_events).values(
            hazard_id=hazard_id,
            at=now,
            actor_id=actor.person.id if actor else None,
            kind=kind,
            detail=detail,
        )
    )
    return int(result.inserted_primary_key[0])


async def _add_photos(
    conn: AsyncConnection,
    hazard_id: int,
    kind: PhotoKind,
    photos: list[PhotoIn],
    actor: Actor,
    now: datetime,
) -> None:
    for photo in photos:
        await conn.execute(
            insert(hazard_photos).values(
                hazard_id=hazard_id,
                kind=kind,
                added_by=actor.person.id,
                received_at=now,
                file_id=photo.file_id,
                file_unique_id=photo.file_unique_id,
                size=photo.size,
                path=photo.path,
                note=photo.note,
            )
        )


def is_handler(actor: Actor, hazard: Hazard) -> bool:
    return any(actor.has_role(role, hazard.unit) for role in HANDLERS)


def _require_handler(actor: Actor, hazard: Hazard) -> None:
    if not is_handler(actor, hazard):
        raise NotAllowed(needed=Role.OFFICER, unit=hazard.unit.path)


def is_unit_head(actor: Actor, hazard: Hazard) -> bool:
    return hazard.responsible_unit is not None and (
        actor.has_role(Role.UNIT_HEAD, hazard.responsible_unit)
    )


def may_see(actor: Actor, hazard: Hazard) -> bool:
    return (
        hazard.reporter.id == actor.person.id
        or any(actor.has_role(role, hazard.unit) for role in WATCHERS)
        or is_unit_head(actor, hazard)
    )


# --- routing ---------------------------------------------------------------------------------


def _buttons(rt: Runtime, locale: str, hazard: Hazard, *actions: str) -> list[list[Button]]:
    render = rt.renderer.render
    made = [
        Button(text=render(locale, f"hazards/buttons/{a}.j2"), action=f"hz:{a}:{hazard.id}")
        for a in actions
    ]
    return [made[i : i + 2] for i in range(0, len(made), 2)]


def handler_actions(hazard: Hazard) -> tuple[str, ...]:
    """The buttons an officer gets for ``hazard`` in its current state."""
    match hazard.state:
        case State.REPORTED:
            return ("confirm", "dismiss")
        case State.REGISTERED:
            return ("assign", "interim", "dismiss")
        case State.RECTIFYING:
            return ("extend", "interim", "assign")
        case State.AWAITING_VERIFICATION:
            return ("verify", "reject", "extend")
    return ()


async def _tell_handlers(
    conn: AsyncConnection, rt: Runtime, hazard: Hazard, template: str, topic: str, **context: Any
) -> None:
    """The command group(s) over the hazard's unit, or its officers and admins in private."""
    photo = _first_photo(hazard)
    targets = await reports.command_groups_for(conn, hazard.unit)
    if hazard.state is State.REPORTED:
        targets = []  # an informant's report is confirmed privately first
    for group in targets:
        await notify_group(
            conn,
            rt,
            group,
            template,
            topic=topic,
            buttons=_buttons(rt, rt.settings.locale, hazard, *handler_actions(hazard)),
            hazard=hazard,
            photo=photo,
            **context,
        )
    if targets:
        return
    for person in await org.holders_over(conn, rt, hazard.unit, HANDLERS):
        await notify_person(
            conn,
            rt,
            person,
            template,
            topic=topic,
            buttons=_buttons(
                rt, person.language(rt.settings.locale), hazard, *handler_actions(hazard)
            ),
            hazard=hazard,
            photo=photo,
            **context,
        )


async def unit_heads(conn: AsyncConnection, rt: Runtime, unit: Unit) -> list[Person]:
    return await org.holders_over(conn, rt, unit, [Role.UNIT_HEAD], with_superadmins=False)


async def _tell_unit(
    conn: AsyncConnection,
    rt: Runtime,
    hazard: Hazard,
    template: str,
    topic: str,
    *,
    group_too: bool = False,
    **context: Any,
) -> None:
    """The responsible unit's heads in private (with the fix button) and, if asked, the
    unit's group chat(s)."""
    assert hazard.responsible_unit is not None
    actions = ("fix",) if hazard.state is State.RECTIFYING else ()
    for person in await unit_heads(conn, rt, hazard.responsible_unit):
        await notify_person(
            conn,
            rt,
            person,
            template,
            topic=topic,
            buttons=_buttons(rt, person.language(rt.settings.locale), hazard, *actions),
            hazard=hazard,
            photo=_first_photo(hazard),
            in_group=False,
            **context,
        )
    if not group_too:
        return
    rows = (
        await conn.execute(
            select(groups.c.channel, groups.c.address).where(
                groups.c.purpose == Purpose.UNIT,
                groups.c.unit_id == hazard.responsible_unit.id,
                groups.c.left_at.is_(None),
            )
        )
    ).all()
    for row in rows:
        group = await org.group_at(conn, Recipient(row.channel, row.address))
        if group is not None:
            await notify_group(
                conn, rt, group, template, topic=topic, hazard=hazard, in_group=True, **context
            )


async def _tell_reporter(
    conn: AsyncConnection, rt: Runtime, hazard: Hazard, template: str, **context: Any
) -> None:
    await notify_person(
        conn,
        rt,
        hazard.reporter,
        template,
        topic=f"hazards.{template.split('/')[-1][:-3]}",
        hazard=hazard,
        **context,
    )


def _first_photo(hazard: Hazard) -> str | None:
    return next((photo.path for photo in hazard.before_photos if photo.path), None)


# --- registering -----------------------------------------------------------------------------


def _found_in(actor: Actor, root: Unit) -> Unit:
    """The unit a hazard was found in: the reporter's first unit (the school otherwise)."""
    for role in REPORTERS:
        for grant in actor.grants:
            if grant.role is role:
                return grant.unit
    return root


def may_report(actor: Actor) -> bool:
    return actor.superadmin or any(actor.has_role(role) for role in REPORTERS)


async def register(rt: Runtime, actor: Actor, draft: HazardDraft) -> Hazard:
    """Put a hazard in the ledger and tell those who act on it; committed when this returns.
    An informant's hazard waits for an officer's confirmation (state ``reported``)."""
    if not may_report(actor):
        raise NotAllowed(needed=Role.GUARD, unit="")
    description = _check_text(draft.description, MAX_DESCRIPTION, allow_empty=bool(draft.photos))
    place = _check_text(draft.place, MAX_PLACE, allow_empty=True)
    if len(draft.photos) > MAX_PHOTOS:
        raise TooLong(limit=MAX_PHOTOS, length=len(draft.photos))
    informant_only = not actor.superadmin and not any(
        actor.has_role(role) for role in REPORTERS if role is not Role.INFORMANT
    )
    now = rt.now()
    async with rt.db.transaction() as conn:
        unit = _found_in(actor, await org.root_unit(conn, now))
        if draft.checkpoint_id is not None:
            row = (
                await conn.execute(
                    select(checkpoints.c.unit_id, checkpoints.c.name).where(
                        checkpoints.c.id == draft.checkpoint_id
                    )
                )
            ).first()
            if row is None:
                raise UnknownHazard(ref=str(draft.checkpoint_id))
            unit = await org.unit_by_id(conn, row.unit_id)
            place = place or row.name
        state = State.REPORTED if informant_only else State.REGISTERED
        hazard_id = (
            await conn.execute(
                insert(hazards).values(
                    reporter_id=actor.person.id,
                    unit_id=unit.id,
                    category=draft.category,
                    severity=draft.severity,
                    place=place,
                    latitude=draft.latitude,
                    longitude=draft.longitude,
                    checkpoint_id=draft.checkpoint_id,
                    description=description,
                    state=state,
                    inspection_id=draft.inspection_id,
                    confirmed=not informant_only,
                    created_at=now,
                )
            )
        ).inserted_primary_key[0]
        await _add_photos(conn, hazard_id, PhotoKind.BEFORE, draft.photos, actor, now)
        await _event(
            conn,
            hazard_id,
            now,
            actor,
            "reported" if informant_only else "registered",
            photos=len(draft.photos),
            inspection=draft.inspection_id,
            item=draft.inspection_item,
        )
        hazard = await _load(conn, hazard_id)
        await _tell_handlers(conn, rt, hazard, "hazards/card.j2", "hazards.new")
    return hazard


async def complete(
    rt: Runtime,
    actor: Actor,
    hazard_id: int,
    *,
    category: Category | None = None,
    severity: Severity | None = None,
) -> Handling:
    """Set the category or severity while open. The reporter may only fill what a quick
    report left open; correcting a field already set takes an officer or admin of the scope
    (a reporter must not downgrade a 重大 hazard under rectification). Raising a hazard
    already assigned to 重大 needs interim measures on record, as assigning one does."""
    now = rt.now()
    async with rt.db.transaction() as conn:
        hazard = await _load(conn, hazard_id)
        handler = is_handler(actor, hazard)
        if hazard.reporter.id != actor.person.id and not handler:
            raise NotAllowed(needed=Role.OFFICER, unit=hazard.unit.path)
        if not hazard.state.open:
            raise WrongState(hazard=hazard)
        values: dict[str, Any] = {}
        if category is not None and category is not hazard.category:
            values["category"] = category
        if severity is not None and severity is not hazard.severity:
            values["severity"] = severity
        if not values:
            return Handling(hazard=hazard, changed=False)
        if not handler and any(getattr(hazard, name) is not None for name in values):
            raise NotAllowed(needed=Role.OFFICER, unit=hazard.unit.path)
        if (
            values.get("severity") is Severity.MAJOR
            and hazard.state in (State.RECTIFYING, State.AWAITING_VERIFICATION)
            and not hazard.interim_measures
        ):
            raise NeedsInterimMeasures(hazard=hazard)
        await conn.execute(update(hazards).where(hazards.c.id == hazard_id).values(**values))
        await _event(conn, hazard_id, now, actor, "classified", **values)
        return Handling(hazard=await _load(conn, hazard_id))


async def add_photos(rt: Runtime, actor: Actor, hazard_id: int, photos: list[PhotoIn]) -> Handling:
    """More "before" photos from the reporter or an officer while the hazard is open (a
    closed or dismissed hazard's record is final)."""
    now = rt.now()
    async with rt.db.transaction() as conn:
        hazard = await _load(conn, hazard_id)
        if hazard.reporter.id != actor.person.id and not is_handler(actor, hazard):
            raise NotAllowed(needed=Role.OFFICER, unit=hazard.unit.path)
        if not hazard.state.open:
            raise HazardClosed(hazard=hazard)
        if len(hazard.before_photos) + len(photos) > MAX_PHOTOS:
            raise TooLong(limit=MAX_PHOTOS, length=len(hazard.before_photos) + len(photos))
        await _add_photos(conn, hazard_id, PhotoKind.BEFORE, photos, actor, now)
        await _event(conn, hazard_id, now, actor, "photo", count=len(photos))
        return Handling(hazard=await _load(conn, hazard_id))


async def for_inspection_item(rt: Runtime, inspection_id: int, item_id: int) -> int | None:
    """The hazard an inspection already registered for a checklist item (the first, should
    there be several), found by the item recorded on its "registered"/"reported" event; None
    if there is none. Lets a retried answer reuse it instead of registering it twice."""
    async with rt.db.read() as conn:
        rows = (
            await conn.execute(
                select(hazard_events.c.hazard_id, hazard_events.c.detail)
                .join(hazards, hazards.c.id == hazard_events.c.hazard_id)
                .where(
                    hazards.c.inspection_id == inspection_id,
                    hazard_events.c.kind.in_(["registered", "reported"]),
                )
                .order_by(hazard_events.c.hazard_id)
            )
        ).all()
    return next((row.hazard_id for row in rows if row.detail.get("item") == item_id), None)


async def record_reanswer(
    conn: AsyncConnection, hazard_id: int, now: datetime, actor: Actor, result: str
) -> None:
    """The inspection item that registered this hazard was answered again (``result``): the
    ledger keeps the hazard and says that its fail was superseded (or stands again), in the
    caller's transaction, so the inspection and the ledger tell the same story."""
    await _event(conn, hazard_id, now, actor, "reanswered", result=result)


# --- handling --------------------------------------------------------------------------------


async def for_handling(rt: Runtime, actor: Actor, hazard_id: int) -> Hazard:
    """The hazard if ``actor`` may handle it (an officer or admin of its scope) and it is open."""
    async with rt.db.read() as conn:
        hazard = await _load(conn, hazard_id)
    _require_handler(actor, hazard)
    if not hazard.state.open:
        raise WrongState(hazard=hazard)
    return hazard


async def confirm(rt: Runtime, actor: Actor, hazard_id: int) -> Handling:
    """An officer confirms an informant's hazard: it enters the ledger."""
    now = rt.now()
    async with rt.db.transaction() as conn:
        hazard = await _load(conn, hazard_id)
        _require_handler(actor, hazard)
        if hazard.state is not State.REPORTED:
            return Handling(hazard=hazard, changed=False)
        await conn.execute(
            update(hazards)
            .where(hazards.c.id == hazard_id)
            .values(state=State.REGISTERED, confirmed=True)
        )
        await _event(conn, hazard_id, now, actor, "confirmed")
        hazard = await _load(conn, hazard_id)
        await _tell_reporter(conn, rt, hazard, "hazards/confirmed_notice.j2")
        return Handling(hazard=hazard)


async def dismiss(rt: Runtime, actor: Actor, hazard_id: int, reason: str) -> Handling:
    """Not a hazard after all (or a duplicate): closed without rectification, with the reason."""
    text = _check_text(reason, MAX_NOTE)
    now = rt.now()
    async with rt.db.transaction() as conn:
        hazard = await _load(conn, hazard_id)
        _require_handler(actor, hazard)
        if hazard.state not in (State.REPORTED, State.REGISTERED):
            raise WrongState(hazard=hazard)
        await conn.execute(
            update(hazards)
            .where(hazards.c.id == hazard_id)
            .values(state=State.DISMISSED, closed_at=now, remind_at=None, escalate_at=None)
        )
        await _event(conn, hazard_id, now, actor, "dismissed", reason=text)
        hazard = await _load(conn, hazard_id)
        await _tell_reporter(conn, rt, hazard, "hazards/dismissed_notice.j2", reason=text)
        return Handling(hazard=hazard)


async def departments(rt: Runtime, actor: Actor, hazard_id: int) -> tuple[Hazard, list[Unit]]:
    """The units a hazard may be given to from a list: departments (and units with a unit
    group) — any unit may still be named by its path."""
    hazard = await for_handling(rt, actor, hazard_id)
    async with rt.db.read() as conn:
        ids = set(
            (
                await conn.execute(select(units.c.id).where(units.c.kind == UnitKind.DEPARTMENT))
            ).scalars()
        ) | set(
            (
                await conn.execute(
                    select(groups.c.unit_id).where(
                        groups.c.purpose == Purpose.UNIT, groups.c.unit_id.is_not(None)
                    )
                )
            ).scalars()
        )
        found = [await org.unit_by_id(conn, uid) for uid in sorted(ids)]
    return hazard, sorted(found, key=lambda u: u.path)


def _plan(deadline: datetime, now: datetime) -> dict[str, Any]:
    """When the reminder and the first overdue escalation are due for ``deadline``."""
    remind = deadline - REMIND_BEFORE
    return {
        "remind_at": remind if remind > now else None,
        "escalate_at": deadline if deadline > now else now,
    }


async def assign(
    rt: Runtime,
    actor: Actor,
    hazard_id: int,
    unit: str | int,
    *,
    deadline: datetime | None = None,
    interim: str | None = None,
) -> Handling:
    """Give the hazard to a responsible unit (by path or id) with a deadline (by default from
    SAFECAMPUS_HAZARD_DEADLINES for its severity); a 重大 hazard needs interim measures.
    The unit's heads are told in private and the unit's group chat too. Reassigning a
    hazard under rectification keeps its deadline (and its reminder and escalation plan,
    even when overdue): only ``extend`` moves it, with a recorded reason."""
    measures = _check_text(interim, MAX_NOTE) if interim and interim.strip() else None
    now = rt.now()
    async with rt.db.transaction() as conn:
        hazard = await _load(conn, hazard_id)
        _require_handler(actor, hazard)
        if hazard.state not in (State.REGISTERED, State.RECTIFYING):
            raise WrongState(hazard=hazard)
        if hazard.severity is None:
            raise NeedsSeverity(hazard=hazard)
        if hazard.severity is Severity.MAJOR and not (measures or hazard.interim_measures):
            raise NeedsInterimMeasures(hazard=hazard)
        target = (
            await org.unit_by_id(conn, unit)
            if isinstance(unit, int)
            else await org.find_unit(conn, unit, now)
        )
        if target.is_root:
            raise NotADepartment(path=target.path)
        values: dict[str, Any] = {"responsible_unit_id": target.id, "assigned_at": now}
        if hazard.state is State.RECTIFYING:
            assert hazard.deadline is not None
            if deadline is not None and deadline != hazard.deadline:
                raise DeadlineKept(hazard=hazard)
            deadline = hazard.deadline  # may be past: an overdue hazard may change hands
        else:
            if deadline is None:
                deadline = now + rt.settings.hazard_deadlines[hazard.severity.value]
            if deadline <= now:
                raise BadDeadline(text=str(deadline))
            values.update(state=State.RECTIFYING, deadline=deadline, **_plan(deadline, now))
        if measures:
            values["interim_measures"] = measures
            await _event(conn, hazard_id, now, actor, "interim", text=measures)
        await conn.execute(update(hazards).where(hazards.c.id == hazard_id).values(**values))
        await _event(
            conn,
            hazard_id,
            now,
            actor,
            "assigned",
            unit=target.path,
            deadline=deadline.isoformat(),
            previous=hazard.responsible_unit.path if hazard.responsible_unit else None,
        )
        hazard = await _load(conn, hazard_id)
        await _tell_unit(
            conn, rt, hazard, "hazards/assigned_notice.j2", "hazards.assigned", group_too=True
        )
        return Handling(hazard=hazard)


async def record_interim(rt: Runtime, actor: Actor, hazard_id: int, text: str) -> Handling:
    """Record (or replace) the interim safety measures while the hazard is open."""
    measures = _check_text(text, MAX_NOTE)
    now = rt.now()
    async with rt.db.transaction() as conn:
        hazard = await _load(conn, hazard_id)
        _require_handler(actor, hazard)
        if not hazard.state.open:
            raise WrongState(hazard=hazard)
        await conn.execute(
            update(hazards).where(hazards.c.id == hazard_id).values(interim_measures=measures)
        )
        await _event(conn, hazard_id, now, actor, "interim", text=measures)
        return Handling(hazard=await _load(conn, hazard_id))


async def for_fix(rt: Runtime, actor: Actor, hazard_id: int) -> Hazard:
    """The hazard if ``actor`` may submit its fix now (a head of the responsible unit)."""
    async with rt.db.read() as conn:
        hazard = await _load(conn, hazard_id)
    _check_fixer(actor, hazard)
    return hazard


def _check_fixer(actor: Actor, hazard: Hazard) -> None:
    if not is_unit_head(actor, hazard):
        raise NotUnitHead(hazard=hazard)
    if hazard.state is not State.RECTIFYING:
        raise WrongState(hazard=hazard)


async def submit_fix(
    rt: Runtime, actor: Actor, hazard_id: int, note: str, photos: list[PhotoIn]
) -> Handling:
    """The unit head says it is fixed, with an "after" photo and a note: the officers verify."""
    text = _check_text(note, MAX_NOTE, allow_empty=True)
    if not photos:
        raise NeedsPhoto()
    if len(photos) > MAX_PHOTOS:
        raise TooLong(limit=MAX_PHOTOS, length=len(photos))
    now = rt.now()
    async with rt.db.transaction() as conn:
        hazard = await _load(conn, hazard_id)
        _check_fixer(actor, hazard)
        await _add_photos(conn, hazard_id, PhotoKind.AFTER, photos, actor, now)
        await conn.execute(
            update(hazards)
            .where(hazards.c.id == hazard_id)
            .values(
                state=State.AWAITING_VERIFICATION,
                fixed_by=actor.person.id,
                remind_at=None,
                escalate_at=None,
            )
        )
        await _event(conn, hazard_id, now, actor, "fixed", text=text, photos=len(photos))
        hazard = await _load(conn, hazard_id)
        await _tell_handlers(
            conn,
            rt,
            hazard,
            "hazards/fixed_notice.j2",
            "hazards.fixed",
            note=text,
            by=actor.person,
        )
        return Handling(hazard=hazard)


async def _awaiting(conn: AsyncConnection, actor: Actor, hazard_id: int) -> Hazard | None:
    """The hazard awaiting verification by ``actor``; None if it is no longer awaiting."""
    hazard = await _load(conn, hazard_id)
    _require_handler(actor, hazard)
    if hazard.state is not State.AWAITING_VERIFICATION:
        return None
    return hazard


async def verify(rt: Runtime, actor: Actor, hazard_id: int) -> Handling:
    """An officer checks the fix and closes the hazard; never the one who fixed it."""
    now = rt.now()
    async with rt.db.transaction() as conn:
        hazard = await _awaiting(conn, actor, hazard_id)
        if hazard is None:
            return Handling(hazard=await _load(conn, hazard_id), changed=False)
        if hazard.fixed_by is not None and hazard.fixed_by.id == actor.person.id:
            raise OwnFix(hazard=hazard)
        await conn.execute(
            update(hazards)
            .where(hazards.c.id == hazard_id)
            .values(state=State.CLOSED, closed_at=now, remind_at=None, escalate_at=None)
        )
        await _event(conn, hazard_id, now, actor, "verified")
        hazard = await _load(conn, hazard_id)
        await _tell_unit(conn, rt, hazard, "hazards/verified_notice.j2", "hazards.verified")
        await _tell_reporter(conn, rt, hazard, "hazards/verified_notice.j2")
        return Handling(hazard=hazard)


async def reject(rt: Runtime, actor: Actor, hazard_id: int, reason: str) -> Handling:
    """The fix is not good enough: back to rectifying with the reason; deadline unchanged."""
    text = _check_text(reason, MAX_NOTE)
    now = rt.now()
    async with rt.db.transaction() as conn:
        hazard = await _awaiting(conn, actor, hazard_id)
        if hazard is None:
            return Handling(hazard=await _load(conn, hazard_id), changed=False)
        assert hazard.deadline is not None
        await conn.execute(
            update(hazards)
            .where(hazards.c.id == hazard_id)
            .values(state=State.RECTIFYING, fixed_by=None, **_plan(hazard.deadline, now))
        )
        await _event(conn, hazard_id, now, actor, "rejected", reason=text)
        hazard = await _load(conn, hazard_id)
        await _tell_unit(
            conn, rt, hazard, "hazards/rejected_notice.j2", "hazards.rejected", reason=text
        )
        return Handling(hazard=hazard)


async def extend(
    rt: Runtime, actor: Actor, hazard_id: int, deadline: datetime, reason: str
) -> Handling:
    """A later deadline, with the reason and who granted it (recorded)."""
    text = _check_text(reason, MAX_NOTE)
    now = rt.now()
    async with rt.db.transaction() as conn:
        hazard = await _load(conn, hazard_id)
        _require_handler(actor, hazard)
        if hazard.state not in (State.RECTIFYING, State.AWAITING_VERIFICATION):
            raise WrongState(hazard=hazard)
        assert hazard.deadline is not None
        if deadline <= hazard.deadline or deadline <= now:
            raise BadDeadline(text=deadline.isoformat())
        values: dict[str, Any] = {"deadline": deadline}
        if hazard.state is State.RECTIFYING:
            values.update(_plan(deadline, now))
        await conn.execute(update(hazards).where(hazards.c.id == hazard_id).values(**values))
        await _event(
            conn,
            hazard_id,
            now,
            actor,
            "extended",
            old=hazard.deadline.isoformat(),
            new=deadline.isoformat(),
            reason=text,
        )
        hazard = await _load(conn, hazard_id)
        await _tell_unit(
            conn, rt, hazard, "hazards/extended_notice.j2", "hazards.extended", reason=text
        )
        return Handling(hazard=hazard)


# --- deadlines -------------------------------------------------------------------------------


async def run_deadlines(rt: Runtime) -> DeadlineRun:
    """Remind the unit heads a day before the deadline, and escalate overdue hazards to the
    officers, the leader on duty and the admins once a day until closed. Due times live on
    the hazard rows and move in the same transaction as the outbox rows: exactly once."""
    now = rt.now()
    done = DeadlineRun()
    async with rt.db.transaction() as conn:
        due = (
            (
                await conn.execute(
                    select(hazards.c.id)
                    .where(hazards.c.state == State.RECTIFYING, hazards.c.remind_at <= now)
                    .order_by(hazards.c.id)
                )
            )
            .scalars()
            .all()
        )
        for hazard_id in due:
            hazard = await _load(conn, hazard_id)
            await conn.execute(
                update(hazards).where(hazards.c.id == hazard_id).values(remind_at=None)
            )
            if hazard.deadline is not None and hazard.deadline <= now:
                continue  # the bot was down past the deadline: the overdue notice says it all
            await _event(conn, hazard_id, now, None, "reminded")
            await _tell_unit(conn, rt, hazard, "hazards/reminder_notice.j2", "hazards.reminder")
            done.reminded.append(hazard)
        overdue = (
            await conn.execute(
                select(hazards.c.id, hazards.c.escalate_at)
                .where(hazards.c.state == State.RECTIFYING, hazards.c.escalate_at <= now)
                .order_by(hazards.c.id)
            )
        ).all()
        for hazard_id, due_at in overdue:
            following = due_at + ESCALATE_EVERY
            while following <= now:  # days the bot was down are not made up for
                following += ESCALATE_EVERY
            count = (
                await conn.execute(
                    update(hazards)
                    .where(hazards.c.id == hazard_id)
                    .values(
                        escalations=hazards.c.escalations + 1,
                        escalate_at=following,
                        remind_at=None,
                    )
                    .returning(hazards.c.escalations)
                )
            ).scalar_one()
            await _event(conn, hazard_id, now, None, "escalated", count=count)
            hazard = await _load(conn, hazard_id)
            found = {
                p.id: p
                for p in await org.holders_over(
                    conn, rt, hazard.unit, [Role.OFFICER], with_superadmins=False
                )
            }
            for person in await reports._escalation_targets(conn, rt, hazard.unit, now):
                found.setdefault(person.id, person)
            for person in found.values():
                await notify_person(
                    conn,
                    rt,
                    person,
                    "hazards/overdue_notice.j2",
                    topic="hazards.overdue",
                    buttons=_buttons(
                        rt, person.language(rt.settings.locale), hazard, "view", "extend"
                    ),
                    hazard=hazard,
                    count=count,
                    now=now,
                )
            done.escalated.append(hazard)
    return done


# --- views -----------------------------------------------------------------------------------


async def view(rt: Runtime, actor: Actor, hazard_id: int) -> HazardView:
    """One hazard with its photos and history, for those who may see it."""
    async with rt.db.read() as conn:
        hazard = await _load(conn, hazard_id)
        if not may_see(actor, hazard):
            raise UnknownHazard(ref=hazard.ref)  # do not confirm it exists
        rows = (
            await conn.execute(
                select(hazard_events)
                .where(hazard_events.c.hazard_id == hazard_id)
                .order_by(hazard_events.c.id)
            )
        ).all()
        persons = await org.people_by_id(conn, {row.actor_id for row in rows if row.actor_id})
    events = [
        Event(
            at=row.at,
            actor=persons.get(row.actor_id) if row.actor_id else None,
            kind=row.kind,
            detail=_times(row.detail),
        )
        for row in rows
    ]
    return HazardView(hazard=hazard, events=events)


def _times(detail: dict[str, Any]) -> dict[str, Any]:
    """Event details keep moments as ISO text (JSON); give them back as datetimes."""
    return {
        key: datetime.fromisoformat(value) if key in ("deadline", "old", "new") else value
        for key, value in detail.items()
    }


def _scope(actor: Actor) -> Any:
    """Hazards ``actor`` may see in lists: found in their watch scope, given to their unit,
    or reported by them."""
    if actor.superadmin:
        return true_condition()
    found_in = [g.unit.id_path for g in actor.grants if g.role in WATCHERS]
    headed = [g.unit.id for g in actor.grants if g.role is Role.UNIT_HEAD]
    headed_paths = [g.unit.id_path for g in actor.grants if g.role is Role.UNIT_HEAD]
    conditions = [hazards.c.reporter_id == actor.person.id]
    conditions += [units.c.id_path.startswith(path) for path in found_in]
    if headed:
        responsible = select(units.c.id).where(
            or_(*(units.c.id_path.startswith(path) for path in headed_paths))
        )
        conditions.append(hazards.c.responsible_unit_id.in_(responsible))
    return or_(*conditions)


def true_condition() -> Any:
    return hazards.c.id.is_not(None)


OPEN_STATES = [s for s in State if s.open]
LISTS = ("open", "overdue", "mine")


async def listing(rt: Runtime, actor: Actor, which: str = "open", page: int = 0) -> HazardPage:
    """open: every open hazard in scope; overdue: past the deadline; mine: reported by me or
    given to a unit I head. Most severe and oldest deadline first."""
    if which not in LISTS:
        raise UnknownHazard(ref=which)
    now = rt.now()
    if which == "mine":
        headed = [g.unit.id_path for g in actor.grants if g.role is Role.UNIT_HEAD]
        condition = or_(
            hazards.c.reporter_id == actor.person.id,
            hazards.c.responsible_unit_id.in_(
                select(units.c.id).where(or_(*(units.c.id_path.startswith(p) for p in headed)))
            )
            if headed
            else false(),
        )
    else:
        condition = and_(_scope(actor), hazards.c.state.in_(OPEN_STATES))
        if which == "overdue":
            condition = and_(
                condition, hazards.c.state == State.RECTIFYING, hazards.c.deadline < now
            )
    async with rt.db.read() as conn:
        base = select(hazards).join(units, units.c.id == hazards.c.unit_id).where(condition)
        total = (await conn.execute(select(func.count()).select_from(base.subquery()))).scalar_one()
        pages = max(1, -(-total // PAGE_SIZE))
        number = min(max(page, 0), pages - 1)
        rows = (
            await conn.execute(
                base.order_by(hazards.c.deadline.is_(None), hazards.c.deadline, hazards.c.id)
                .limit(PAGE_SIZE)
                .offset(number * PAGE_SIZE)
            )
        ).all()
        found = await _hazards_from_rows(conn, rows) if rows else []
    return HazardPage(hazards=found, which=which, number=number, total_pages=pages, total=total)


def _quarter_start(local: datetime) -> datetime:
    month = (local.month - 1) // 3 * 3 + 1
    return local.replace(month=month, day=1, hour=0, minute=0, second=0, microsecond=0)


async def summary(rt: Runtime, actor: Actor) -> Summary:
    """The ledger in figures for the actor's scope (officers, admins, leaders)."""
    if not any(actor.has_role(role) for role in WATCHERS):
        raise NotAllowed(needed=Role.OFFICER, unit="")
    now = rt.now()
    local = now.astimezone(rt.settings.zone)
    month = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    quarter = _quarter_start(local)
    async with rt.db.read() as conn:
        rows = (
            await conn.execute(
                select(
                    hazards.c.state, hazards.c.created_at, hazards.c.closed_at, hazards.c.deadline
                )
                .join(units, units.c.id == hazards.c.unit_id)
                .where(_scope(actor), hazards.c.state.not_in([State.REPORTED, State.DISMISSED]))
            )
        ).all()
    closed = [r for r in rows if r.state == State.CLOSED]
    days = [(r.closed_at - r.created_at) / timedelta(days=1) for r in closed if r.closed_at]
    return Summary(
        total=len(rows),
        this_month=sum(1 for r in rows if r.created_at >= month),
        this_quarter=sum(1 for r in rows if r.created_at >= quarter),
        rectified=len(closed),
        open=len(rows) - len(closed),
        overdue=sum(
            1 for r in rows if r.state == State.RECTIFYING and r.deadline and r.deadline < now
        ),
        rate=round(100 * len(closed) / len(rows), 1) if rows else None,
        median_days=round(statistics.median(days), 1) if days else None,
    )


class Place(BaseModel):
    id: int
    name: str


async def checkpoint_places(rt: Runtime, limit: int = 12) -> list[Place]:
    """Active patrol checkpoints, offered as places for a hazard."""
    async with rt.db.read() as conn:
        rows = (
            await conn.execute(
                select(checkpoints.c.id, checkpoints.c.name)
                .where(checkpoints.c.active.is_(True))
                .order_by(checkpoints.c.name)
                .limit(limit)
            )
        ).all()
    return [Place(id=row.id, name=row.name) for row in rows]
