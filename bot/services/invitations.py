"""Invitations: an admin makes a link (and QR code) that enrols whoever opens it in a role."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.errors import BadArguments, DomainError, StaleButton
from bot.runtime import Runtime
from bot.services import org
from bot.services.models import Actor, Grant, Profile, Role, Unit
from bot.services.notify import notify_person
from bot.store.tables import invitations

DEFAULT_USES = 1
DEFAULT_DAYS = 7
MAX_USES = 1000
MAX_DAYS = 90
TOKEN_BYTES = 16  # 22 url-safe characters: unguessable, and "join-<token>" fits a deep link


class InvitationUnknown(DomainError):
    template = "invitations/errors/unknown.j2"


class InvitationExpired(DomainError):
    template = "invitations/errors/expired.j2"


class InvitationUsedUp(DomainError):
    template = "invitations/errors/used_up.j2"


class InvitationRevoked(DomainError):
    template = "invitations/errors/revoked.j2"


class InvitationState(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    USED_UP = "used_up"
    REVOKED = "revoked"


class Invitation(BaseModel):
    id: int
    token: str
    role: Role
    unit: Unit
    max_uses: int
    uses: int
    expires_at: datetime
    created_at: datetime
    revoked: bool

    def state(self, now: datetime) -> InvitationState:
        if self.revoked:
            return InvitationState.REVOKED
        if self.uses >= self.max_uses:
            return InvitationState.USED_UP
        if now >= self.expires_at:
            return InvitationState.EXPIRED
        return InvitationState.ACTIVE


class Enrolment(BaseModel):
    """The result of opening an invitation link."""

    actor: Actor
    grant: Grant
    already_held: bool


class InviteRequest(BaseModel):
    role: str
    unit_path: str = ""
    uses: int = DEFAULT_USES
    days: int = DEFAULT_DAYS


def parse_invite_args(args: list[str]) -> InviteRequest:
    """``<role> [unit path] [uses] [days]``: up to two trailing numbers; the words between the
    role and the numbers are the unit path (which may contain spaces)."""
    if not args:
        raise BadArguments(usage="invitations/usage.j2")
    rest = list(args[1:])
    numbers: list[int] = []
    while rest and rest[-1].isdigit() and len(numbers) < 2:
        numbers.insert(0, int(rest.pop()))
    if any(part.isdigit() for part in rest[-1:]):
        raise BadArguments(usage="invitations/usage.j2")
    return InviteRequest(
        role=args[0],
        unit_path=" ".join(rest),
        uses=numbers[0] if numbers else DEFAULT_USES,
        days=numbers[1] if len(numbers) > 1 else DEFAULT_DAYS,
    )


async def _invitation(conn: AsyncConnection, row: Row[Any]) -> Invitation:
    return Invitation(
        id=row.id,
        token=row.token,
        role=Role(row.role),
        unit=await org.unit_by_id(conn, row.unit_id),
        max_uses=row.max_uses,
        uses=row.uses,
        expires_at=row.expires_at,
        created_at=row.created_at,
        revoked=row.revoked_at is not None,
    )


async def create_invitation(rt: Runtime, actor: Actor, request: InviteRequest) -> Invitation:
    """A new invitation for ``request.role`` over the unit (created if missing); admins only,
    within their own scope."""
    role = org.parse_role(request.role)
    if not 1 <= request.uses <= MAX_USES or not 1 <= request.days <= MAX_DAYS:
        raise BadArguments(usage="invitations/usage.j2")
    now = rt.now()
    async with rt.db.transaction() as conn:
        if request.unit_path:
            unit = await org.ensure_unit(conn, actor, request.unit_path, now)
        else:
            unit = await org.root_unit(conn, now)
            actor.require_admin(unit)
        invitation_id = (
            await conn.execute(
                insert(invitations).values(
                    token=secrets.token_urlsafe(TOKEN_BYTES),
                    role=role,
                    unit_id=unit.id,
                    max_uses=request.uses,
                    uses=0,
                    expires_at=now + timedelta(days=request.days),
                    created_by=actor.person.id,
                    created_at=now,
                )
            )
        ).inserted_primary_key[0]
        await org.record(
            conn,
            now,
            actor,
            "invitation_created",
            f"invitation:{invitation_id}",
            role=role,
            unit=unit.path,
            uses=request.uses,
            days=request.days,
        )
        row = (
            await conn.execute(select(invitations).where(invitations.c.id == invitation_id))
        ).one()
        return await _invitation(conn, row)


class InvitationRevocation(BaseModel):
    invitation: Invitation
    already_revoked: bool


async def revoke_invitation(rt: Runtime, actor: Actor, invitation_id: int) -> InvitationRevocation:
    """Stop an invitation from enrolling anyone else. Revoking twice changes nothing."""
    async with rt.db.transaction() as conn:
        row = (
            await conn.execute(select(invitations).where(invitations.c.id == invitation_id))
        ).first()
        if row is None:
            raise StaleButton()
        invitation = await _invitation(conn, row)
        actor.require_admin(invitation.unit)
        if invitation.revoked:
            return InvitationRevocation(invitation=invitation, already_revoked=True)
        await conn.execute(
            update(invitations)
            .where(invitations.c.id == invitation_id)
            .values(revoked_at=rt.now(), revoked_by=actor.person.id)
        )
        await org.record(conn, rt.now(), actor, "invitation_revoked", f"invitation:{invitation_id}")
        revoked = invitation.model_copy(update={"revoked": True})
        return InvitationRevocation(invitation=revoked, already_revoked=False)


async def open_invitations(rt: Runtime, actor: Actor) -> list[Invitation]:
    """Invitations that can still be used, within the actor's admin scope, newest first."""
    now = rt.now()
    async with rt.db.read() as conn:
        rows = (
            await conn.execute(
                select(invitations)
                .where(
                    invitations.c.revoked_at.is_(None),
                    invitations.c.uses < invitations.c.max_uses,
                    invitations.c.expires_at > now,
                )
                .order_by(invitations.c.id.desc())
            )
        ).all()
        found = [await _invitation(conn, row) for row in rows]
    return [inv for inv in found if actor.has_role(Role.ADMIN, inv.unit)]


