"""One guided flow at a time per person.

Several guided flows (/report, /hazard, /inspect) listen in the same private chat. A flow
someone walked away from must not catch the messages they meant for the next thing they
started, so starting any other command (or a captioned quick path such as "/report …" on a
photo) makes every other open flow step aside. /cancel is the flows' own way out and changes
nothing here.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from telegram import Update
from telegram.ext import (
    Application,
    BaseHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    TypeHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from handlers.common import reply
from handlers.context import BotContext

Step = Callable[[Update, BotContext], Awaitable[int]]

TIMEOUT = timedelta(minutes=15)  # a guided flow left alone this long is dropped, politely
# Before everything else: it only takes note and never stops an update.
FLOWS_GROUP = -10
KEEP = frozenset({"cancel"})
PRIVATE_MESSAGE = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE

# user id → the command they started last ("report", "hazard", "inspect", "help", …)
_started: dict[int, str] = {}
_flows: list[Flow] = []


def _command_of(update: Update) -> str | None:
    message = update.effective_message
    if message is None:
        return None
    words = (message.text or message.caption or "").split()
    if not words or not words[0].startswith("/"):
        return None
    name = words[0][1:].split("@")[0].lower()
    if name == "start" and len(words) > 1:
        return words[1].split("-")[0].lower()  # "/start report" continues a report
    return name


async def _note_command(update: Update, context: BotContext) -> None:
    command = _command_of(update)
    if command is None or command in KEEP or update.effective_user is None:
        return
    _started[update.effective_user.id] = command
    for flow in _flows:
        if command not in flow.commands and context.user_data is not None:
            for key in flow.forget:
                context.user_data.pop(key, None)  # a half-filled draft of a flow left behind


class Flow(ConversationHandler[Any]):
    """A ConversationHandler that steps aside once its person starts another command.

    ``commands`` are the commands that start this flow; ``forget`` the user_data keys that
    hold its half-filled state, dropped when the person moves on."""

    def __init__(
        self, *args: Any, commands: tuple[str, ...], forget: tuple[str, ...] = (), **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.commands = frozenset(commands)
        self.forget = forget
        _flows.append(self)

    def check_update(self, update: object) -> Any:
        if isinstance(update, Update) and update.effective_user is not None:
            started = _started.get(update.effective_user.id)
            if started is not None and started not in self.commands:
                # The person moved on: forget where they were in this flow.
                with contextlib.suppress(RuntimeError):
                    self._conversations.pop(self._get_key(update), None)
        return super().check_update(update)


def step_back(steps: dict[int, Step], state: int) -> Step:
    """The "back" button of step ``state``: show the step before it again."""

    async def back(update: Update, context: BotContext) -> int:
        return await steps[state - 1](update, context)

    return back


def cancel(draft: str, template: str) -> Step:
    """/cancel or the cancel button: drop the draft kept under ``draft``, say ``template``."""

    async def cancelled(update: Update, context: BotContext) -> int:
        assert context.user_data is not None
        context.user_data.pop(draft, None)
        if update.callback_query is not None:
            await update.callback_query.answer()
            await update.callback_query.edit_message_reply_markup(None)
        await reply(update, context, template)
        return ConversationHandler.END

    return cancelled


def time_out(draft: str, template: str) -> Callable[[Update, BotContext], Awaitable[None]]:
    """The flow was left unfinished: drop the draft politely, saying ``template``."""

    async def timed_out(update: Update, context: BotContext) -> None:
        assert context.user_data is not None
        context.user_data.pop(draft, None)
        await reply(update, context, template)

    return timed_out


def guided(
    *,
    name: str,
    draft: str,
    entry_points: list[BaseHandler[Any, Any, Any]],
    states: dict[object, list[BaseHandler[Any, Any, Any]]],
    cancelled: Step,
    timeout_template: str,
) -> Flow:
    """A guided flow as all of ours are: started by the command ``name``, its half-filled state
    kept under ``draft``; /cancel (``cancelled``) and TIMEOUT of silence (saying
    ``timeout_template``) drop the draft; the command again starts afresh."""
    with warnings.catch_warnings():
        # Our CallbackQueryHandlers track the person, not a message: that is what we want.
        warnings.simplefilter("ignore", PTBUserWarning)
        return Flow(
            commands=(name,),
            forget=(draft,),
            entry_points=entry_points,
            states={
                **states,
                ConversationHandler.TIMEOUT: [
                    TypeHandler(Update, time_out(draft, timeout_template))
                ],
            },
            fallbacks=[CommandHandler("cancel", cancelled)],
            allow_reentry=True,
            conversation_timeout=TIMEOUT.total_seconds(),
            name=name,
        )


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    application.add_handler(
        MessageHandler(
            filters.ChatType.PRIVATE
            & filters.UpdateType.MESSAGE
            & (filters.TEXT | filters.CAPTION),
            _note_command,
        ),
        group=FLOWS_GROUP,
    )
