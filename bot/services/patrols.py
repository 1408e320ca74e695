"""Patrols (巡逻): checkpoints with QR tokens, verified check-ins, routes and their rounds.

A check-in is evidence: who, at which checkpoint, Telegram's server time, the shared location,
its distance from the checkpoint and whether that verifies the visit. A route is walked once per
window; when a window ends, the route's staff group hears once whether the round was complete.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.errors import BadArguments, DomainError, NotAllowed
from bot.logs import log_event
from bot.outbox import Recipient
from bot.qr import qr_png
from bot.runtime import Runtime
from bot.services import org
from bot.services.models import Actor, Group, Person, Purpose, Role, Unit
from bot.services.notify import notify_group
from bot.services.reports import command_groups_for
from bot.store.tables import (
    checkins,
    checkpoints,
    groups,
    patrol_rounds,
    patrol_routes,
    people,
    units,
)

logger = logging.getLogger(__name__)

SCAN_PREFIX = "cp-"  # deep link payload: /start cp-<token>
DEFAULT_RADIUS_M = 50
MIN_RADIUS_M = 10
MAX_RADIUS_M = 1000
MAX_NAME = 64
# A location sent later than this after the scan proves nothing about where the guard stood
# when scanning (they may have walked on), so it does not verify the visit.
STALE_AFTER = timedelta(minutes=2)
# After an outage, windows that ended longer ago than this are not summarised any more: a
# day-old "missed" alert helps nobody and would flood the staff group.
CATCH_UP = timedelta(days=1)
# A window is closed only this long after its end: a check-in stamped just before the end may
# still be in Telegram's queue or our backlog, and must count for the round it belongs to.
CLOSE_GRACE = timedelta(minutes=2)
MAX_EVERY_HOURS = 24
REF_PREFIX = "C-"
EARTH_RADIUS_M = 6_371_008.8
_BAD_NAME = re.compile(r"[\x00-\x1f<>@#/]")
_WINDOW = re.compile(r"^(\d{1,2}):(\d{2})\s*[-–~～至]\s*(\d{1,2}):(\d{2})$")
_EVERY = re.compile(r"^(\d{1,2})h$", re.IGNORECASE)
_LIST_SPLIT = re.compile(r"[,，、]")
VIEWERS = (Role.OFFICER, Role.ADMIN)
WALKERS = (Role.GUARD,)


class Status(StrEnum):
    VERIFIED = "verified"
    FAR = "far"
    NO_LOCATION = "no-location"


class Reason(StrEnum):
    """Why a check-in did not verify although the guard was asked for a location."""

    DECLINED = "declined"  # pressed "no location"
    STALE = "stale"  # the location came too long after the scan
    FORWARDED = "forwarded"  # someone else's (or an old) location, forwarded


class RoundState(StrEnum):
    OPEN = "open"
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    NOT_DONE = "not_done"


# --- refusals --------------------------------------------------------------------------------


class UnknownCheckpoint(DomainError):
    template = "patrols/errors/unknown_checkpoint.j2"


class NameTaken(DomainError):
    template = "patrols/errors/name_taken.j2"


class BadName(DomainError):
    template = "patrols/errors/bad_name.j2"


class BadLink(DomainError):
    """An unknown, re-issued or disabled checkpoint's QR code."""

    template = "patrols/errors/bad_link.j2"


class NotAGuard(DomainError):
    template = "patrols/errors/not_a_guard.j2"


class NotPlaced(DomainError):
    template = "patrols/errors/not_placed.j2"


class NothingNear(DomainError):
    template = "patrols/errors/nothing_near.j2"


class ForwardedLocation(DomainError):
    template = "patrols/errors/forwarded.j2"


class UnknownRoute(DomainError):
    template = "patrols/errors/unknown_route.j2"


class OutsideWindow(DomainError):
    template = "patrols/errors/outside_window.j2"


class UnknownCheckin(DomainError):
    template = "patrols/errors/unknown_checkin.j2"


# --- models ----------------------------------------------------------------------------------


class Checkpoint(BaseModel):
    id: int
    name: str
    unit: Unit
    latitude: float | None
    longitude: float | None
    radius_m: int
    token: str
    active: bool

    @property
    def placed(self) -> bool:
        return self.latitude is not None and self.longitude is not None

    @property
    def payload(self) -> str:
        """The /start payload its QR code carries."""
        return f"{SCAN_PREFIX}{self.token}"


class Checkin(BaseModel):
    id: int
    checkpoint: Checkpoint | None
    guard: Person
    sent_at: datetime
    scanned_at: datetime | None
    latitude: float | None
    longitude: float | None
    distance_m: float | None
    status: Status
    reason: Reason | None
    live: bool
    note: str | None
    photo_path: str | None

    @property
    def reference(self) -> str:
        return reference(self.id)


class Window(BaseModel):
    """A route's daily window in local time; ``every_hours`` splits it into several rounds."""

    start: time
    end: time
    every_hours: int | None = None


class Occurrence(BaseModel):
    """One concrete window (UTC)."""

    starts_at: datetime
    ends_at: datetime


class Route(BaseModel):
    id: int
    name: str
    unit: Unit
    checkpoints: list[Checkpoint]
    window: Window
    active: bool
    created_at: datetime


class RoundView(BaseModel):
    route: Route
    occurrence: Occurrence
    state: RoundState
    visited: list[Checkpoint]
    missing: list[Checkpoint]
    walkers: list[Person]
    checkins: int


