"""Run the real SafeCampus Application against the fake Bot API, as `safecampus run` would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from telegram.ext import Application

from bot.app import build_application
from bot.clock import Clock, utc_now
from bot.outbox.sender import SenderPolicy
from bot.settings import Settings
from tests.fakebotapi import FakeBotAPI
from tests.support import make_settings

# Fast retries so that outage tests take a second, not minutes.
TEST_POLICY = SenderPolicy(backoff_base=0.05, backoff_max=0.2, idle_poll=0.2)


def bot_settings(tmp_path: Path, telegram: FakeBotAPI, **overrides: Any) -> Settings:
    """Settings pointing the bot at the fake Telegram server, storing under ``tmp_path``."""
    return make_settings(
        tmp_path,
        bot_token=FakeBotAPI.TOKEN,
        api_base_url=telegram.base_url,
        api_file_base_url=telegram.file_base_url,
        **overrides,
    )


@asynccontextmanager
async def polling(
    application: Application[Any, Any, Any, Any, Any, Any],
) -> AsyncIterator[Application[Any, Any, Any, Any, Any, Any]]:
    """Initialise, poll and start ``application``; stop it in reverse when the block ends.

    This is what ``run_polling`` does, minus the signal handling."""
    await application.initialize()
    if application.post_init is not None:
        await application.post_init(application)
    assert application.updater is not None
    await application.updater.start_polling(poll_interval=0, timeout=5)
    await application.start()
    try:
        yield application
    finally:
        await application.updater.stop()
        await application.stop()
        await application.shutdown()
        if application.post_shutdown is not None:
            await application.post_shutdown(application)


@asynccontextmanager
async def running_bot(
    settings: Settings, *, clock: Clock = utc_now, policy: SenderPolicy = TEST_POLICY
) -> AsyncIterator[Application[Any, Any, Any, Any, Any, Any]]:
    """The Application polling the fake server; stopped (like Ctrl-C) when the block ends."""
    application = build_application(settings, clock=clock, sender_policy=policy)
    async with polling(application):
        yield application
