"""/alert: special periods (重点时段) — the level now, declaring one, ending one early."""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.constants import ParseMode
from telegram.error import BadRequest
from telegram.ext import Application, CallbackQueryHandler

from bot.errors import StaleButton
from bot.outbox import Button
from bot.outbox.telegram import inline_keyboard
from bot.services import special_periods
from handlers.commands import command
from handlers.common import actor_of, button, popup, pressed, reply, text
from handlers.context import BotContext


def _buttons(
    update: Update, context: BotContext, overview: special_periods.Overview
) -> list[list[Button]]:
    """One button per period that can still be stopped: end one in force, cancel one ahead."""
    rows = []
    for label, periods in (("end", overview.active), ("cancel", overview.upcoming)):
        for period in periods:
            action = f"{special_periods.END}end:{period.id}"
            template = f"special_periods/buttons/{label}.j2"
            rows.append([button(update, context, template, action, period=period)])
    return rows


async def alert(update: Update, context: BotContext) -> None:
    """/alert shows the level and the periods; /alert <level> <days> <note> declares one."""
    actor = await actor_of(update, context)
    runtime = context.runtime
    words = context.args or []
    if not words:
        overview = await special_periods.overview(runtime, actor)
        buttons = _buttons(update, context, overview)
        await reply(
            update, context, "special_periods/overview.j2", buttons=buttons, overview=overview
        )
        return
    period = await special_periods.declare_words(runtime, actor, words)
    overview = await special_periods.overview(runtime, actor)
    await reply(
        update,
        context,
        "special_periods/declared.j2",
        buttons=_buttons(update, context, overview),
        period=period,
        overview=overview,
    )


async def end_pressed(update: Update, context: BotContext) -> None:
    """An "end now" / "cancel" button. The data is only a hint: the service checks the presser
    is an admin and the period can still be stopped; otherwise nothing changes and the message
    shows the current state."""
    query, data = pressed(update, special_periods.END)
    action, _, period_id = data.partition(":")
    if action != "end" or not period_id.isdigit():
        raise StaleButton()
    actor = await actor_of(update, context)
    receipt = await special_periods.end_early(context.runtime, actor, int(period_id))
    overview = await special_periods.overview(context.runtime, actor)
    changed = receipt.outcome is not special_periods.EndOutcome.ALREADY
    said = popup(update, context, "special_periods/end_receipt.j2", receipt=receipt)
    # Said once, in the button's answer (an alert when nothing changed); the message itself
    # then shows the state as it is now, whichever it was.
    await query.answer(said, show_alert=not changed and said is not None)
    shown = text(update, context, "special_periods/overview.j2", overview=overview)
    try:
        await query.edit_message_text(
            shown,
            parse_mode=ParseMode.HTML,
            reply_markup=inline_keyboard(_buttons(update, context, overview)),
            disable_web_page_preview=True,
        )
    except BadRequest as exc:  # a double tap: "message is not modified"
        if "not modified" not in exc.message.lower():
            raise


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    command(application, "alert", alert)
    application.add_handler(CallbackQueryHandler(end_pressed, pattern=f"^{special_periods.END}"))