class CheckpointCoverage(BaseModel):
    checkpoint: Checkpoint
    verified: int
    far: int
    no_location: int
    last_verified: datetime | None


class Coverage(BaseModel):
    day: date
    checkpoints: list[CheckpointCoverage]
    rounds: list[RoundView]


class RouteSpec(BaseModel):
    """``/route add`` arguments, parsed."""

    name: str
    window: Window
    checkpoint_names: list[str]


# --- pure functions --------------------------------------------------------------------------


def reference(checkin_id: int) -> str:
    return f"{REF_PREFIX}{checkin_id:04d}"


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine): plenty accurate at campus scale."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    d_phi = phi2 - phi1
    d_lambda = math.radians(lon2 - lon1)
    a = math.sin(d_phi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, a)))


@dataclass(frozen=True)
class Assessment:
    status: Status
    reason: Reason | None
    distance_m: float | None


def assess(
    checkpoint: Checkpoint,
    latitude: float | None,
    longitude: float | None,
    *,
    sent_at: datetime,
    scanned_at: datetime | None,
    forwarded: bool = False,
) -> Assessment:
    """Whether a location verifies a visit to ``checkpoint``; the distance is kept either way
    (a far or late location is evidence too)."""
    if latitude is None or longitude is None or not checkpoint.placed:
        return Assessment(Status.NO_LOCATION, Reason.DECLINED, None)
    assert checkpoint.latitude is not None
    assert checkpoint.longitude is not None
    distance = distance_m(checkpoint.latitude, checkpoint.longitude, latitude, longitude)
    if forwarded:
        return Assessment(Status.NO_LOCATION, Reason.FORWARDED, distance)
    if scanned_at is not None and sent_at - scanned_at > STALE_AFTER:
        return Assessment(Status.NO_LOCATION, Reason.STALE, distance)
    status = Status.VERIFIED if distance <= checkpoint.radius_m else Status.FAR
    return Assessment(status, None, distance)


