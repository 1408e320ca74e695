"""The handler edge: domain refusals become a clear message; anything else is logged with an
incident code and the user is told, in their language, without a traceback."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from telegram import Update
from telegram.constants import ParseMode
from telegram.error import TelegramError
from telegram.ext import Application, ApplicationHandlerStop

from bot.errors import DomainError
from bot.logs import log_event
from handlers.common import ALERT_LIMIT, locale_of, plain
from handlers.context import BotContext

logger = logging.getLogger(__name__)


def incident_code() -> str:
    """Short enough to read over the phone, unique enough to find in the logs."""
    return secrets.token_hex(3).upper()


def _describe(update: object) -> dict[str, Any]:
    if not isinstance(update, Update):
        return {"update": type(update).__name__}
    chat, user = update.effective_chat, update.effective_user
    message = update.effective_message
    return {
        "update_id": update.update_id,
        "chat": chat.id if chat else None,
        "user": user.id if user else None,
        "text": (message.text or message.caption or "")[:80] if message else None,
        "callback": update.callback_query.data if update.callback_query else None,
    }


async def on_error(update: object, context: BotContext) -> None:
    """Explain the problem, then stop: no other handler acts on an update that failed."""
    await _explain(update, context)
    raise ApplicationHandlerStop


async def _explain(update: object, context: BotContext) -> None:
    error = context.error
    if isinstance(error, DomainError):
        log_event(logger, "refused", logging.INFO, reason=type(error).__name__, **_describe(update))
        if isinstance(update, Update):
            message = context.runtime.renderer.render(
                locale_of(update, context), error.template, **error.context
            )
            await _tell(update, context, message)
        return
    code = incident_code()
    log_event(
        logger,
        "handler_failed",
        logging.ERROR,
        incident=code,
        error=repr(error),
        **_describe(update),
        exc_info=error,
    )
    if isinstance(update, Update):
        message = context.runtime.renderer.render(
            locale_of(update, context), "errors/unexpected.j2", code=code
        )
        await _tell(update, context, message)


async def _tell(update: Update, context: BotContext, message: str) -> None:
    try:
        if update.callback_query is not None:
            said = plain(message)
            if len(said) <= ALERT_LIMIT:
                await update.callback_query.answer(said, show_alert=True)
                return
            await update.callback_query.answer()
        if update.effective_chat is not None:
            await context.bot.send_message(
                update.effective_chat.id, message, parse_mode=ParseMode.HTML
            )
    except TelegramError as exc:
        log_event(logger, "error_reply_failed", logging.WARNING, error=str(exc))


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    application.add_error_handler(on_error)
