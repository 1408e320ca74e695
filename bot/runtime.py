"""What every service call needs besides its arguments: storage, texts, the clock, settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bot.clock import Clock, utc_now
from bot.render import Renderer
from bot.settings import Settings
from bot.store import Database, open_database


@dataclass
class Runtime:
    """Built once by bot.app (or a test) and handed to services."""

    settings: Settings
    db: Database
    renderer: Renderer
    clock: Clock = field(default=utc_now)

    def now(self) -> datetime:
        return self.clock()


def build_runtime(settings: Settings, clock: Clock = utc_now) -> Runtime:
    """Open the database and template environment for ``settings`` (no Telegram involved)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return Runtime(
        settings=settings,
        db=open_database(settings.database_url),
        renderer=Renderer(settings.zone, settings.locale),
        clock=clock,
    )
