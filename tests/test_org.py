"""Organisation services on a real SQLite file: units, roles and scope, groups, revocation."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.errors import BadUnitPath, NotAllowed, UnknownPerson, UnknownUnit
from bot.outbox import OutgoingMessage, Recipient, enqueue
from bot.runtime import Runtime
from bot.services import org
from bot.services.models import Actor, Purpose, Role, UnitKind
from bot.store.tables import audit_log, outbox
from tests.support import SUPERADMIN_ID, enrol, profile


async def superadmin(rt: Runtime) -> Actor:
    return await org.identify(rt, profile(SUPERADMIN_ID, "校长", "boss"), private=True)


async def test_superadmin_is_recognised_from_settings_without_any_stored_role(rt: Runtime) -> None:
    actor = await superadmin(rt)
    assert actor.superadmin
    assert actor.roles == {Role.SUPERADMIN}
    assert actor.grants == []
    stranger = await org.identify(rt, profile(5, "路人"), private=True)
    assert not stranger.enrolled


async def test_unit_paths_create_missing_units_and_mark_classes_and_colleges(rt: Runtime) -> None:
    boss = await superadmin(rt)
    group = await org.bind_group(
        rt, boss, Recipient("telegram", "-1"), "计科2201班", "class", "信息学院/计科2201"
    )
    assert group.purpose is Purpose.CLASS
    assert group.unit is not None
    assert group.unit.path == "信息学院/计科2201"
    assert group.unit.kind is UnitKind.CLASS
    async with rt.db.read() as conn:
        college = await org.find_unit(conn, "信息学院", rt.now())
    assert college.kind is UnitKind.COLLEGE
    assert college.contains(group.unit)
    assert not group.unit.contains(college)


@pytest.mark.parametrize("path", ["//", "a//b", "a/b/c/d/e/f/g", "x" * 65, "坏@名字", "<b>"])
async def test_bad_unit_paths_are_refused_and_create_nothing(rt: Runtime, path: str) -> None:
    boss = await superadmin(rt)
    with pytest.raises(BadUnitPath):
        await org.bind_group(rt, boss, Recipient("telegram", "-1"), "g", "class", path)
    assert await org.group_status(rt, Recipient("telegram", "-1")) is None


async def test_scoped_admin_acts_only_inside_their_unit(rt: Runtime) -> None:
    boss = await superadmin(rt)
    college_admin = await enrol(rt, boss, 20, "admin", "信息学院")
    inside = await org.bind_group(
        rt, college_admin, Recipient("telegram", "-2"), "班群", "class", "信息学院/计科2202"
    )
    assert inside.unit is not None
    assert inside.unit.path == "信息学院/计科2202"
    with pytest.raises(NotAllowed):
        await org.bind_group(
            rt, college_admin, Recipient("telegram", "-3"), "别的学院", "class", "外语学院/英语2201"
        )
    with pytest.raises(NotAllowed):
        await org.bind_group(rt, college_admin, Recipient("telegram", "-3"), "指挥", "command", "")
    async with rt.db.read() as conn:
        with pytest.raises(UnknownUnit):
            await org.find_unit(conn, "外语学院", rt.now())


async def test_a_person_may_hold_several_roles_each_scoped(rt: Runtime) -> None:
    boss = await superadmin(rt)
    await enrol(rt, boss, 30, "informant", "信息学院/计科2201")
    actor = await enrol(rt, boss, 30, "guard")
    assert actor.roles == {Role.INFORMANT, Role.GUARD}
    async with rt.db.read() as conn:
        other_class = await org.ensure_unit(conn, boss, "信息学院/计科2202", rt.now())
        own_class = await org.find_unit(conn, "信息学院/计科2201", rt.now())
    assert actor.has_role(Role.INFORMANT, own_class)
    assert not actor.has_role(Role.INFORMANT, other_class)
    assert actor.has_role(Role.GUARD, other_class)
    assert not actor.has_role(Role.ADMIN)


async def test_revoke_removes_the_role_keeps_evidence_and_tells_the_person(rt: Runtime) -> None:
    boss = await superadmin(rt)
    await enrol(rt, boss, 40, "officer")
    revocation = await org.revoke_role(rt, boss, "@u40", "officer", None)
    assert revocation.grant.role is Role.OFFICER
    again = await org.identify(rt, profile(40, "user40", "u40"), private=True)
    assert not again.enrolled
    async with rt.db.read() as conn:
        actions = (await conn.execute(select(audit_log.c.action))).scalars().all()
        topics = (await conn.execute(select(outbox.c.topic, outbox.c.address))).all()
    assert "role_revoked" in actions
    assert ("org.role_revoked", "40") in topics


async def test_revoke_needs_a_unit_when_ambiguous_and_refuses_unknown_people(rt: Runtime) -> None:
    boss = await superadmin(rt)
    await enrol(rt, boss, 50, "informant", "信息学院/计科2201")
    await enrol(rt, boss, 50, "informant", "信息学院/计科2202")
    with pytest.raises(org.AmbiguousRole):
        await org.revoke_role(rt, boss, "50", "informant", None)
    revoked = await org.revoke_role(rt, boss, "50", "informant", "信息学院/计科2202")
    assert revoked.grant.unit.path == "信息学院/计科2202"
    with pytest.raises(UnknownPerson):
        await org.revoke_role(rt, boss, "@nobody", "informant", None)
    with pytest.raises(org.RoleNotHeld):
        await org.revoke_role(rt, boss, "50", "guard", None)


async def test_people_lists_only_the_units_in_scope_paged(rt: Runtime) -> None:
    boss = await superadmin(rt)
    college_admin = await enrol(rt, boss, 60, "admin", "信息学院")
    for number in range(25):
        await enrol(rt, boss, 100 + number, "informant", f"信息学院/计科22{number:02d}")
    await enrol(rt, boss, 200, "informant", "外语学院/英语2201")
    first = await org.people_in(rt, college_admin)
    assert first.total == 26  # 25 informants and the college admin
    assert first.total_pages == 2
    second = await org.people_in(rt, college_admin, unit_id=first.unit.id, page=1)
    names = {entry.person.telegram_id for entry in first.people + second.people}
    assert 200 not in names
    assert len(names) == 26
    with pytest.raises(NotAllowed):
        await org.people_in(rt, college_admin, "外语学院")


async def test_group_migration_keeps_binding_and_pending_messages(rt: Runtime) -> None:
    boss = await superadmin(rt)
    old, new = Recipient("telegram", "-70"), Recipient("telegram", "-10070")
    await org.bind_group(rt, boss, old, "指挥群", "command", "")
    async with rt.db.transaction() as conn:
        await enqueue(conn, old, OutgoingMessage(text="x"), topic="t", now=rt.now())
    await org.group_joined(rt, new, "指挥群")  # Telegram may announce the new chat first
    await org.group_moved(rt, old, new)
    moved = await org.group_status(rt, new)
    assert moved is not None
    assert moved.purpose is Purpose.COMMAND
    assert await org.group_status(rt, old) is None
    async with rt.db.read() as conn:
        addresses = (
            (await conn.execute(select(outbox.c.address).where(outbox.c.topic == "t")))
            .scalars()
            .all()
        )
    assert addresses == ["-10070"]


async def test_unbind_needs_admin_of_the_groups_unit(rt: Runtime) -> None:
    boss = await superadmin(rt)
    chat = Recipient("telegram", "-80")
    await org.bind_group(rt, boss, chat, "总务处", "unit", "总务处")
    guard = await enrol(rt, boss, 81, "guard")
    with pytest.raises(NotAllowed):
        await org.unbind_group(rt, guard, chat)
    await org.unbind_group(rt, boss, chat)
    status = await org.group_status(rt, chat)
    assert status is not None
    assert status.purpose is None
    with pytest.raises(org.GroupNotBound):
        await org.unbind_group(rt, boss, chat)
