"""Inspection checklists in Telegram: an admin's checklist file, /checklists, and the guided
/inspect walk (one item per message: pass / fail / not applicable, back, cancel)."""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

from telegram import Message, Update
from telegram.error import BadRequest
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    TypeHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot.errors import NotAllowed, StaleButton
from bot.outbox import Button
from bot.services import inspections, reports
from bot.services.inspections import Inspection, InspectionOver, Result
from bot.services.models import Role
from bot.services.reports import PhotoIn
from handlers.commands import command
from handlers.common import actor_of, button, pressed, reply, text
from handlers.context import BotContext
from handlers.flows import Flow

FLOW = "if:"
WALK = "safecampus.inspection"
ITEM, PHOTO = range(2)
TIMEOUT_SECONDS = 30 * 60
DOWNLOAD_LIMIT = 20 * 1024 * 1024
PRIVATE = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
CHECKLIST_FILE = (
    filters.Document.FileExtension("yaml")
    | filters.Document.FileExtension("yml")
    | filters.Document.FileExtension("txt")
)
ANSWERS = {"pass": Result.PASS, "fail": Result.FAIL, "na": Result.NOT_APPLICABLE}


def _walk(context: BotContext) -> dict[str, Any]:
    """The walk in progress: the inspection's id, the item index, a note typed for a fail."""
    assert context.user_data is not None
    walk: dict[str, Any] | None = context.user_data.get(WALK)
    if walk is None:
        raise StaleButton()
    return walk


def _button(update: Update, context: BotContext, label: str, action: str) -> Button:
    walk = _walk(context)
    return button(
        update,
        context,
        f"inspections/buttons/{label}.j2",
        f"{FLOW}{walk['id']}:{walk['index']}:{action}",
    )


def _nav(update: Update, context: BotContext) -> list[Button]:
    row = [_button(update, context, "cancel", "cancel")]
    if _walk(context)["index"] > 0:
        row.insert(0, _button(update, context, "back", "back"))
    return row


def _action(update: Update, context: BotContext) -> str:
    """The pressed button's action, if it belongs to this step of this walk (data is never
    trusted: a button from another walk or an earlier item is stale)."""
    _, data = pressed(update, FLOW)
    walk = _walk(context)
    parts = data.split(":")
    if len(parts) != 3 or parts[0] != str(walk["id"]) or parts[1] != str(walk["index"]):
        raise StaleButton()
    return parts[2]


async def _close_card(update: Update, template: str, context: BotContext, **values: Any) -> None:
    """Replace the pressed card's buttons with what was answered."""
    query = update.callback_query
    if query is None:
        return
    await query.answer()
    try:
        await query.edit_message_text(text(update, context, template, **values), parse_mode="HTML")
    except BadRequest as exc:
        if "not modified" not in exc.message.lower():
            raise


async def _inspection(context: BotContext) -> Inspection:
    return await inspections.get(context.runtime, _walk(context)["id"])


async def ask_item(update: Update, context: BotContext) -> int:
    walk = _walk(context)
    inspection = await _inspection(context)
    item = inspection.items[walk["index"]]
    buttons = [
        [
            _button(update, context, "pass", "pass"),
            _button(update, context, "fail", "fail"),
            _button(update, context, "not_applicable", "na"),
        ],
        _nav(update, context),
    ]
    await reply(
        update,
        context,
        "inspections/flow/item.j2",
        buttons=buttons,
        inspection=inspection,
        item=item,
        earlier=inspection.result_of(item.id),
    )
    return ITEM


async def _advance(update: Update, context: BotContext) -> int:
    walk = _walk(context)
    inspection = await _inspection(context)
    walk["index"] += 1
    walk["note"] = None
    if walk["index"] < len(inspection.items):
        return await ask_item(update, context)
    actor = await actor_of(update, context)
    done = await inspections.finish(context.runtime, actor, inspection.id)
    assert context.user_data is not None
    context.user_data.pop(WALK, None)
    # Said only now: the inspection is recorded as done.
    await reply(update, context, "inspections/flow/summary.j2", inspection=done)
    return ConversationHandler.END


async def _over(update: Update, context: BotContext) -> int:
    assert context.user_data is not None
    context.user_data.pop(WALK, None)
    await reply(update, context, "inspections/errors/over.j2")
    return ConversationHandler.END


# --- the walk ------------------------------------------------------------------------------


