"""The CallbackContext handlers receive: typed access to the runtime and the caller."""

from __future__ import annotations

from typing import Any

from telegram.ext import CallbackContext, ExtBot

from bot.runtime import Runtime
from bot.services.org import Actor

RUNTIME = "safecampus.runtime"
SENDER = "safecampus.sender"


class BotContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    """``context.runtime`` for services; ``context.actor`` is set by the identify guard."""

    actor: Actor | None = None

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.application.bot_data[RUNTIME]
        return runtime