def parse_window(text: str, every: str | None = None) -> Window:
    """ "22:00-06:00" (and optionally "2h") as a Window; BadArguments if unusable."""
    found = _WINDOW.match(text.strip())
    if found is None:
        raise BadArguments(usage="patrols/usage/route.j2")
    h1, m1, h2, m2 = (int(part) for part in found.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59 or (h1, m1) == (h2, m2):
        raise BadArguments(usage="patrols/usage/route.j2")
    every_hours = None
    if every is not None:
        shown = _EVERY.match(every.strip())
        if shown is None or not 1 <= int(shown.group(1)) <= MAX_EVERY_HOURS:
            raise BadArguments(usage="patrols/usage/route.j2")
        every_hours = int(shown.group(1))
    return Window(start=time(h1, m1), end=time(h2, m2), every_hours=every_hours)


def occurrences_on(window: Window, day: date, zone: ZoneInfo) -> list[Occurrence]:
    """The windows that start on local ``day`` (an end before the start is the next day)."""
    start = datetime.combine(day, window.start, zone)
    end = datetime.combine(day, window.end, zone)
    if end <= start:
        end += timedelta(days=1)
    step = timedelta(hours=window.every_hours) if window.every_hours else end - start
    found = []
    current = start
    while current < end:
        found.append(
            Occurrence(
                starts_at=current.astimezone(UTC), ends_at=min(current + step, end).astimezone(UTC)
            )
        )
        current += step
    return found


def occurrence_at(window: Window, moment: datetime, zone: ZoneInfo) -> Occurrence | None:
    """The window containing ``moment``, if any (it may have started the local day before)."""
    today = moment.astimezone(zone).date()
    for day in (today - timedelta(days=1), today):
        for occurrence in occurrences_on(window, day, zone):
            if occurrence.starts_at <= moment < occurrence.ends_at:
                return occurrence
    return None


def occurrences_ending(
    window: Window, after: datetime, until: datetime, zone: ZoneInfo
) -> list[Occurrence]:
    """Windows that ended in (``after``, ``until``], oldest first."""
    first = after.astimezone(zone).date() - timedelta(days=1)
    last = until.astimezone(zone).date()
    found = []
    day = first
    while day <= last:
        found.extend(o for o in occurrences_on(window, day, zone) if after < o.ends_at <= until)
        day += timedelta(days=1)
    return found


def parse_route_args(args: list[str]) -> RouteSpec:
    """``<name> <HH:MM-HH:MM> [every <N>h] <checkpoint names…>``; names may be separated by
    spaces or commas (，、 too)."""
    if len(args) < 3:
        raise BadArguments(usage="patrols/usage/route.j2")
    name, window_text, *rest = args
    every = None
    if len(rest) >= 2 and rest[0].lower() in ("every", "每"):
        every, rest = rest[1], rest[2:]
    window = parse_window(window_text, every)
    names = parse_names(" ".join(rest))
    if not names:
        raise BadArguments(usage="patrols/usage/route.j2")
    return RouteSpec(name=check_name(name), window=window, checkpoint_names=names)


def parse_names(text: str) -> list[str]:
    """Checkpoint names separated by commas if there are any, else by spaces."""
    parts = _LIST_SPLIT.split(text) if _LIST_SPLIT.search(text) else text.split()
    return [part.strip() for part in parts if part.strip()]


def check_name(name: str) -> str:
    """A usable checkpoint or route name, trimmed; BadName otherwise."""
    trimmed = name.strip()
    if not trimmed or len(trimmed) > MAX_NAME or _BAD_NAME.search(trimmed):
        raise BadName(name=name, limit=MAX_NAME)
    return trimmed


def new_token() -> str:
    """Unguessable; "cp-" plus this is 35 characters, well inside Telegram's 64."""
    return secrets.token_urlsafe(24)


def scan_link(bot_username: str, checkpoint: Checkpoint) -> str:
    """The deep link a checkpoint's QR code encodes."""
    return f"https://t.me/{bot_username}?start={checkpoint.payload}"


# --- loading ---------------------------------------------------------------------------------


async def _checkpoints(conn: AsyncConnection, *conditions: Any) -> list[Checkpoint]:
    rows = (
        await conn.execute(select(checkpoints).where(*conditions).order_by(checkpoints.c.name))
    ).all()
    unit_map = {uid: await org.unit_by_id(conn, uid) for uid in {row.unit_id for row in rows}}
    return [
        Checkpoint(
            id=row.id,
            name=row.name,
            unit=unit_map[row.unit_id],
            latitude=row.latitude,
            longitude=row.longitude,
            radius_m=row.radius_m,
            token=row.token,
            active=row.active,
        )
        for row in rows
    ]


async def _checkpoint(conn: AsyncConnection, checkpoint_id: int) -> Checkpoint:
    found = await _checkpoints(conn, checkpoints.c.id == checkpoint_id)
    if not found:
        raise UnknownCheckpoint(name=str(checkpoint_id))
    return found[0]


async def _checkpoint_named(conn: AsyncConnection, name: str) -> Checkpoint:
    found = await _checkpoints(conn, func.lower(checkpoints.c.name) == name.strip().lower())
    if not found:
        raise UnknownCheckpoint(name=name)
    return found[0]


def _route_from_row(row: Row[Any], unit: Unit, by_id: dict[int, Checkpoint]) -> Route:
    return Route(
        id=row.id,
        name=row.name,
        unit=unit,
        checkpoints=[by_id[cid] for cid in row.checkpoint_ids if cid in by_id],
        window=Window(
            start=time.fromisoformat(row.window_start),
            end=time.fromisoformat(row.window_end),
            every_hours=row.every_hours,
        ),
        active=row.active,
        created_at=row.created_at,
    )


async def _routes(conn: AsyncConnection, *conditions: Any) -> list[Route]:
    rows = (
        await conn.execute(select(patrol_routes).where(*conditions).order_by(patrol_routes.c.name))
    ).all()
    wanted = {cid for row in rows for cid in row.checkpoint_ids}
    by_id = {cp.id: cp for cp in await _checkpoints(conn, checkpoints.c.id.in_(wanted))}
    return [_route_from_row(row, await org.unit_by_id(conn, row.unit_id), by_id) for row in rows]


async def _route_named(conn: AsyncConnection, name: str) -> Route:
    found = await _routes(conn, func.lower(patrol_routes.c.name) == name.strip().lower())
    if not found:
        raise UnknownRoute(name=name)
    return found[0]


def _checkin_from_row(row: Row[Any], checkpoint: Checkpoint | None) -> Checkin:
    return Checkin(
        id=row.checkin_id,
        checkpoint=checkpoint,
        guard=org.person_from_row(row),
        sent_at=row.sent_at,
        scanned_at=row.scanned_at,
        latitude=row.c_latitude,
        longitude=row.c_longitude,
        distance_m=row.distance_m,
        status=Status(row.status),
        reason=Reason(row.reason) if row.reason else None,
        live=row.live,
        note=row.note,
        photo_path=row.photo_path,
    )


async def _checkins(conn: AsyncConnection, *conditions: Any) -> list[Checkin]:
    rows = (
        await conn.execute(
            select(
                people,
                checkins.c.id.label("checkin_id"),
                checkins.c.checkpoint_id,
                checkins.c.sent_at,
                checkins.c.scanned_at,
                checkins.c.latitude.label("c_latitude"),
                checkins.c.longitude.label("c_longitude"),
                checkins.c.distance_m,
                checkins.c.status,
                checkins.c.reason,
                checkins.c.live,
                checkins.c.note,
                checkins.c.photo_path,
            )
            .join(people, people.c.id == checkins.c.guard_id)
            .where(*conditions)
            .order_by(checkins.c.sent_at, checkins.c.id)
        )
    ).all()
    wanted = {row.checkpoint_id for row in rows if row.checkpoint_id is not None}
    by_id = {cp.id: cp for cp in await _checkpoints(conn, checkpoints.c.id.in_(wanted))}
    return [_checkin_from_row(row, by_id.get(row.checkpoint_id)) for row in rows]


# --- checkpoints (admins) --------------------------------------------------------------------


async def _admin_checkpoint(conn: AsyncConnection, actor: Actor, checkpoint_id: int) -> Checkpoint:
    checkpoint = await _checkpoint(conn, checkpoint_id)
    actor.require_admin(checkpoint.unit)
    return checkpoint


async def _name_free(conn: AsyncConnection, table: Any, name: str, own_id: int | None) -> None:
    row = (
        await conn.execute(select(table.c.id).where(func.lower(table.c.name) == name.lower()))
    ).first()
    if row is not None and row.id != own_id:
        raise NameTaken(name=name)


async def add_checkpoint(rt: Runtime, actor: Actor, name: str, unit_path: str | None) -> Checkpoint:
    """A new checkpoint in ``unit_path`` (the school when empty), without coordinates yet."""
    name = check_name(name)
    now = rt.now()
    async with rt.db.transaction() as conn:
        unit = await org.find_unit(conn, unit_path, now)
        actor.require_admin(unit)
        await _name_free(conn, checkpoints, name, None)
        checkpoint_id = (
            await conn.execute(
                insert(checkpoints).values(
                    name=name,
                    unit_id=unit.id,
                    radius_m=DEFAULT_RADIUS_M,
                    token=new_token(),
                    active=True,
                    created_at=now,
                    updated_at=now,
                )
            )
        ).inserted_primary_key[0]
        await org.record(conn, now, actor, "checkpoint_added", f"checkpoint:{checkpoint_id}")
        return await _checkpoint(conn, checkpoint_id)


async def _change(
    rt: Runtime, actor: Actor, checkpoint_id: int, action: str, **values: Any
) -> Checkpoint:
    now = rt.now()
    async with rt.db.transaction() as conn:
        await _admin_checkpoint(conn, actor, checkpoint_id)
        if "name" in values:
            await _name_free(conn, checkpoints, values["name"], checkpoint_id)
        await conn.execute(
            update(checkpoints)
            .where(checkpoints.c.id == checkpoint_id)
            .values(updated_at=now, **values)
        )
        # The token itself is a secret: the audit log only says it changed.
        detail = {k: v for k, v in values.items() if k != "token"}
        await org.record(conn, now, actor, action, f"checkpoint:{checkpoint_id}", **detail)
        return await _checkpoint(conn, checkpoint_id)


async def place_checkpoint(
    rt: Runtime, actor: Actor, checkpoint_id: int, latitude: float, longitude: float
) -> Checkpoint:
    """Set (or move) a checkpoint's coordinates."""
    return await _change(
        rt, actor, checkpoint_id, "checkpoint_placed", latitude=latitude, longitude=longitude
    )


async def rename_checkpoint(rt: Runtime, actor: Actor, checkpoint_id: int, name: str) -> Checkpoint:
    return await _change(rt, actor, checkpoint_id, "checkpoint_renamed", name=check_name(name))


async def set_radius(rt: Runtime, actor: Actor, checkpoint_id: int, text: str) -> Checkpoint:
    """The radius (metres) within which a location verifies a visit."""
    value = text.strip().lower().removesuffix("m").strip()
    if not value.isdigit() or not MIN_RADIUS_M <= int(value) <= MAX_RADIUS_M:
        raise BadArguments(usage="patrols/usage/radius.j2")
    return await _change(rt, actor, checkpoint_id, "checkpoint_radius", radius_m=int(value))


async def set_active(rt: Runtime, actor: Actor, checkpoint_id: int, active: bool) -> Checkpoint:
    """Disable (its QR stops working, it leaves the coverage views) or enable a checkpoint."""
    action = "checkpoint_enabled" if active else "checkpoint_disabled"
    return await _change(rt, actor, checkpoint_id, action, active=active)


async def reissue_token(rt: Runtime, actor: Actor, checkpoint_id: int) -> Checkpoint:
    """A new token: every printed copy of the old QR code stops working."""
    return await _change(rt, actor, checkpoint_id, "checkpoint_reissued", token=new_token())


async def checkpoint_for_admin(rt: Runtime, actor: Actor, checkpoint_id: int) -> Checkpoint:
    async with rt.db.read() as conn:
        return await _admin_checkpoint(conn, actor, checkpoint_id)


async def list_checkpoints(rt: Runtime, actor: Actor) -> list[Checkpoint]:
    """The checkpoints the actor administers (disabled ones too, to re-enable them)."""
    if not actor.has_role(Role.ADMIN):
        raise NotAllowed(needed=Role.ADMIN, unit="")
    async with rt.db.read() as conn:
        found = await _checkpoints(conn)
    return [cp for cp in found if actor.has_role(Role.ADMIN, cp.unit)]


async def active_checkpoints(rt: Runtime) -> list[Checkpoint]:
    """Every active checkpoint (for printing the QR sheet)."""
    async with rt.db.read() as conn:
        return await _checkpoints(conn, checkpoints.c.active.is_(True))


def write_qr_codes(found: list[Checkpoint], out: Path, bot_username: str) -> list[Path]:
    """One PNG per checkpoint in ``out`` plus ``index.html``, a printable sheet with each
    checkpoint's name under its code (segno draws no text and Pillow is not a dependency)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    cells = []
    for checkpoint in found:
        file_name = f"checkpoint-{checkpoint.id:04d}.png"
        (out / file_name).write_bytes(qr_png(scan_link(bot_username, checkpoint)))
        written.append(out / file_name)
        cells.append(
            f'<figure><img src="{file_name}" alt=""><figcaption>{_html(checkpoint.name)}'
            f"</figcaption></figure>"
        )
    sheet = out / "index.html"
    sheet.write_text(
        '<!doctype html><meta charset="utf-8"><title>QR</title><style>'
        "figure{display:inline-block;margin:12px;text-align:center;page-break-inside:avoid}"
        "img{width:6cm}figcaption{font-size:20pt}</style>" + "".join(cells),
        encoding="utf-8",
    )
    written.append(sheet)
    return written


def _html(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --- check-ins (guards) ----------------------------------------------------------------------


def _require_guard(actor: Actor, checkpoint: Checkpoint) -> None:
    if not actor.has_role(Role.GUARD, checkpoint.unit):
        raise NotAGuard()


async def _scanned(conn: AsyncConnection, actor: Actor, token: str) -> Checkpoint:
    found = await _checkpoints(conn, checkpoints.c.token == token)
    if not found or not found[0].active:
        raise BadLink()
    _require_guard(actor, found[0])
    if not found[0].placed:
        raise NotPlaced(checkpoint=found[0])
    return found[0]


async def scan(rt: Runtime, actor: Actor, token: str) -> Checkpoint:
    """A guard scanned a checkpoint's QR code: the checkpoint, if the code is current."""
    async with rt.db.read() as conn:
        return await _scanned(conn, actor, token)


async def _ensure_round(
    conn: AsyncConnection, route: Route, occurrence: Occurrence, now: datetime, by: int | None
) -> int:
    """The round of ``route`` in ``occurrence``, created on first use (the unique key settles
    a race between two first check-ins)."""
    condition = (
        patrol_rounds.c.route_id == route.id,
        patrol_rounds.c.window_start == occurrence.starts_at,
    )
    row = (await conn.execute(select(patrol_rounds.c.id).where(*condition))).first()
    if row is None:
        try:
            async with conn.begin_nested():
                await conn.execute(
                    insert(patrol_rounds).values(
                        route_id=route.id,
                        window_start=occurrence.starts_at,
                        window_end=occurrence.ends_at,
                        started_by=by,
                        started_at=now,
                        state=RoundState.OPEN,
                    )
                )
        except IntegrityError:
            pass
        row = (await conn.execute(select(patrol_rounds.c.id).where(*condition))).one()
    return int(row.id)


async def _record_checkin(
    conn: AsyncConnection,
    rt: Runtime,
    actor: Actor,
    checkpoint: Checkpoint,
    assessment: Assessment,
    *,
    latitude: float | None,
    longitude: float | None,
    live: bool,
    sent_at: datetime,
    scanned_at: datetime | None,
) -> Checkin:
    now = rt.now()
    round_id = None
    # The first check-in at a route's checkpoint inside its window opens the round.
    for route in await _routes(conn, patrol_routes.c.active.is_(True)):
        if checkpoint.id not in {cp.id for cp in route.checkpoints}:
            continue
        occurrence = occurrence_at(route.window, sent_at, rt.settings.zone)
        if occurrence is not None:
            found = await _ensure_round(conn, route, occurrence, now, None)
            round_id = round_id or found
    checkin_id = (
        await conn.execute(
            insert(checkins).values(
                checkpoint_id=checkpoint.id,
                guard_id=actor.person.id,
                sent_at=sent_at,
                scanned_at=scanned_at,
                latitude=latitude,
                longitude=longitude,
                distance_m=assessment.distance_m,
                status=assessment.status,
                reason=assessment.reason,
                live=live,
                round_id=round_id,
                created_at=now,
            )
        )
    ).inserted_primary_key[0]
    return (await _checkins(conn, checkins.c.id == checkin_id))[0]


async def check_in(
    rt: Runtime,
    actor: Actor,
    token: str,
    *,
    latitude: float | None,
    longitude: float | None,
    live: bool,
    sent_at: datetime,
    scanned_at: datetime,
    forwarded: bool = False,
) -> Checkin:
    """Record a check-in after a scan (``latitude`` None: the guard declined to share). The
    token is checked again: the code may have been re-issued since the scan."""
    async with rt.db.transaction() as conn:
        checkpoint = await _scanned(conn, actor, token)
        assessment = assess(
            checkpoint,
            latitude,
            longitude,
            sent_at=sent_at,
            scanned_at=scanned_at,
            forwarded=forwarded,
        )
        return await _record_checkin(
            conn,
            rt,
            actor,
            checkpoint,
            assessment,
            latitude=latitude,
            longitude=longitude,
            live=live,
            sent_at=sent_at,
            scanned_at=scanned_at,
        )


async def check_in_nearby(
    rt: Runtime,
    actor: Actor,
    *,
    latitude: float,
    longitude: float,
    live: bool,
    sent_at: datetime,
    forwarded: bool = False,
) -> Checkin:
    """A location shared without a scan: a verified check-in at the nearest active checkpoint
    whose radius it lies in (among those the actor guards); NothingNear otherwise."""
    if not actor.has_role(Role.GUARD):
        raise NotAGuard()
    if forwarded:
        raise ForwardedLocation()
    async with rt.db.transaction() as conn:
        candidates = []
        for checkpoint in await _checkpoints(conn, checkpoints.c.active.is_(True)):
            if not checkpoint.placed or not actor.has_role(Role.GUARD, checkpoint.unit):
                continue
            assert checkpoint.latitude is not None
            assert checkpoint.longitude is not None
            distance = distance_m(checkpoint.latitude, checkpoint.longitude, latitude, longitude)
            if distance <= checkpoint.radius_m:
                candidates.append((distance, checkpoint))
        if not candidates:
            raise NothingNear()
        distance, checkpoint = min(candidates, key=lambda pair: pair[0])
        return await _record_checkin(
            conn,
            rt,
            actor,
            checkpoint,
            Assessment(Status.VERIFIED, None, distance),
            latitude=latitude,
            longitude=longitude,
            live=live,
            sent_at=sent_at,
            scanned_at=None,
        )


async def _own_checkin(conn: AsyncConnection, actor: Actor, checkin_id: int) -> Checkin:
    found = await _checkins(conn, checkins.c.id == checkin_id)
    if not found or found[0].guard.id != actor.person.id:
        raise UnknownCheckin(reference=reference(checkin_id))
    return found[0]


async def own_checkin(rt: Runtime, actor: Actor, checkin_id: int) -> Checkin:
    """A check-in the actor made (the only one they may add a note, photo or problem to)."""
    async with rt.db.read() as conn:
        return await _own_checkin(conn, actor, checkin_id)


async def add_note(rt: Runtime, actor: Actor, checkin_id: int, note: str) -> Checkin:
    """Attach the guard's note to their check-in (a later note is appended, not replacing)."""
    text = note.strip()
    if not text:
        raise BadArguments(usage="patrols/usage/note.j2")
    async with rt.db.transaction() as conn:
        checkin = await _own_checkin(conn, actor, checkin_id)
        combined = f"{checkin.note}\n{text}" if checkin.note else text
        await conn.execute(
            update(checkins).where(checkins.c.id == checkin_id).values(note=combined[:4000])
        )
        return (await _checkins(conn, checkins.c.id == checkin_id))[0]


async def add_photo(rt: Runtime, actor: Actor, checkin_id: int, path: str) -> Checkin:
    """Attach a photo (a path under DATA_DIR) to the guard's check-in."""
    async with rt.db.transaction() as conn:
        await _own_checkin(conn, actor, checkin_id)
        await conn.execute(
            update(checkins).where(checkins.c.id == checkin_id).values(photo_path=path)
        )
        return (await _checkins(conn, checkins.c.id == checkin_id))[0]


# --- routes (admins) -------------------------------------------------------------------------


async def _route_checkpoints(
    conn: AsyncConnection, actor: Actor, names: list[str]
) -> tuple[list[Checkpoint], Unit]:
    found = []
    for name in names:
        checkpoint = await _checkpoint_named(conn, name)
        actor.require_admin(checkpoint.unit)
        if checkpoint.id not in {cp.id for cp in found}:
            found.append(checkpoint)
    # The route belongs to the deepest unit containing every checkpoint: the longest
    # common prefix of their id paths.
    paths = [cp.unit.id_path.strip("/").split("/") for cp in found]
    shared = []
    for parts in zip(*paths, strict=False):
        if len(set(parts)) != 1:
            break
        shared.append(int(parts[0]))
    return found, await org.unit_by_id(conn, shared[-1])


async def add_route(rt: Runtime, actor: Actor, args: list[str]) -> Route:
    """``/route add``: a route over existing checkpoints; it belongs to their common unit."""
    spec = parse_route_args(args)
    now = rt.now()
    async with rt.db.transaction() as conn:
        found, unit = await _route_checkpoints(conn, actor, spec.checkpoint_names)
        await _name_free(conn, patrol_routes, spec.name, None)
        route_id = (
            await conn.execute(
                insert(patrol_routes).values(
                    name=spec.name,
                    unit_id=unit.id,
                    checkpoint_ids=[cp.id for cp in found],
                    window_start=spec.window.start.strftime("%H:%M"),
                    window_end=spec.window.end.strftime("%H:%M"),
                    every_hours=spec.window.every_hours,
                    active=True,
                    created_at=now,
                    updated_at=now,
                )
            )
        ).inserted_primary_key[0]
        await org.record(conn, now, actor, "route_added", f"route:{route_id}", name=spec.name)
        return (await _routes(conn, patrol_routes.c.id == route_id))[0]


async def edit_route(rt: Runtime, actor: Actor, args: list[str]) -> Route:
    """``/route rename|window|points|disable|enable <name> …``."""
    if len(args) < 2:
        raise BadArguments(usage="patrols/usage/route.j2")
    action, name, *rest = args
    now = rt.now()
    async with rt.db.transaction() as conn:
        route = await _route_named(conn, name)
        actor.require_admin(route.unit)
        values: dict[str, Any]
        if action == "rename" and len(rest) == 1:
            values = {"name": check_name(rest[0])}
            await _name_free(conn, patrol_routes, values["name"], route.id)
        elif action == "window" and len(rest) in (1, 3):
            every = rest[2] if len(rest) == 3 and rest[1].lower() in ("every", "每") else None
            if len(rest) == 3 and every is None:
                raise BadArguments(usage="patrols/usage/route.j2")
            window = parse_window(rest[0], every)
            values = {
                "window_start": window.start.strftime("%H:%M"),
                "window_end": window.end.strftime("%H:%M"),
                "every_hours": window.every_hours,
            }
        elif action == "points" and (names := parse_names(" ".join(rest))):
            found, unit = await _route_checkpoints(conn, actor, names)
            values = {"checkpoint_ids": [cp.id for cp in found], "unit_id": unit.id}
        elif action in ("disable", "enable") and not rest:
            values = {"active": action == "enable"}
        else:
            raise BadArguments(usage="patrols/usage/route.j2")
        await conn.execute(
            update(patrol_routes)
            .where(patrol_routes.c.id == route.id)
            .values(updated_at=now, **values)
        )
        await org.record(conn, now, actor, f"route_{action}", f"route:{route.id}")
        return (await _routes(conn, patrol_routes.c.id == route.id))[0]


async def list_routes(rt: Runtime, actor: Actor) -> list[Route]:
    """Routes the actor may walk, handle or administer."""
    async with rt.db.read() as conn:
        found = await _routes(conn)
    return [r for r in found if any(actor.has_role(x, r.unit) for x in (*VIEWERS, *WALKERS))]


# --- rounds ----------------------------------------------------------------------------------


async def _round_view(
    conn: AsyncConnection, route: Route, occurrence: Occurrence, now: datetime
) -> RoundView:
    """The round as walked over the route's active checkpoints: a disabled one cannot be
    scanned, so it is neither expected nor "missed" (the route keeps it for re-enabling)."""
    route = route.model_copy(update={"checkpoints": [cp for cp in route.checkpoints if cp.active]})
    ids = [cp.id for cp in route.checkpoints]
    found = await _checkins(
        conn,
        checkins.c.checkpoint_id.in_(ids),
        checkins.c.sent_at >= occurrence.starts_at,
        checkins.c.sent_at < occurrence.ends_at,
    )
    verified = {c.checkpoint.id for c in found if c.status is Status.VERIFIED and c.checkpoint}
    walkers: dict[int, Person] = {}
    for checkin in found:
        walkers.setdefault(checkin.guard.id, checkin.guard)
    missing = [cp for cp in route.checkpoints if cp.id not in verified]
    if occurrence.ends_at > now:
        state = RoundState.OPEN
    elif not found:
        state = RoundState.NOT_DONE
    else:
        state = RoundState.INCOMPLETE if missing else RoundState.COMPLETE
    return RoundView(
        route=route,
        occurrence=occurrence,
        state=state,
        visited=[cp for cp in route.checkpoints if cp.id in verified],
        missing=missing,
        walkers=list(walkers.values()),
        checkins=len(found),
    )


async def start_round(rt: Runtime, actor: Actor, route_name: str) -> RoundView:
    """``/round start <route>``: open the route's round in the current window explicitly."""
    now = rt.now()
    async with rt.db.transaction() as conn:
        route = await _route_named(conn, route_name)
        if not route.active:
            raise UnknownRoute(name=route_name)
        if not actor.has_role(Role.GUARD, route.unit):
            raise NotAGuard()
        occurrence = occurrence_at(route.window, now, rt.settings.zone)
        if occurrence is None:
            raise OutsideWindow(route=route)
        round_id = await _ensure_round(conn, route, occurrence, now, actor.person.id)
        await conn.execute(
            update(patrol_rounds)
            .where(patrol_rounds.c.id == round_id, patrol_rounds.c.started_by.is_(None))
            .values(started_by=actor.person.id)
        )
        return await _round_view(conn, route, occurrence, now)


async def open_rounds(rt: Runtime, actor: Actor) -> list[RoundView]:
    """Rounds whose window is open now, on routes the actor walks or watches."""
    now = rt.now()
    async with rt.db.read() as conn:
        views = []
        for route in await _routes(conn, patrol_routes.c.active.is_(True)):
            if not any(actor.has_role(x, route.unit) for x in (*VIEWERS, *WALKERS)):
                continue
            occurrence = occurrence_at(route.window, now, rt.settings.zone)
            if occurrence is not None:
                views.append(await _round_view(conn, route, occurrence, now))
        return views


async def staff_groups_for(conn: AsyncConnection, unit: Unit) -> list[Group]:
    """The staff groups bound to ``unit`` or its nearest ancestor that has any; the command
    groups if no staff group covers it (a missed round must reach someone)."""
    rows = (
        await conn.execute(
            select(groups.c.channel, groups.c.address, units.c.id_path)
            .join(units, units.c.id == groups.c.unit_id)
            .where(groups.c.purpose == Purpose.STAFF, groups.c.left_at.is_(None))
        )
    ).all()
    covering = [row for row in rows if unit.id_path.startswith(row.id_path)]
    if not covering:
        return await command_groups_for(conn, unit)
    nearest = max(len(row.id_path) for row in covering)
    found = []
    for row in covering:
        if len(row.id_path) == nearest:
            group = await org.group_at(conn, Recipient(row.channel, row.address))
            if group is not None:
                found.append(group)
    return found


async def _close(rt: Runtime, route: Route, occurrence: Occurrence) -> RoundView | None:
    """Summarise one ended window to the staff groups; None if another pass already did.
    Marking the round and queueing the message share one transaction: both or neither."""
    now = rt.now()
    async with rt.db.transaction() as conn:
        round_id = await _ensure_round(conn, route, occurrence, now, None)
        view = await _round_view(conn, route, occurrence, now)
        marked = await conn.execute(
            update(patrol_rounds)
            .where(patrol_rounds.c.id == round_id, patrol_rounds.c.summary_sent_at.is_(None))
            .values(summary_sent_at=now, state=view.state)
        )
        if marked.rowcount != 1:
            return None
        for group in await staff_groups_for(conn, route.unit):
            await notify_group(
                conn, rt, group, "patrols/round_summary.j2", topic="patrols.summary", view=view
            )
    log_event(
        logger,
        "round_closed",
        route=route.id,
        window=occurrence.starts_at.isoformat(),
        state=view.state,
        missing=len(view.missing),
    )
    return view


async def run_due(rt: Runtime) -> list[RoundView]:
    """One pass at ``rt.now()``: summarise every window that ended at least CLOSE_GRACE ago
    (at most CATCH_UP back) and has not been summarised: each window of an active route since
    the route existed, and each round already opened whatever its route's window or active flag
    is now (a round opened before the window was edited or the route disabled is still owed
    its summary).

    Everything is read from the database, so a restart, an outage or a second timer neither
    skips a window nor reports one twice."""
    now = rt.now()
    until = now - CLOSE_GRACE
    async with rt.db.read() as conn:
        rounds = (
            await conn.execute(
                select(
                    patrol_rounds.c.route_id,
                    patrol_rounds.c.window_start,
                    patrol_rounds.c.window_end,
                    patrol_rounds.c.summary_sent_at,
                ).where(patrol_rounds.c.window_end > now - CATCH_UP)
            )
        ).all()
        routes = {route.id: route for route in await _routes(conn)}
    sent = {(row.route_id, row.window_start) for row in rounds if row.summary_sent_at is not None}
    due: dict[tuple[int, datetime], tuple[Route, Occurrence]] = {}
    for route in routes.values():
        if not route.active:
            continue
        since = max(route.created_at, now - CATCH_UP)
        for occurrence in occurrences_ending(route.window, since, until, rt.settings.zone):
            due[(route.id, occurrence.starts_at)] = (route, occurrence)
    for row in rounds:
        if row.summary_sent_at is None and row.window_end <= until:
            occurrence = Occurrence(starts_at=row.window_start, ends_at=row.window_end)
            due[(row.route_id, row.window_start)] = (routes[row.route_id], occurrence)
    closed = []
    for key, (route, occurrence) in sorted(due.items(), key=lambda item: item[1][1].ends_at):
        if key in sent:
            continue
        view = await _close(rt, route, occurrence)
        if view is not None:
            closed.append(view)
    return closed


# --- views (officers, admins) ----------------------------------------------------------------


def _require_viewer(actor: Actor) -> None:
    if not any(actor.has_role(role) for role in VIEWERS):
        raise NotAllowed(needed=Role.OFFICER, unit="")


def parse_day(text: str | None, now: datetime, zone: ZoneInfo) -> date:
    """ "today" (default), "yesterday" (also 今天/昨天) or YYYY-MM-DD."""
    today = now.astimezone(zone).date()
    word = (text or "today").strip().lower()
    if word in ("today", "今天"):
        return today
    if word in ("yesterday", "昨天"):
        return today - timedelta(days=1)
    try:
        return date.fromisoformat(word)
    except ValueError:
        raise BadArguments(usage="patrols/usage/patrols.j2") from None


def _day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), zone)
    return start, datetime.combine(day + timedelta(days=1), time(0), zone)


