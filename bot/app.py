"""The composition root: build_application(settings) wires storage, texts, handlers, the outbox
sender and the schedules together. Nothing else constructs these."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from telegram.ext import AIORateLimiter, Application, ApplicationBuilder, ContextTypes, Defaults

from bot.clock import Clock, utc_now
from bot.outbox.sender import OutboxSender, SenderPolicy
from bot.outbox.telegram import TelegramTransport
from bot.runtime import Runtime, build_runtime
from bot.services import org
from bot.settings import Settings
from bot.store import upgrade
from handlers.context import RUNTIME, SENDER, BotContext

MENUS = "safecampus.menus"


def build_application(
    settings: Settings,
    *,
    clock: Clock = utc_now,
    sender_policy: SenderPolicy | None = None,
) -> Application[Any, BotContext, Any, Any, Any, Any]:
    """A ready-to-run Application for ``settings`` (polling is started by the caller)."""
    import handlers
    import schedules

    if settings.bot_token is None:
        raise ValueError("build_application needs settings.bot_token")
    runtime = build_runtime(settings, clock)
    token = settings.bot_token.get_secret_value()

    async def post_init(application: Application[Any, BotContext, Any, Any, Any, Any]) -> None:
        await upgrade(runtime.db)
        policy = sender_policy or SenderPolicy()
        transport = TelegramTransport.create(settings, connections=policy.max_in_flight)
        sender = OutboxSender(
            runtime.db,
            transport,
            clock=clock,
            policy=policy,
            on_moved=lambda old, new: org.group_moved(runtime, old, new),
        )
        application.bot_data[SENDER] = sender
        await sender.start()
        await handlers.publish_command_menus(application.bot, runtime)
        # One call per person: in the background, so a big school starts answering at once.
        application.bot_data[MENUS] = asyncio.create_task(
            handlers.publish_personal_menus(application.bot, runtime), name="personal-menus"
        )
        await schedules.plan(application, runtime)

    async def post_shutdown(application: Application[Any, BotContext, Any, Any, Any, Any]) -> None:
        menus: asyncio.Task[None] | None = application.bot_data.pop(MENUS, None)
        if menus is not None:
            menus.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await menus
        sender: OutboxSender | None = application.bot_data.pop(SENDER, None)
        if sender is not None:
            await sender.stop()
        await runtime.db.close()

    application = (
        ApplicationBuilder()
        .token(token)
        .base_url(settings.api_base_url)
        .base_file_url(settings.api_file_base_url)
        .context_types(ContextTypes(context=BotContext))
        # The JobQueue plans in the school's time zone.
        .defaults(Defaults(tzinfo=settings.zone))
        # Direct replies share Telegram's limits; the outbox sender paces itself (bot.outbox).
        .rate_limiter(AIORateLimiter(max_retries=2))
        .post_init(post_init)
        .post_shutdown(post_shutdown)
        .build()
    )
    application.bot_data[RUNTIME] = runtime
    handlers.register(application)
    return application


def runtime_of(application: Application[Any, Any, Any, Any, Any, Any]) -> Runtime:
    """The Runtime that ``application`` was built with."""
    runtime: Runtime = application.bot_data[RUNTIME]
    return runtime
