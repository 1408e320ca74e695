"""/allclear and the reminder's button: an informant's "nothing to report" (零报告)."""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.constants import ParseMode
from telegram.ext import Application, CallbackQueryHandler

from bot.errors import StaleButton
from bot.services import allclear
from handlers.commands import command
from handlers.common import actor_of, popup, pressed, reply, text
from handlers.context import BotContext


async def send_allclear(update: Update, context: BotContext) -> None:
    """/allclear: record "nothing to report" for the informant's class(es) this period."""
    actor = await actor_of(update, context)
    receipt = await allclear.send_allclear(context.runtime, actor)
    await reply(update, context, "allclear/receipt.j2", receipt=receipt)


async def allclear_pressed(update: Update, context: BotContext) -> None:
    """The reminder's button; its data names a class and period, both checked by the service."""
    query, data = pressed(update, allclear.BUTTON)
    unit_id, _, key = data.partition(":")
    if not unit_id.isdigit():
        raise StaleButton()
    actor = await actor_of(update, context)
    receipt = await allclear.allclear_from_button(context.runtime, actor, int(unit_id), key)
    message = text(update, context, "allclear/receipt.j2", receipt=receipt)
    if receipt.changed:
        await query.answer()
        # The confirmation replaces the reminder, and its button with it.
        await query.edit_message_text(message, parse_mode=ParseMode.HTML)
    elif (said := popup(update, context, "allclear/receipt.j2", receipt=receipt)) is not None:
        await query.answer(said, show_alert=True)
    else:
        await query.answer()
        await reply(update, context, "allclear/receipt.j2", receipt=receipt)


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    command(application, "allclear", send_allclear)
    application.add_handler(CallbackQueryHandler(allclear_pressed, pattern=f"^{allclear.BUTTON}"))