async def coverage(rt: Runtime, actor: Actor, day: date) -> Coverage:
    """Per checkpoint: check-ins by status on local ``day``; per route: its rounds that day."""
    _require_viewer(actor)
    zone = rt.settings.zone
    start, end = _day_bounds(day, zone)
    now = rt.now()
    async with rt.db.read() as conn:
        shown = [
            cp
            for cp in await _checkpoints(conn, checkpoints.c.active.is_(True))
            if any(actor.has_role(role, cp.unit) for role in VIEWERS)
        ]
        found = await _checkins(
            conn,
            checkins.c.checkpoint_id.in_([cp.id for cp in shown]),
            checkins.c.sent_at >= start,
            checkins.c.sent_at < end,
        )
        per_checkpoint = []
        for cp in shown:
            own = [c for c in found if c.checkpoint and c.checkpoint.id == cp.id]
            verified = [c for c in own if c.status is Status.VERIFIED]
            per_checkpoint.append(
                CheckpointCoverage(
                    checkpoint=cp,
                    verified=len(verified),
                    far=sum(c.status is Status.FAR for c in own),
                    no_location=sum(c.status is Status.NO_LOCATION for c in own),
                    last_verified=verified[-1].sent_at if verified else None,
                )
            )
        rounds = []
        for route in await _routes(conn, patrol_routes.c.active.is_(True)):
            if not any(actor.has_role(role, route.unit) for role in VIEWERS):
                continue
            for occurrence in occurrences_on(route.window, day, zone):
                if occurrence.starts_at <= now:
                    rounds.append(await _round_view(conn, route, occurrence, now))
    return Coverage(day=day, checkpoints=per_checkpoint, rounds=rounds)


