"""Helpers shared by the tests: a clock that tests move by hand, and settings in a temp dir."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot.outbox import Recipient
from bot.runtime import Runtime, build_runtime
from bot.services import invitations, org
from bot.services.models import Actor, Profile
from bot.settings import Settings
from bot.store import upgrade
from bot.store.tables import outbox

SUPERADMIN_ID = 1000


class FakeClock:
    """A clock that only moves when a test says so."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 9, 1, 1, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a test: a SQLite file and data dir under ``tmp_path``; no .env is read."""
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'safecampus.db'}",
        "data_dir": tmp_path / "data",
        "superadmins": str(SUPERADMIN_ID),
        "locale": "zh_CN",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def open_runtime(settings: Settings, clock: FakeClock) -> Runtime:
    """A migrated Runtime on a real SQLite file (close with ``await rt.db.close()``)."""
    runtime = build_runtime(settings, clock)
    await upgrade(runtime.db)
    return runtime


def profile(
    telegram_id: int, name: str, username: str | None = None, lang: str = "zh-hans"
) -> Profile:
    return Profile(telegram_id=telegram_id, username=username, full_name=name, language_code=lang)


async def enrol(rt: Runtime, by: Actor, telegram_id: int, role: str, path: str = "") -> Actor:
    """Invite and enrol ``user<telegram_id>`` (@u<telegram_id>) as ``role`` over ``path``."""
    request = invitations.InviteRequest(role=role, unit_path=path)
    invitation = await invitations.create_invitation(rt, by, request)
    joined = await invitations.accept_invitation(
        rt, profile(telegram_id, f"user{telegram_id}", f"u{telegram_id}"), invitation.token
    )
    return joined.actor


async def add_groups(rt: Runtime, by: Actor, groups: list[tuple[str, str, str]]) -> None:
    """Bind Telegram groups as ``/bind`` does, without going through Telegram: (chat id, unit
    path — "" for the whole school —, purpose) each; the units are created as needed."""
    for address, path, purpose in groups:
        await org.bind_group(rt, by, Recipient("telegram", address), path, purpose, path)


async def messages(rt: Runtime, topic: str) -> list[Any]:
    """The outbox's messages of ``topic`` (address and payload), oldest first."""
    async with rt.db.read() as conn:
        return (
            await conn.execute(
                select(outbox.c.address, outbox.c.payload)
                .where(outbox.c.topic == topic)
                .order_by(outbox.c.id)
            )
        ).all()
