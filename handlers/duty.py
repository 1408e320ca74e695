"""/duty, /handover and roster files: the duty roster (值班表) in Telegram."""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import Application, MessageHandler, filters

from bot.errors import NotAllowed
from bot.services import duty
from bot.services.models import Role
from handlers.commands import command
from handlers.common import actor_of, reply
from handlers.context import BotContext


async def show_duty(update: Update, context: BotContext) -> None:
    """/duty: who is on duty now and today, and the latest handover."""
    actor = await actor_of(update, context)
    board = await duty.duty_board(context.runtime, actor)
    await reply(update, context, "duty/board.j2", board=board)


async def handover(update: Update, context: BotContext) -> None:
    """/handover <text>: a note for the next shift, from someone on duty now."""
    actor = await actor_of(update, context)
    message = update.effective_message
    assert message is not None
    assert message.text is not None
    # The text after the command as typed: context.args would lose the note's line breaks.
    parts = message.text.split(maxsplit=1)
    note = await duty.record_handover(context.runtime, actor, parts[1] if len(parts) > 1 else "")
    await reply(update, context, "duty/handover_saved.j2", handover=note)


async def roster_file(update: Update, context: BotContext) -> None:
    """A file sent in private: an admin's duty roster (CSV) to import."""
    actor = await actor_of(update, context)
    message = update.effective_message
    assert message is not None
    assert message.document is not None
    document = message.document
    # Checked before downloading anything; the service checks the admin's scope again.
    if not actor.has_role(Role.ADMIN):
        raise NotAllowed(needed=Role.ADMIN, unit="")
    name = document.file_name or ""
    if not (name.lower().endswith(".csv") or document.mime_type == "text/csv"):
        await reply(update, context, "duty/errors/not_csv.j2", file_name=name)
        return
    limit_kb = duty.MAX_FILE_BYTES // 1000
    if document.file_size is not None and document.file_size > duty.MAX_FILE_BYTES:
        await reply(update, context, "duty/errors/too_big.j2", limit_kb=limit_kb)
        return
    file = await context.bot.get_file(document.file_id)
    data = bytes(await file.download_as_bytearray())
    if len(data) > duty.MAX_FILE_BYTES:  # Telegram did not say the size beforehand
        await reply(update, context, "duty/errors/too_big.j2", limit_kb=limit_kb)
        return
    summary = await duty.import_roster(context.runtime, actor, data, name, source="telegram")
    await reply(update, context, "duty/imported.j2", summary=summary)


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    command(application, "duty", show_duty)
    command(application, "handover", handover)
    application.add_handler(
        MessageHandler(
            filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE & filters.Document.ALL,
            roster_file,
        )
    )
