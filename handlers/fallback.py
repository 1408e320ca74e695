"""Whatever no other handler took: unknown commands, stray text, buttons nobody knows."""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import Application, CallbackQueryHandler, MessageHandler, filters

from bot.errors import StaleButton
from handlers.common import actor_of, reply
from handlers.context import BotContext

# Registered last in group 0: PTB gives an update to the first matching handler of a group,
# so these only see what every capability left.


async def unknown_command(update: Update, context: BotContext) -> None:
    await actor_of(update, context)
    await reply(update, context, "fallback/unknown_command.j2")


async def stray_text(update: Update, context: BotContext) -> None:
    await actor_of(update, context)
    await reply(update, context, "fallback/hint.j2")


async def unknown_button(update: Update, context: BotContext) -> None:
    raise StaleButton()


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    private = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
    application.add_handler(MessageHandler(private & filters.COMMAND, unknown_command))
    application.add_handler(
        MessageHandler(private & ~filters.COMMAND & ~filters.StatusUpdate.ALL, stray_text)
    )
    application.add_handler(CallbackQueryHandler(unknown_button))
