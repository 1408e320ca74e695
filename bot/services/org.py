"""Organisation: the unit tree, people and their roles, group chats and what they are for."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

from bot.errors import (
    BadArguments,
    BadUnitPath,
    DomainError,
    NotAllowed,
    UnknownPerson,
    UnknownUnit,
)
from bot.outbox import Recipient
from bot.outbox.queue import readdress
from bot.render import choose_locale
from bot.runtime import Runtime
from bot.services.models import (
    Actor,
    Grant,
    Group,
    Person,
    Profile,
    Purpose,
    Role,
    Unit,
    UnitKind,
)
from bot.services.notify import notify_group, notify_person
from bot.store.tables import audit_log, groups, people, roles, units

MAX_UNIT_DEPTH = 6
MAX_UNIT_NAME = 64
PAGE_SIZE = 20
_BAD_NAME = re.compile(r"[\x00-\x1f<>@#]")


class GroupNotBound(DomainError):
    template = "org/errors/not_bound.j2"


class RoleNotHeld(DomainError):
    template = "org/errors/role_not_held.j2"


class AmbiguousRole(DomainError):
    template = "org/errors/ambiguous_role.j2"


class PurposeNeedsUnit(DomainError):
    template = "org/errors/purpose_needs_unit.j2"


class Page(BaseModel):
    """One page of a longer list."""

    number: int  # 0-based
    total_pages: int


class PersonWithRoles(BaseModel):
    person: Person
    grants: list[Grant]


class PeoplePage(Page):
    unit: Unit
    people: list[PersonWithRoles]
    total: int


# --- audit ---------------------------------------------------------------------------------


async def record(
    conn: AsyncConnection,
    now: datetime,
    actor: Actor | None,
    action: str,
    subject: str,
    **detail: Any,
) -> None:
    """Append an entry to the audit log (who did what to which subject, when)."""
    await conn.execute(
        insert(audit_log).values(
            at=now,
            actor_id=actor.person.id if actor else None,
            action=action,
            subject=subject,
            detail=detail,
        )
    )


# --- units ---------------------------------------------------------------------------------


def parse_unit_path(text: str) -> list[str]:
    """Split "信息学院/计科2201" into names; raise BadUnitPath for anything unusable."""
    names = [name.strip() for name in text.replace("／", "/").strip().strip("/").split("/")]
    if not text.strip() or any(not name for name in names):
        raise BadUnitPath(path=text)
    if len(names) > MAX_UNIT_DEPTH:
        raise BadUnitPath(path=text, depth=MAX_UNIT_DEPTH)
    for name in names:
        if len(name) > MAX_UNIT_NAME or _BAD_NAME.search(name):
            raise BadUnitPath(path=text, name=name)
    return names


async def _units_by_id(conn: AsyncConnection, ids: Iterable[int]) -> dict[int, Unit]:
    """Load units with their display paths (one query for the units and all their ancestors)."""
    wanted = set(ids)
    if not wanted:
        return {}
    rows = (await conn.execute(select(units).where(units.c.id.in_(wanted)))).all()
    ancestor_ids = {int(part) for row in rows for part in row.id_path.strip("/").split("/")}
    names = {
        row.id: (row.name, row.parent_id)
        for row in (
            await conn.execute(
                select(units.c.id, units.c.name, units.c.parent_id).where(
                    units.c.id.in_(ancestor_ids)
                )
            )
        ).all()
    }
    result = {}
    for row in rows:
        chain = [int(part) for part in row.id_path.strip("/").split("/")]
        path = "/".join(names[uid][0] for uid in chain if names[uid][1] is not None)
        result[row.id] = Unit(
            id=row.id,
            parent_id=row.parent_id,
            name=row.name,
            kind=UnitKind(row.kind),
            id_path=row.id_path,
            path=path,
        )
    return result


async def unit_by_id(conn: AsyncConnection, unit_id: int) -> Unit:
    found = await _units_by_id(conn, [unit_id])
    if unit_id not in found:
        raise UnknownUnit(path=str(unit_id))
    return found[unit_id]


async def root_unit(conn: AsyncConnection, now: datetime) -> Unit:
    """The school itself (created on first use)."""
    row = (await conn.execute(select(units.c.id).where(units.c.parent_id.is_(None)))).first()
    if row is None:
        unit_id = (
            await conn.execute(
                insert(units).values(
                    parent_id=None, name="", kind=UnitKind.SCHOOL, id_path="/", created_at=now
                )
            )
        ).inserted_primary_key[0]
        await conn.execute(
            update(units).where(units.c.id == unit_id).values(id_path=f"/{unit_id}/")
        )
        return await unit_by_id(conn, unit_id)
    return await unit_by_id(conn, row.id)


async def _walk(conn: AsyncConnection, names: list[str], now: datetime) -> tuple[Unit, list[str]]:
    """Follow ``names`` from the root: the deepest existing unit and the names left over."""
    current = await root_unit(conn, now)
    for index, name in enumerate(names):
        row = (
            await conn.execute(
                select(units.c.id).where(units.c.parent_id == current.id, units.c.name == name)
            )
        ).first()
        if row is None:
            return current, names[index:]
        current = await unit_by_id(conn, row.id)
    return current, []


async def find_unit(conn: AsyncConnection, path: str | None, now: datetime) -> Unit:
    """The unit at ``path`` (the school when empty); UnknownUnit if it does not exist."""
    if not path:
        return await root_unit(conn, now)
    unit, missing = await _walk(conn, parse_unit_path(path), now)
    if missing:
        raise UnknownUnit(path=path)
    return unit


async def ensure_unit(
    conn: AsyncConnection, actor: Actor, path: str, now: datetime, kind: UnitKind | None = None
) -> Unit:
    """The unit at ``path``, creating missing units (the actor must administer the deepest
    existing one). ``kind`` marks the leaf (e.g. a class) if it was not known yet."""
    deepest, missing = await _walk(conn, parse_unit_path(path), now)
    actor.require_admin(deepest)
    for name in missing:
        created = await _inserted(
            conn,
            insert(units).values(
                parent_id=deepest.id, name=name, kind=UnitKind.UNIT, id_path="", created_at=now
            ),
        )
        new_id = (
            await conn.execute(
                select(units.c.id).where(units.c.parent_id == deepest.id, units.c.name == name)
            )
        ).scalar_one()
        if created:
            await conn.execute(
                update(units)
                .where(units.c.id == new_id)
                .values(id_path=f"{deepest.id_path}{new_id}/")
            )
        deepest = await unit_by_id(conn, new_id)
        if created:
            await record(conn, now, actor, "unit_created", f"unit:{new_id}", path=deepest.path)
    if kind is not None and deepest.kind is UnitKind.UNIT:
        await conn.execute(update(units).where(units.c.id == deepest.id).values(kind=kind))
        if kind is UnitKind.CLASS and deepest.parent_id is not None:
            # A class's parent is a college unless it is already known as something else.
            await conn.execute(
                update(units)
                .where(units.c.id == deepest.parent_id, units.c.kind == UnitKind.UNIT)
                .values(kind=UnitKind.COLLEGE)
            )
        deepest = await unit_by_id(conn, deepest.id)
    return deepest


# --- people --------------------------------------------------------------------------------


async def _inserted(conn: AsyncConnection, statement: Insert) -> bool:
    """Run an INSERT that a concurrent writer may have beaten us to (a unique key): False if
    the row already exists. SQLite serialises writers anyway; PostgreSQL does not."""
    try:
        async with conn.begin_nested():
            await conn.execute(statement)
    except IntegrityError:
        return False
    return True


def person_from_row(row: Row[Any]) -> Person:
    return Person(
        id=row.id,
        telegram_id=row.telegram_id,
        username=row.username,
        full_name=row.full_name,
        language_code=row.language_code,
        locale=row.locale,
        started=row.started_at is not None,
    )


async def people_by_id(conn: AsyncConnection, ids: set[int]) -> dict[int, Person]:
    """The people with these ids (a history's actors, say), by id."""
    rows = await conn.execute(select(people).where(people.c.id.in_(ids)))
    return {row.id: person_from_row(row) for row in rows.all()}


async def _grants_of(conn: AsyncConnection, person_ids: list[int]) -> dict[int, list[Grant]]:
    rows = (
        await conn.execute(
            select(roles.c.person_id, roles.c.role, roles.c.unit_id)
            .where(roles.c.person_id.in_(person_ids), roles.c.revoked_at.is_(None))
            .order_by(roles.c.id)
        )
    ).all()
    unit_map = await _units_by_id(conn, {row.unit_id for row in rows})
    grants: dict[int, list[Grant]] = {pid: [] for pid in person_ids}
    for row in rows:
        grants[row.person_id].append(Grant(role=Role(row.role), unit=unit_map[row.unit_id]))
    return grants


def _actor(rt: Runtime, person: Person, grants: list[Grant]) -> Actor:
    return Actor(
        person=person,
        grants=grants,
        superadmin=person.telegram_id in rt.settings.superadmins,
        locale=choose_locale(person.locale, person.language_code, rt.settings.locale),
    )


async def upsert_person(
    conn: AsyncConnection, profile: Profile, now: datetime, *, started: bool
) -> Person:
    row = (
        await conn.execute(select(people).where(people.c.telegram_id == profile.telegram_id))
    ).first()
    if row is None and await _inserted(
        conn,
        insert(people).values(
            telegram_id=profile.telegram_id,
            username=profile.username,
            full_name=profile.full_name,
            language_code=profile.language_code,
            started_at=now if started else None,
            created_at=now,
            updated_at=now,
        ),
    ):
        person_id = (
            await conn.execute(
                select(people.c.id).where(people.c.telegram_id == profile.telegram_id)
            )
        ).scalar_one()
    else:
        row = (
            row
            or (
                await conn.execute(
                    select(people).where(people.c.telegram_id == profile.telegram_id)
                )
            ).one()
        )
        person_id = row.id
        changes: dict[str, Any] = {}
        for field in ("username", "full_name", "language_code"):
            if getattr(profile, field) != getattr(row, field):
                changes[field] = getattr(profile, field)
        if started and row.started_at is None:
            changes["started_at"] = now
        if changes:
            await conn.execute(
                update(people).where(people.c.id == person_id).values(updated_at=now, **changes)
            )
    fresh = (await conn.execute(select(people).where(people.c.id == person_id))).one()
    return person_from_row(fresh)


def _needs_write(row: Row[Any] | None, profile: Profile, started: bool) -> bool:
    if row is None:
        return True
    if started and row.started_at is None:
        return True
    return (row.username, row.full_name, row.language_code) != (
        profile.username,
        profile.full_name,
        profile.language_code,
    )


async def identify(rt: Runtime, profile: Profile, *, private: bool) -> Actor:
    """The Actor for a person writing to the bot, recording them (and that they opened a
    private chat, so the bot may write to them) if new or changed."""
    async with rt.db.read() as conn:
        row = (
            await conn.execute(select(people).where(people.c.telegram_id == profile.telegram_id))
        ).first()
        if not _needs_write(row, profile, private):
            assert row is not None
            person = person_from_row(row)
            return _actor(rt, person, (await _grants_of(conn, [person.id]))[person.id])
    async with rt.db.transaction() as conn:
        person = await upsert_person(conn, profile, rt.now(), started=private)
        return _actor(rt, person, (await _grants_of(conn, [person.id]))[person.id])


async def actor_by_person_id(conn: AsyncConnection, rt: Runtime, person_id: int) -> Actor:
    row = (await conn.execute(select(people).where(people.c.id == person_id))).one()
    person = person_from_row(row)
    return _actor(rt, person, (await _grants_of(conn, [person.id]))[person.id])


async def grant_role(
    conn: AsyncConnection,
    rt: Runtime,
    person: Person,
    role: Role,
    unit: Unit,
    *,
    granted_by: int | None,
    invitation_id: int | None = None,
) -> bool:
    """Give ``person`` ``role`` over ``unit``; False if they already hold exactly that."""
    held = (
        await conn.execute(
            select(roles.c.id).where(
                roles.c.person_id == person.id,
                roles.c.role == role,
                roles.c.unit_id == unit.id,
                roles.c.revoked_at.is_(None),
            )
        )
    ).first()
    if held is not None:
        return False
    return await _inserted(
        conn,
        insert(roles).values(
            person_id=person.id,
            role=role,
            unit_id=unit.id,
            granted_at=rt.now(),
            granted_by=granted_by,
            invitation_id=invitation_id,
        ),
    )


async def set_locale(rt: Runtime, actor: Actor, locale: str) -> Actor:
    """Remember the language a person wants, whatever their Telegram app says."""
    if locale not in ("zh_CN", "en"):
        raise BadArguments(usage="org/usage/language.j2")
    async with rt.db.transaction() as conn:
        await conn.execute(
            update(people)
            .where(people.c.id == actor.person.id)
            .values(locale=locale, updated_at=rt.now())
        )
        return await actor_by_person_id(conn, rt, actor.person.id)


async def find_person(conn: AsyncConnection, reference: str) -> Person:
    """A person by "@username" or Telegram id; UnknownPerson otherwise."""
    text = reference.strip()
    if text.lstrip("-").isdigit():
        condition = people.c.telegram_id == int(text)
    elif text.startswith("@") and len(text) > 1:
        condition = func.lower(people.c.username) == text[1:].lower()
    else:
        raise UnknownPerson(reference=reference)
    # Usernames change hands: the person seen most recently with it is the one meant.
    row = (
        await conn.execute(select(people).where(condition).order_by(people.c.updated_at.desc()))
    ).first()
    if row is None:
        raise UnknownPerson(reference=reference)
    return person_from_row(row)


async def people_in(
    rt: Runtime, actor: Actor, path: str | None = None, *, unit_id: int | None = None, page: int = 0
) -> PeoplePage:
    """People holding roles in a unit (by path or id) and below it, for admins of that unit.

    Without either: the actor's own scope (the whole school for superadmins)."""
    if not actor.has_role(Role.ADMIN):
        raise NotAllowed(needed=Role.ADMIN, unit="")
    async with rt.db.read() as conn:
        if unit_id is not None:
            unit = await unit_by_id(conn, unit_id)
            if not actor.has_role(Role.ADMIN, unit):
                raise NotAllowed(needed=Role.ADMIN, unit="")  # a forged id learns nothing
        elif path:
            unit = await find_unit(conn, path, rt.now())
        elif actor.superadmin or not actor.admin_scopes():
            unit = await root_unit(conn, rt.now())
        else:
            unit = actor.admin_scopes()[0]
        actor.require_admin(unit)
        in_scope = and_(
            roles.c.revoked_at.is_(None),
            roles.c.unit_id == units.c.id,
            units.c.id_path.startswith(unit.id_path),
        )
        person_ids = select(roles.c.person_id).select_from(roles.join(units, in_scope)).distinct()
        total = (
            await conn.execute(select(func.count()).select_from(person_ids.subquery()))
        ).scalar_one()
        pages = max(1, -(-total // PAGE_SIZE))
        number = min(max(page, 0), pages - 1)
        rows = (
            await conn.execute(
                select(people)
                .where(people.c.id.in_(person_ids))
                .order_by(people.c.full_name, people.c.id)
                .limit(PAGE_SIZE)
                .offset(number * PAGE_SIZE)
            )
        ).all()
        found = [person_from_row(row) for row in rows]
        grants = await _grants_of(conn, [p.id for p in found])
    return PeoplePage(
        number=number,
        total_pages=pages,
        unit=unit,
        total=total,
        people=[
            PersonWithRoles(person=p, grants=[g for g in grants[p.id] if unit.contains(g.unit)])
            for p in found
        ],
    )


class Revocation(BaseModel):
    person: Person
    grant: Grant
    remaining: Actor  # the person as they are now, with the roles they still hold


async def revoke_role(
    rt: Runtime, actor: Actor, reference: str, role_name: str, path: str | None
) -> Revocation:
    """Take ``role`` away from a person (by @username or Telegram id) and tell them."""
    if not actor.has_role(Role.ADMIN):
        raise NotAllowed(needed=Role.ADMIN, unit="")  # before revealing who exists
    role = parse_role(role_name)
    async with rt.db.transaction() as conn:
        person = await find_person(conn, reference)
        held = [
            grant
            for grant in (await _grants_of(conn, [person.id]))[person.id]
            if grant.role is role and actor.has_role(Role.ADMIN, grant.unit)
        ]
        if path:
            unit = await find_unit(conn, path, rt.now())
            held = [grant for grant in held if grant.unit.id == unit.id]
        if not held:
            # Named by what the admin typed: whether that person exists elsewhere is not theirs.
            raise RoleNotHeld(reference=reference, role=role, path=path or "")
        if len(held) > 1:
            raise AmbiguousRole(person=person, role=role, paths=[g.unit.path for g in held])
        grant = held[0]
        now = rt.now()
        await conn.execute(
            update(roles)
            .where(
                roles.c.person_id == person.id,
                roles.c.role == role,
                roles.c.unit_id == grant.unit.id,
                roles.c.revoked_at.is_(None),
            )
            .values(revoked_at=now, revoked_by=actor.person.id)
        )
        await record(
            conn, now, actor, "role_revoked", f"person:{person.id}", role=role, unit=grant.unit.path
        )
        await notify_person(
            conn,
            rt,
            person,
            "org/role_revoked_notice.j2",
            topic="org.role_revoked",
            role=role,
            unit=grant.unit,
        )
        remaining = await actor_by_person_id(conn, rt, person.id)
    return Revocation(person=person, grant=grant, remaining=remaining)


def parse_role(name: str) -> Role:
    """A grantable role from its name; BadArguments listing the roles otherwise."""
    try:
        role = Role(name.strip().lower())
    except ValueError:
        raise BadArguments(usage="org/usage/roles.j2") from None
    if role is Role.SUPERADMIN:
        raise NotAllowed(needed=Role.SUPERADMIN, unit="")
    return role


# --- groups --------------------------------------------------------------------------------


async def holders_over(
    conn: AsyncConnection,
    rt: Runtime,
    unit: Unit,
    wanted: Iterable[Role],
    *,
    with_superadmins: bool = True,
) -> list[Person]:
    """Everyone holding one of ``wanted`` over ``unit`` (at it or above), and (unless told
    otherwise) the superadmins; each person once."""
    rows = (
        await conn.execute(
            select(people)
            .join(roles, roles.c.person_id == people.c.id)
            .join(units, units.c.id == roles.c.unit_id)
            .where(
                roles.c.revoked_at.is_(None),
                roles.c.role.in_(list(wanted)),
                # the role's unit is an ancestor of (or is) ``unit``: its id_path is a prefix
                func.substr(unit.id_path, 1, func.length(units.c.id_path)) == units.c.id_path,
            )
            .order_by(people.c.full_name, people.c.id)
        )
    ).all()
    supers = (
        (
            await conn.execute(
                select(people).where(people.c.telegram_id.in_(list(rt.settings.superadmins)))
            )
        ).all()
        if with_superadmins
        else []
    )
    found: dict[int, Person] = {}
    for row in [*rows, *supers]:
        found.setdefault(row.id, person_from_row(row))
    return list(found.values())


async def group_at(conn: AsyncConnection, recipient: Recipient) -> Group | None:
    """The group chat at ``recipient`` (None if the bot never saw it)."""
    return await _group(conn, recipient)


async def _group(conn: AsyncConnection, recipient: Recipient) -> Group | None:
    found = await groups_where(
        conn, groups.c.channel == recipient.channel, groups.c.address == recipient.address
    )
    return found[0] if found else None


async def groups_where(conn: AsyncConnection, *conditions: Any) -> list[Group]:
    """The group chats matching ``conditions`` on the groups table, oldest first, with their
    units (two queries however many there are: a broadcast to every class group is one)."""
    rows = (await conn.execute(select(groups).where(*conditions).order_by(groups.c.id))).all()
    found_units = await _units_by_id(conn, [row.unit_id for row in rows if row.unit_id])
    return [
        Group(
            id=row.id,
            channel=row.channel,
            address=row.address,
            title=row.title,
            purpose=Purpose(row.purpose) if row.purpose else None,
            unit=found_units.get(row.unit_id) if row.unit_id is not None else None,
            active=row.left_at is None,
        )
        for row in rows
    ]


async def _ensure_group(
    conn: AsyncConnection, recipient: Recipient, title: str, now: datetime
) -> Group:
    existing = await _group(conn, recipient)
    if existing is None:
        await conn.execute(
            insert(groups).values(
                channel=recipient.channel, address=recipient.address, title=title, joined_at=now
            )
        )
    elif existing.title != title or not existing.active:
        await conn.execute(
            update(groups).where(groups.c.id == existing.id).values(title=title, left_at=None)
        )
    group = await _group(conn, recipient)
    assert group is not None
    return group


async def group_joined(rt: Runtime, recipient: Recipient, title: str) -> Group:
    """The bot was added to a group: remember it (its binding, if any, is kept) and greet it,
    saying what it is bound to or how to bind it."""
    async with rt.db.transaction() as conn:
        group = await _ensure_group(conn, recipient, title, rt.now())
        await record(conn, rt.now(), None, "group_joined", f"group:{group.id}", title=title)
        await notify_group(conn, rt, group, "groups/joined.j2", topic="groups.joined", group=group)
        return group


async def group_left(rt: Runtime, recipient: Recipient) -> None:
    """The bot was removed from a group: stop counting on it, keep its history."""
    async with rt.db.transaction() as conn:
        group = await _group(conn, recipient)
        if group is not None and group.active:
            await conn.execute(
                update(groups).where(groups.c.id == group.id).values(left_at=rt.now())
            )
            await record(conn, rt.now(), None, "group_left", f"group:{group.id}")


async def bind_group(
    rt: Runtime, actor: Actor, recipient: Recipient, title: str, purpose_name: str, path: str
) -> Group:
    """Say what a group chat is for and which unit it belongs to (admins of that unit)."""
    try:
        purpose = Purpose(purpose_name.strip().lower())
    except ValueError:
        raise BadArguments(usage="org/usage/bind.j2") from None
    if purpose in (Purpose.CLASS, Purpose.UNIT) and not path.strip():
        raise PurposeNeedsUnit(purpose=purpose)
    leaf_kind = {Purpose.CLASS: UnitKind.CLASS, Purpose.UNIT: UnitKind.DEPARTMENT}.get(purpose)
    now = rt.now()
    async with rt.db.transaction() as conn:
        if path.strip():
            unit = await ensure_unit(conn, actor, path, now, leaf_kind)
        else:
            unit = await root_unit(conn, now)
            actor.require_admin(unit)
        group = await _ensure_group(conn, recipient, title, now)
        if group.unit is not None:
            actor.require_admin(group.unit)  # moving a group out of someone else's scope
        await conn.execute(
            update(groups)
            .where(groups.c.id == group.id)
            .values(purpose=purpose, unit_id=unit.id, bound_by=actor.person.id, bound_at=now)
        )
        await record(
            conn, now, actor, "group_bound", f"group:{group.id}", purpose=purpose, unit=unit.path
        )
        bound = await _group(conn, recipient)
        assert bound is not None
        return bound


async def unbind_group(rt: Runtime, actor: Actor, recipient: Recipient) -> Group:
    """Forget what a group is for; it stops receiving anything until bound again."""
    async with rt.db.transaction() as conn:
        group = await _group(conn, recipient)
        if group is None or group.purpose is None or group.unit is None:
            raise GroupNotBound()
        actor.require_admin(group.unit)
        await conn.execute(
            update(groups)
            .where(groups.c.id == group.id)
            .values(purpose=None, unit_id=None, bound_by=None, bound_at=None)
        )
        await record(
            conn, rt.now(), actor, "group_unbound", f"group:{group.id}", purpose=group.purpose
        )
        return group


async def group_status(rt: Runtime, recipient: Recipient) -> Group | None:
    """What the bot knows about a group chat (None if it never saw it)."""
    async with rt.db.read() as conn:
        return await _group(conn, recipient)


async def group_moved(rt: Runtime, old: Recipient, new: Recipient) -> None:
    """A group became a supergroup with a new address: keep its binding and pending messages."""
    async with rt.db.transaction() as conn:
        previous = await _group(conn, old)
        if previous is None:
            return
        newer = await _group(conn, new)
        if newer is not None:
            if newer.purpose is not None:
                return  # already bound at its new address; nothing to carry over
            await conn.execute(groups.delete().where(groups.c.id == newer.id))
        await conn.execute(
            update(groups)
            .where(groups.c.id == previous.id)
            .values(channel=new.channel, address=new.address, left_at=None)
        )
        await readdress(conn, old, new)
        await record(
            conn,
            rt.now(),
            None,
            "group_moved",
            f"group:{previous.id}",
            old=old.address,
            new=new.address,
        )


async def enrolled_people(rt: Runtime) -> list[Actor]:
    """Everyone holding a role or listed as superadmin, with their roles."""
    async with rt.db.read() as conn:
        holders = select(roles.c.person_id).where(roles.c.revoked_at.is_(None))
        rows = (
            await conn.execute(
                select(people).where(
                    people.c.id.in_(holders)
                    | people.c.telegram_id.in_(list(rt.settings.superadmins))
                )
            )
        ).all()
        found = [person_from_row(row) for row in rows]
        grants = await _grants_of(conn, [p.id for p in found])
    return [_actor(rt, person, grants[person.id]) for person in found]