async def checkins_at(rt: Runtime, actor: Actor, checkpoint_id: int, day: date) -> list[Checkin]:
    """Every check-in at a checkpoint on local ``day``, with all its details."""
    _require_viewer(actor)
    start, end = _day_bounds(day, rt.settings.zone)
    async with rt.db.read() as conn:
        checkpoint = await _checkpoint(conn, checkpoint_id)
        if not any(actor.has_role(role, checkpoint.unit) for role in VIEWERS):
            raise NotAllowed(needed=Role.OFFICER, unit=checkpoint.unit.path)
        return await _checkins(
            conn,
            checkins.c.checkpoint_id == checkpoint_id,
            checkins.c.sent_at >= start,
            checkins.c.sent_at < end,
        )


class CompletedRound(BaseModel):
    route: str
    window_start: datetime


async def rounds_complete(rt: Runtime, since: datetime, until: datetime) -> list[CompletedRound]:
    """The rounds whose window started in [since, until) and that were closed complete (every
    checkpoint verified), oldest first: the evidence the compliance calendar counts."""
    async with rt.db.read() as conn:
        rows = (
            await conn.execute(
                select(patrol_routes.c.name, patrol_rounds.c.window_start)
                .join(patrol_routes, patrol_routes.c.id == patrol_rounds.c.route_id)
                .where(
                    patrol_rounds.c.state == RoundState.COMPLETE,
                    patrol_rounds.c.window_start >= since,
                    patrol_rounds.c.window_start < until,
                )
                .order_by(patrol_rounds.c.window_start)
            )
        ).all()
    return [CompletedRound(route=row.name, window_start=row.window_start) for row in rows]