async def begin(update: Update, context: BotContext) -> int:
    """/inspect <checklist> [place]: start walking the checklist's items."""
    actor = await actor_of(update, context)
    args = context.args or []
    if not args:
        found = await inspections.list_checklists(context.runtime, actor)
        await reply(
            update,
            context,
            "inspections/list.j2",
            checklists=found,
            admin=actor.has_role(Role.ADMIN),
        )
        return ConversationHandler.END
    checklist, place = await inspections.choose_checklist(context.runtime, actor, args)
    inspection = await inspections.start(context.runtime, actor, checklist, place)
    assert context.user_data is not None
    context.user_data[WALK] = {"id": inspection.id, "index": 0, "note": None}
    await reply(update, context, "inspections/flow/started.j2", inspection=inspection)
    return await ask_item(update, context)


async def answered(update: Update, context: BotContext) -> int:
    action = _action(update, context)
    walk = _walk(context)
    if action == "cancel":
        return await cancelled(update, context)
    if action == "back":
        if walk["index"] == 0:
            raise StaleButton()
        await _close_card(update, "inspections/flow/went_back.j2", context)
        walk["index"] -= 1
        return await ask_item(update, context)
    if action not in ANSWERS:
        raise StaleButton()
    inspection = await _inspection(context)
    item = inspection.items[walk["index"]]
    result = ANSWERS[action]
    if result is Result.FAIL:
        earlier = inspection.result_of(item.id)
        if earlier is not None and earlier.hazard_id is not None:
            # Answered "fail" before going back: its hazard is already in the ledger.
            return await _record(update, context, Result.FAIL, None)
        walk["note"] = None
        await _close_card(update, "inspections/flow/answered.j2", context, item=item, result=result)
        card = await reply(
            update,
            context,
            "inspections/flow/ask_photo.j2",
            item=item,
            buttons=[
                [_button(update, context, "no_photo", "nophoto")],
                _nav_photo(update, context),
            ],
        )
        walk["card"] = card.message_id
        return PHOTO
    return await _record(update, context, result, None)


def _nav_photo(update: Update, context: BotContext) -> list[Button]:
    return [
        _button(update, context, "back", "back"),
        _button(update, context, "cancel", "cancel"),
    ]


async def _record(
    update: Update, context: BotContext, result: Result, photo: PhotoIn | None
) -> int:
    walk = _walk(context)
    actor = await actor_of(update, context)
    inspection = await _inspection(context)
    item = inspection.items[walk["index"]]
    try:
        after = await inspections.answer(
            context.runtime,
            actor,
            inspection.id,
            item.id,
            result,
            note=walk.get("note"),
            photo=photo,
        )
    except InspectionOver:
        return await _over(update, context)
    recorded = after.result_of(item.id)
    assert recorded is not None
    if update.callback_query is not None:
        await _close_card(update, "inspections/flow/answered.j2", context, item=item, result=result)
    elif walk.get("card") is not None and update.effective_chat is not None:
        # The photo came as a message: the photo step's buttons are spent.
        with contextlib.suppress(BadRequest):
            await context.bot.edit_message_reply_markup(
                update.effective_chat.id, walk["card"], reply_markup=None
            )
    walk["card"] = None
    if result is Result.FAIL:
        await reply(update, context, "inspections/flow/hazard_registered.j2", recorded=recorded)
    return await _advance(update, context)


async def photo_step(update: Update, context: BotContext) -> int:
    """In the photo step: back (to the failed item), cancel, or no photo."""
    action = _action(update, context)
    if action == "cancel":
        return await cancelled(update, context)
    if action == "back":
        await _close_card(update, "inspections/flow/went_back.j2", context)
        return await ask_item(update, context)
    if action != "nophoto":
        raise StaleButton()
    return await _record(update, context, Result.FAIL, None)


async def _received_photo(update: Update, context: BotContext, message: Message) -> PhotoIn:
    """Download the largest size into DATA_DIR by content hash, or note why it was not."""
    largest = message.photo[-1]
    size = largest.file_size
    too_big = PhotoIn(
        file_id=largest.file_id,
        file_unique_id=largest.file_unique_id,
        size=size,
        note=text(update, context, "reports/flow/too_big_photo.j2"),
    )
    if size is not None and size > DOWNLOAD_LIMIT:
        return too_big
    try:
        file = await context.bot.get_file(largest.file_id)
        data = bytes(await file.download_as_bytearray())
    except BadRequest:
        return too_big
    path = reports.store_photo(context.runtime.settings.data_dir, data)
    return PhotoIn(
        file_id=largest.file_id, file_unique_id=largest.file_unique_id, size=len(data), path=path
    )


async def photo_sent(update: Update, context: BotContext) -> int:
    message = update.effective_message
    assert message is not None
    walk = _walk(context)
    if message.caption and message.caption.strip():
        walk["note"] = message.caption.strip()
    photo = await _received_photo(update, context, message)
    return await _record(update, context, Result.FAIL, photo)


