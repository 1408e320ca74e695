"""/help: only the commands the caller's roles allow, for private chats and for groups."""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import Application

from handlers.commands import GROUP, PRIVATE, available, command
from handlers.common import actor_of, is_private, reply
from handlers.context import BotContext


async def show_help(update: Update, context: BotContext) -> None:
    actor = await actor_of(update, context)
    await reply(
        update,
        context,
        "help/help.j2",
        actor=actor,
        in_private=is_private(update),
        private_commands=available(actor, PRIVATE),
        group_commands=available(actor, GROUP),
    )


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    command(application, "help", show_help)