async def accept_invitation(rt: Runtime, profile: Profile, token: str) -> Enrolment:
    """Enrol the person opening ``join-<token>``: they get the invitation's role and unit.

    Opening a link for a role one already holds changes nothing and uses nothing up."""
    now = rt.now()
    async with rt.db.transaction() as conn:
        row = (await conn.execute(select(invitations).where(invitations.c.token == token))).first()
        if row is None:
            raise InvitationUnknown()
        invitation = await _invitation(conn, row)
        state = invitation.state(now)
        if state is not InvitationState.ACTIVE:
            error = {
                InvitationState.REVOKED: InvitationRevoked,
                InvitationState.USED_UP: InvitationUsedUp,
                InvitationState.EXPIRED: InvitationExpired,
            }[state]
            raise error(expires_at=invitation.expires_at)
        inviter = await org.actor_by_person_id(conn, rt, row.created_by)
        if not inviter.has_role(Role.ADMIN, invitation.unit):
            # A revoked admin's links die with the admin's rights.
            raise InvitationRevoked(expires_at=invitation.expires_at)
        person = await org.upsert_person(conn, profile, now, started=True)
        granted = await org.grant_role(
            conn,
            rt,
            person,
            invitation.role,
            invitation.unit,
            granted_by=row.created_by,
            invitation_id=invitation.id,
        )
        if granted:
            # Conditional, so that two people racing for the last use cannot both get it.
            used = await conn.execute(
                update(invitations)
                .where(
                    invitations.c.id == invitation.id,
                    invitations.c.uses < invitations.c.max_uses,
                    invitations.c.revoked_at.is_(None),
                )
                .values(uses=invitations.c.uses + 1)
            )
            if used.rowcount != 1:
                raise InvitationUsedUp(expires_at=invitation.expires_at)
            await org.record(
                conn,
                now,
                None,
                "invitation_accepted",
                f"invitation:{invitation.id}",
                person=person.id,
                role=invitation.role,
                unit=invitation.unit.path,
            )
            await notify_person(
                conn,
                rt,
                inviter.person,
                "invitations/joined_notice.j2",
                topic="invitations.joined",
                person=person,
                role=invitation.role,
                unit=invitation.unit,
            )
        actor = await org.actor_by_person_id(conn, rt, person.id)
    return Enrolment(
        actor=actor,
        grant=Grant(role=invitation.role, unit=invitation.unit),
        already_held=not granted,
    )