async def note_sent(update: Update, context: BotContext) -> int:
    message = update.effective_message
    assert message is not None
    assert message.text is not None
    _walk(context)["note"] = message.text.strip()[: inspections.MAX_NOTE]
    await reply(update, context, "inspections/flow/note_added.j2")
    return PHOTO


async def not_a_photo(update: Update, context: BotContext) -> int:
    await reply(update, context, "inspections/flow/not_a_photo.j2")
    return PHOTO


async def not_an_answer(update: Update, context: BotContext) -> int:
    await reply(update, context, "inspections/flow/use_buttons.j2")
    return ITEM


async def cancelled(update: Update, context: BotContext) -> int:
    assert context.user_data is not None
    walk = context.user_data.pop(WALK, None)
    if walk is not None:
        actor = await actor_of(update, context)
        await inspections.abandon(context.runtime, actor, walk["id"])
    if update.callback_query is not None:
        await update.callback_query.answer()
        await update.callback_query.edit_message_reply_markup(None)
    await reply(update, context, "inspections/flow/cancelled.j2")
    return ConversationHandler.END


async def timed_out(update: Update, context: BotContext) -> None:
    assert context.user_data is not None
    walk = context.user_data.pop(WALK, None)
    if walk is not None:
        actor = await actor_of(update, context)
        await inspections.abandon(context.runtime, actor, walk["id"])
    await reply(update, context, "inspections/flow/timeout.j2")


# --- checklists ----------------------------------------------------------------------------


async def show_checklists(update: Update, context: BotContext) -> None:
    """/checklists: the templates one may walk with /inspect."""
    actor = await actor_of(update, context)
    found = await inspections.list_checklists(context.runtime, actor)
    await reply(
        update,
        context,
        "inspections/list.j2",
        checklists=found,
        usage=False,
        admin=actor.has_role(Role.ADMIN),
    )


async def checklist_file(update: Update, context: BotContext) -> None:
    """A .yaml/.yml/.txt file sent in private: an admin's checklist templates to import."""
    actor = await actor_of(update, context)
    message = update.effective_message
    assert message is not None
    assert message.document is not None
    document = message.document
    if not actor.has_role(Role.ADMIN):
        raise NotAllowed(needed=Role.ADMIN, unit="")
    limit_kb = inspections.MAX_FILE_BYTES // 1000
    if document.file_size is not None and document.file_size > inspections.MAX_FILE_BYTES:
        await reply(update, context, "inspections/errors/too_big.j2", limit_kb=limit_kb)
        return
    file = await context.bot.get_file(document.file_id)
    data = bytes(await file.download_as_bytearray())
    if len(data) > inspections.MAX_FILE_BYTES:
        await reply(update, context, "inspections/errors/too_big.j2", limit_kb=limit_kb)
        return
    summary = await inspections.import_checklists(
        context.runtime, actor, data, document.file_name or ""
    )
    await reply(update, context, "inspections/imported.j2", summary=summary)


async def inspect_elsewhere(update: Update, context: BotContext) -> None:
    """Reached only outside private chats (the guard answers where /inspect works)."""


def _flow_handler() -> Flow:
    step = CallbackQueryHandler(answered, pattern=f"^{FLOW}")
    photo_buttons = CallbackQueryHandler(photo_step, pattern=f"^{FLOW}")
    with warnings.catch_warnings():
        # Our CallbackQueryHandlers track the person, not a message: that is what we want.
        warnings.simplefilter("ignore", PTBUserWarning)
        return Flow(
            commands=("inspect",),
            entry_points=[CommandHandler("inspect", begin, filters=PRIVATE)],
            states={
                ITEM: [step, MessageHandler(~filters.COMMAND, not_an_answer)],
                PHOTO: [
                    MessageHandler(filters.PHOTO, photo_sent),
                    MessageHandler(filters.TEXT & ~filters.COMMAND, note_sent),
                    photo_buttons,
                    MessageHandler(~filters.COMMAND, not_a_photo),
                ],
                ConversationHandler.TIMEOUT: [TypeHandler(Update, timed_out)],
            },
            fallbacks=[CommandHandler("cancel", cancelled)],
            allow_reentry=True,
            conversation_timeout=TIMEOUT_SECONDS,
            name="inspection",
        )


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    application.add_handler(_flow_handler())
    command(application, "inspect", inspect_elsewhere)
    command(application, "checklists", show_checklists)
    # Before the duty roster's handler, which takes every other file sent in private.
    application.add_handler(MessageHandler(PRIVATE & CHECKLIST_FILE, checklist_file))
