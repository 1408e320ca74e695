"""/compliance: the assessment calendar (done / due / overdue per obligation, with the records
that prove it), and the admins' button that loads the built-in "平安校园" preset."""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import Application, CallbackQueryHandler

from bot.errors import StaleButton
from bot.services import compliance
from handlers.commands import command
from handlers.common import actor_of, button, pressed, reply, show
from handlers.context import BotContext

PRESET = "cmp:preset:"  # callback data: "cmp:preset:<preset name>"


async def show_calendar(update: Update, context: BotContext) -> None:
    """/compliance, and the view again after a preset was loaded."""
    actor = await actor_of(update, context)
    calendar = await compliance.calendar_view(context.runtime, actor)
    buttons = (
        [
            [
                button(update, context, "compliance/buttons/load_preset.j2", f"{PRESET}{name}")
                for name in compliance.PRESETS
            ]
        ]
        if calendar.may_load_preset and not calendar.items
        else None
    )
    await show(
        update,
        context,
        "compliance/status.j2",
        buttons=buttons,
        items=calendar.items,
        now=calendar.at,
    )


async def load_preset_pressed(update: Update, context: BotContext) -> None:
    """The admins' "load the preset" button; the service checks the presser is an admin."""
    _query, name = pressed(update, PRESET)
    if name not in compliance.PRESETS:
        raise StaleButton()
    actor = await actor_of(update, context)
    loaded = await compliance.load_preset(context.runtime, actor, name)
    await show_calendar(update, context)
    await reply(update, context, "compliance/preset_loaded.j2", preset=name, loaded=loaded)


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    command(application, "compliance", show_calendar)
    application.add_handler(CallbackQueryHandler(load_preset_pressed, pattern=f"^{PRESET}"))
