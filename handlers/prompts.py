"""Asking someone to type something after they pressed a button ("send the outcome of R-0042").

The next text the person sends in private answers the prompt; /cancel or any other command
drops it. Prompts live in memory only: after a restart the person presses the button again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import Update
from telegram.ext import Application, ApplicationHandlerStop, MessageHandler, filters

from bot.errors import DomainError
from handlers.common import reply
from handlers.context import BotContext

PENDING = "safecampus.prompt"
EXPIRES_AFTER = 15 * 60  # seconds: an old prompt must not swallow an unrelated message
# Before every capability's handlers (group 0), so an awaited answer is not taken for a command.
PROMPT_GROUP = -1

Answer = Callable[[Update, BotContext, str, tuple[Any, ...]], Awaitable[None]]
_answers: dict[str, Answer] = {}


def on_answer(kind: str) -> Callable[[Answer], Answer]:
    """Register the function that receives the text typed in answer to prompts of ``kind``."""

    def register(function: Answer) -> Answer:
        _answers[kind] = function
        return function

    return register


def expect(context: BotContext, kind: str, *args: Any) -> None:
    """The next private text from this person answers a prompt of ``kind`` (with ``args``)."""
    assert context.user_data is not None
    context.user_data[PENDING] = (kind, args, time.monotonic())


def _take(context: BotContext) -> tuple[str, tuple[Any, ...]] | None:
    if context.user_data is None or PENDING not in context.user_data:
        return None
    kind, args, since = context.user_data.pop(PENDING)
    if time.monotonic() - since > EXPIRES_AFTER:
        return None
    return kind, args


async def _answered(update: Update, context: BotContext) -> None:
    message = update.effective_message
    assert message is not None
    if message.text and message.text.split()[0].split("@")[0] == "/cancel":
        if _take(context) is not None:
            await reply(update, context, "reports/prompts/cancelled.j2")
            raise ApplicationHandlerStop
        return
    if message.text is None:
        return
    if message.text.startswith("/"):
        _take(context)  # another command: the person moved on, so the prompt is dropped
        return
    pending = _take(context)
    if pending is None:
        return
    kind, args = pending
    try:
        await _answers[kind](update, context, message.text, args)
    except DomainError:
        expect(context, kind, *args)  # e.g. too long: the person may simply try again
        raise
    raise ApplicationHandlerStop


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    application.add_handler(
        MessageHandler(
            filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE & filters.TEXT, _answered
        ),
        group=PROMPT_GROUP,
    )
