"""/reminders (the admin's list with pause / resume / delete) and the "收到" button."""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import Application, CallbackQueryHandler

from bot.errors import StaleButton
from bot.outbox import Button
from bot.services import reminders
from handlers.commands import command
from handlers.common import actor_of, button, is_private, popup, pressed, recipient_of, show
from handlers.context import BotContext

ACTIONS = ("pause", "resume", "delete")


def _buttons(
    update: Update, context: BotContext, rules: list[reminders.RuleView]
) -> list[list[Button]]:
    rows = []
    for rule in rules:
        action = "resume" if rule.paused else "pause"
        rows.append(
            [
                button(
                    update,
                    context,
                    f"reminders/buttons/{action}.j2",
                    f"{reminders.MANAGE}{action}:{rule.id}",
                    rule=rule,
                ),
                button(
                    update,
                    context,
                    "reminders/buttons/delete.j2",
                    f"{reminders.MANAGE}delete:{rule.id}",
                    rule=rule,
                ),
            ]
        )
    return rows


async def list_reminders(update: Update, context: BotContext) -> None:
    """/reminders: every rule, its next five due times, and buttons to manage it."""
    actor = await actor_of(update, context)
    rules = await reminders.list_rules(context.runtime, actor)
    await show(
        update,
        context,
        "reminders/list.j2",
        buttons=_buttons(update, context, rules),
        rules=rules,
        zone=context.runtime.settings.zone,
    )


async def manage_pressed(update: Update, context: BotContext) -> None:
    """A /reminders button; the service checks the presser is an admin and the rule exists."""
    _query, data = pressed(update, reminders.MANAGE)
    action, _, rule_id = data.partition(":")
    if action not in ACTIONS or not rule_id.isdigit():
        raise StaleButton()
    actor = await actor_of(update, context)
    await reminders.manage(context.runtime, actor, action, int(rule_id))
    await list_reminders(update, context)


async def ack_pressed(update: Update, context: BotContext) -> None:
    """ "收到": recorded once per person; the service checks the occurrence and the chat."""
    query, data = pressed(update, reminders.ACK)
    if not data.isdigit():
        raise StaleButton()
    actor = await actor_of(update, context)
    chat = update.effective_chat
    assert chat is not None
    receipt = await reminders.acknowledge(
        context.runtime, actor, int(data), recipient_of(chat), is_private(update)
    )
    said = popup(update, context, "reminders/ack.j2", receipt=receipt)
    await query.answer(said, show_alert=said is not None)


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    command(application, "reminders", list_reminders)
    application.add_handler(CallbackQueryHandler(manage_pressed, pattern=f"^{reminders.MANAGE}"))
    application.add_handler(CallbackQueryHandler(ack_pressed, pattern=f"^{reminders.ACK}"))
