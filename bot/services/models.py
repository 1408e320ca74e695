"""The organisation's vocabulary, shared by every capability: units, people, roles, groups."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel

from bot.errors import NotAllowed
from bot.outbox import Recipient
from bot.render import choose_locale

TELEGRAM = "telegram"


class Role(StrEnum):
    SUPERADMIN = "superadmin"  # from SAFECAMPUS_SUPERADMINS, never stored
    ADMIN = "admin"  # security office
    OFFICER = "officer"  # handles reports
    GUARD = "guard"
    INFORMANT = "informant"  # 信息员, one per class
    LEADER = "leader"  # leader on duty, escalation target
    UNIT_HEAD = "unit_head"  # rectifies hazards for a department


GRANTABLE_ROLES = tuple(role for role in Role if role is not Role.SUPERADMIN)


class UnitKind(StrEnum):
    SCHOOL = "school"
    COLLEGE = "college"
    CLASS = "class"
    DEPARTMENT = "department"
    UNIT = "unit"  # not yet known: a path segment nobody has bound to a purpose


class Purpose(StrEnum):
    """What a group chat is for."""

    COMMAND = "command"  # security office duty chat: receives reports and alerts
    STAFF = "staff"  # guard team
    CLASS = "class"
    UNIT = "unit"  # a department


class Unit(BaseModel):
    id: int
    parent_id: int | None
    name: str
    kind: UnitKind
    id_path: str  # "/1/4/9/": ids from the root down to this unit
    path: str  # "信息学院/计科2201"; "" for the school itself

    @property
    def is_root(self) -> bool:
        return self.parent_id is None

    def contains(self, other: Unit) -> bool:
        """True if ``other`` is this unit or lies below it."""
        return other.id_path.startswith(self.id_path)


class Profile(BaseModel):
    """What the messenger tells us about a person with each message."""

    telegram_id: int
    username: str | None
    full_name: str
    language_code: str | None


class Person(BaseModel):
    id: int
    telegram_id: int
    username: str | None
    full_name: str
    language_code: str | None
    locale: str | None
    started: bool

    def language(self, default: str) -> str:
        """The locale to write to this person in (their choice, else their app's, else default)."""
        return choose_locale(self.locale, self.language_code, default)

    @property
    def recipient(self) -> Recipient:
        """The person's private chat with the bot."""
        return Recipient(TELEGRAM, str(self.telegram_id))


class Grant(BaseModel):
    """A role held over a unit (and everything below it)."""

    role: Role
    unit: Unit


class Actor(BaseModel):
    """The person making a request, with everything needed to decide what they may do."""

    person: Person
    grants: list[Grant]
    superadmin: bool
    locale: str

    @property
    def roles(self) -> set[Role]:
        held = {grant.role for grant in self.grants}
        return held | {Role.SUPERADMIN} if self.superadmin else held

    @property
    def enrolled(self) -> bool:
        return bool(self.roles)

    def has_role(self, role: Role, unit: Unit | None = None) -> bool:
        """Holds ``role`` (over ``unit`` if given). Superadmins hold every role everywhere."""
        if self.superadmin:
            return True
        return any(
            grant.role is role and (unit is None or grant.unit.contains(unit))
            for grant in self.grants
        )

    def require_admin(self, unit: Unit) -> None:
        """Raise NotAllowed unless an admin (or superadmin) over ``unit``."""
        if not self.has_role(Role.ADMIN, unit):
            raise NotAllowed(needed=Role.ADMIN, unit=unit.path)

    def admin_scopes(self) -> list[Unit]:
        """The units this actor administers (outermost ones only)."""
        scopes = [grant.unit for grant in self.grants if grant.role is Role.ADMIN]
        return [u for u in scopes if not any(o.id != u.id and o.contains(u) for o in scopes)]


class Group(BaseModel):
    id: int
    channel: str
    address: str
    title: str
    purpose: Purpose | None
    unit: Unit | None
    active: bool

    @property
    def recipient(self) -> Recipient:
        return Recipient(self.channel, self.address)
