"""Invitations on a real SQLite file: every way a link can be good or bad."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.errors import BadArguments, NotAllowed
from bot.runtime import Runtime
from bot.services import invitations, org
from bot.services.invitations import InviteRequest, parse_invite_args
from bot.services.models import Actor, Role
from bot.store.tables import invitations as invitations_table
from bot.store.tables import outbox, roles
from tests.support import SUPERADMIN_ID, FakeClock, profile


@pytest.fixture
async def boss(rt: Runtime) -> Actor:
    return await org.identify(rt, profile(SUPERADMIN_ID, "处长", "boss", "en"), private=True)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["informant"], InviteRequest(role="informant")),
        (["guard", "20", "30"], InviteRequest(role="guard", uses=20, days=30)),
        (
            ["informant", "信息学院/计科2201"],
            InviteRequest(role="informant", unit_path="信息学院/计科2201"),
        ),
        (
            ["officer", "Computer", "Science", "5"],
            InviteRequest(role="officer", unit_path="Computer Science", uses=5),
        ),
    ],
)
def test_invite_arguments(args: list[str], expected: InviteRequest) -> None:
    assert parse_invite_args(args) == expected


@pytest.mark.parametrize("args", [[], ["guard", "1", "2", "3"]])
def test_invite_arguments_refused(args: list[str]) -> None:
    with pytest.raises(BadArguments):
        parse_invite_args(args)


async def test_token_is_unguessable_and_fits_a_deep_link(rt: Runtime, boss: Actor) -> None:
    first = await invitations.create_invitation(rt, boss, InviteRequest(role="guard"))
    second = await invitations.create_invitation(rt, boss, InviteRequest(role="guard"))
    assert first.token != second.token
    assert len("join-" + first.token) <= 64
    assert len(first.token) >= 20
    assert all(ch.isalnum() or ch in "-_" for ch in first.token)


async def test_join_enrols_counts_a_use_and_tells_the_inviter(rt: Runtime, boss: Actor) -> None:
    request = InviteRequest(role="informant", unit_path="信息学院/计科2201", uses=2)
    invitation = await invitations.create_invitation(rt, boss, request)
    joined = await invitations.accept_invitation(rt, profile(7, "小王", "wang"), invitation.token)
    assert not joined.already_held
    assert joined.grant.role is Role.INFORMANT
    assert joined.actor.roles == {Role.INFORMANT}
    async with rt.db.read() as conn:
        uses = (await conn.execute(select(invitations_table.c.uses))).scalar_one()
        notice = (await conn.execute(select(outbox.c.address, outbox.c.payload))).one()
    assert uses == 1
    assert notice.address == str(SUPERADMIN_ID)
    assert "小王" in notice.payload["text"]
    assert "joined" in notice.payload["text"]  # the inviter reads English


async def test_opening_a_link_for_a_role_already_held_uses_nothing(
    rt: Runtime, boss: Actor
) -> None:
    invitation = await invitations.create_invitation(rt, boss, InviteRequest(role="guard", uses=5))
    await invitations.accept_invitation(rt, profile(8, "保安甲"), invitation.token)
    again = await invitations.accept_invitation(rt, profile(8, "保安甲"), invitation.token)
    assert again.already_held
    async with rt.db.read() as conn:
        assert (await conn.execute(select(invitations_table.c.uses))).scalar_one() == 1
        assert len((await conn.execute(select(roles))).all()) == 1


async def test_used_up_expired_revoked_and_unknown_links(
    rt: Runtime, boss: Actor, clock: FakeClock
) -> None:
    once = await invitations.create_invitation(rt, boss, InviteRequest(role="guard", uses=1))
    await invitations.accept_invitation(rt, profile(9, "甲"), once.token)
    with pytest.raises(invitations.InvitationUsedUp):
        await invitations.accept_invitation(rt, profile(10, "乙"), once.token)

    short = await invitations.create_invitation(rt, boss, InviteRequest(role="guard", days=1))
    clock.advance(days=1, seconds=1)
    with pytest.raises(invitations.InvitationExpired):
        await invitations.accept_invitation(rt, profile(10, "乙"), short.token)

    revoked = await invitations.create_invitation(rt, boss, InviteRequest(role="guard"))
    outcome = await invitations.revoke_invitation(rt, boss, revoked.id)
    assert not outcome.already_revoked
    assert (await invitations.revoke_invitation(rt, boss, revoked.id)).already_revoked
    with pytest.raises(invitations.InvitationRevoked):
        await invitations.accept_invitation(rt, profile(10, "乙"), revoked.token)

    with pytest.raises(invitations.InvitationUnknown):
        await invitations.accept_invitation(rt, profile(10, "乙"), "no-such-token")
    stranger = await org.identify(rt, profile(10, "乙"), private=True)
    assert not stranger.enrolled
    assert [inv.id for inv in await invitations.open_invitations(rt, boss)] == []


async def test_only_admins_invite_and_only_within_their_scope(rt: Runtime, boss: Actor) -> None:
    college = await invitations.create_invitation(
        rt, boss, InviteRequest(role="admin", unit_path="信息学院")
    )
    college_admin = (
        await invitations.accept_invitation(rt, profile(11, "院管"), college.token)
    ).actor
    inside = await invitations.create_invitation(
        rt, college_admin, InviteRequest(role="informant", unit_path="信息学院/计科2201")
    )
    assert inside.unit.path == "信息学院/计科2201"
    with pytest.raises(NotAllowed):
        await invitations.create_invitation(rt, college_admin, InviteRequest(role="guard"))
    elsewhere = await invitations.create_invitation(
        rt, boss, InviteRequest(role="informant", unit_path="外语学院/英语2201")
    )
    with pytest.raises(NotAllowed):
        await invitations.revoke_invitation(rt, college_admin, elsewhere.id)
    informant = (await invitations.accept_invitation(rt, profile(12, "学生"), inside.token)).actor
    with pytest.raises(NotAllowed):
        await invitations.create_invitation(
            rt, informant, InviteRequest(role="informant", unit_path="信息学院/计科2201")
        )
    with pytest.raises(NotAllowed):
        await invitations.create_invitation(rt, boss, InviteRequest(role="superadmin"))
    with pytest.raises(BadArguments):
        await invitations.create_invitation(rt, boss, InviteRequest(role="janitor"))
    with pytest.raises(BadArguments):
        await invitations.create_invitation(rt, boss, InviteRequest(role="guard", uses=0))


async def test_a_revoked_admins_links_stop_working(rt: Runtime, boss: Actor) -> None:
    dean_link = await invitations.create_invitation(
        rt, boss, InviteRequest(role="admin", unit_path="信息学院")
    )
    dean = (
        await invitations.accept_invitation(rt, profile(13, "院长", "dean"), dean_link.token)
    ).actor
    backdoor = await invitations.create_invitation(
        rt, dean, InviteRequest(role="admin", unit_path="信息学院", uses=100, days=90)
    )
    await org.revoke_role(rt, boss, "@dean", "admin", None)
    with pytest.raises(invitations.InvitationRevoked):
        await invitations.accept_invitation(rt, profile(13, "院长", "dean"), backdoor.token)
    with pytest.raises(invitations.InvitationRevoked):
        await invitations.accept_invitation(rt, profile(14, "同伙"), backdoor.token)
