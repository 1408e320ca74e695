"""Filing a report: the guided /report flow, the quick paths, and the views of reports."""

from __future__ import annotations

import re
from typing import Any

from telegram import Message, Update
from telegram.error import BadRequest, TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)

from bot.errors import StaleButton
from bot.outbox import Button
from bot.services import reports
from bot.services.reports import Category, Draft, PhotoIn, Severity
from handlers.commands import command
from handlers.common import actor_of, button, pressed, reply, show, text
from handlers.context import BotContext
from handlers.flows import Flow, cancel, guided, step_back
from handlers.report_actions import detail_buttons

FLOW = "rf:"
DRAFT = "safecampus.report_draft"
CATEGORY, SEVERITY, DESCRIPTION, PHOTOS, ANONYMOUS, CONFIRM = range(6)
# The Bot API refuses to hand out files over 20 MB; such photos are recorded by file_id only.
DOWNLOAD_LIMIT = 20 * 1024 * 1024
PRIVATE = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
REFERENCE = re.compile(r"[Rr]-?\d{1,9}")


def _draft(context: BotContext) -> Draft:
    assert context.user_data is not None
    draft: Draft = context.user_data.setdefault(DRAFT, Draft())
    return draft


def _flow_button(
    update: Update, context: BotContext, label: str, action: str, **values: Any
) -> Button:
    return button(update, context, f"reports/buttons/{label}.j2", f"{FLOW}{action}", **values)


def _nav(update: Update, context: BotContext, back: bool = True) -> list[Button]:
    row = [_flow_button(update, context, "cancel", "cancel")]
    return [_flow_button(update, context, "back", "back"), *row] if back else row


async def _show(
    update: Update, context: BotContext, template: str, buttons: list[list[Button]]
) -> None:
    """Show a step: edit the message whose button was pressed, or send a new one."""
    await show(update, context, template, buttons=buttons, draft=_draft(context))


# --- the steps -------------------------------------------------------------------------------


async def ask_category(update: Update, context: BotContext) -> int:
    choices = [
        _flow_button(update, context, "category", f"cat:{c.value}", category=c) for c in Category
    ]
    rows = [choices[i : i + 3] for i in range(0, len(choices), 3)]
    await _show(
        update,
        context,
        "reports/flow/choose_category.j2",
        [*rows, _nav(update, context, back=False)],
    )
    return CATEGORY


async def ask_severity(update: Update, context: BotContext) -> int:
    choices = [
        _flow_button(update, context, "severity", f"sev:{s.value}", severity=s)
        for s in reversed(Severity)
    ]
    await _show(
        update, context, "reports/flow/choose_severity.j2", [choices, _nav(update, context)]
    )
    return SEVERITY


async def ask_description(update: Update, context: BotContext) -> int:
    row = _nav(update, context)
    if _draft(context).description:
        row.insert(1, _flow_button(update, context, "done", "keep"))
    await _show(update, context, "reports/flow/ask_description.j2", [row])
    return DESCRIPTION


async def ask_photos(update: Update, context: BotContext) -> int:
    buttons = [[_flow_button(update, context, "done", "done")], _nav(update, context)]
    await _show(update, context, "reports/flow/ask_photos.j2", buttons)
    return PHOTOS


async def ask_anonymous(update: Update, context: BotContext) -> int:
    buttons = [
        [
            _flow_button(update, context, "anonymous_yes", "anon:1"),
            _flow_button(update, context, "anonymous_no", "anon:0"),
        ],
        _nav(update, context),
    ]
    await _show(update, context, "reports/flow/ask_anonymous.j2", buttons)
    return ANONYMOUS


async def ask_confirmation(update: Update, context: BotContext) -> int:
    buttons = [
        [
            _flow_button(update, context, "confirm", "confirm"),
            _flow_button(update, context, "edit", "edit"),
        ],
        _nav(update, context),
    ]
    await _show(update, context, "reports/flow/confirm.j2", buttons)
    return CONFIRM


STEPS = {
    CATEGORY: ask_category,
    SEVERITY: ask_severity,
    DESCRIPTION: ask_description,
    PHOTOS: ask_photos,
    ANONYMOUS: ask_anonymous,
    CONFIRM: ask_confirmation,
}


# --- answers ---------------------------------------------------------------------------------


async def begin(update: Update, context: BotContext) -> int:
    """/report: with a reference, show that report; with text, file it at once; else guide."""
    actor = await actor_of(update, context)
    args = context.args or []
    if len(args) == 1 and REFERENCE.fullmatch(args[0]):
        await show_report(update, context, reports.parse_reference(args[0]))
        return ConversationHandler.END
    if args:
        assert update.effective_message is not None
        assert update.effective_message.text
        description = update.effective_message.text.split(maxsplit=1)[1]
        await _file(update, context, Draft(description=description))
        return ConversationHandler.END
    if not actor.enrolled:
        await reply(update, context, "start/not_enrolled.j2", actor=actor)
        return ConversationHandler.END
    assert context.user_data is not None
    context.user_data[DRAFT] = Draft()
    return await ask_category(update, context)


async def photo_with_caption(update: Update, context: BotContext) -> int:
    """A photo captioned "/report …" files a routine report with that photo at once."""
    message = update.effective_message
    assert message is not None
    await actor_of(update, context)
    description = (message.caption or "").split(maxsplit=1)[1:] or [""]
    photo = await _received_photo(update, context, message)
    await _file(update, context, Draft(description=description[0], photos=[photo]))
    return ConversationHandler.END


async def chose_category(update: Update, context: BotContext) -> int:
    _, value = pressed(update, f"{FLOW}cat:")
    if value not in Category.__members__.values():
        raise StaleButton()
    _draft(context).category = Category(value)
    return await ask_severity(update, context)


async def chose_severity(update: Update, context: BotContext) -> int:
    _, value = pressed(update, f"{FLOW}sev:")
    if value not in Severity.__members__.values():
        raise StaleButton()
    _draft(context).severity = Severity(value)
    return await ask_description(update, context)


async def described(update: Update, context: BotContext) -> int:
    message = update.effective_message
    assert message is not None
    assert message.text is not None
    length = len(message.text.strip())
    if not length or length > reports.MAX_DESCRIPTION:
        template = "reports/errors/empty.j2" if not length else "reports/errors/too_long.j2"
        await reply(update, context, template, limit=reports.MAX_DESCRIPTION, length=length)
        return DESCRIPTION
    _draft(context).description = message.text.strip()
    return await ask_photos(update, context)


async def kept_description(update: Update, context: BotContext) -> int:
    return await ask_photos(update, context)


async def not_text(update: Update, context: BotContext) -> int:
    await reply(update, context, "reports/errors/not_text.j2")
    return DESCRIPTION


async def _received_photo(update: Update, context: BotContext, message: Message) -> PhotoIn:
    """Download the largest size into DATA_DIR by content hash, or note why it was not."""
    largest = message.photo[-1]
    size = largest.file_size
    if size is not None and size > DOWNLOAD_LIMIT:
        return PhotoIn(
            file_id=largest.file_id,
            file_unique_id=largest.file_unique_id,
            size=size,
            note=text(update, context, "reports/flow/too_big_photo.j2"),
        )
    try:
        file = await context.bot.get_file(largest.file_id)
        data = bytes(await file.download_as_bytearray())
    except BadRequest:  # "file is too big" when Telegram did not tell the size beforehand
        return PhotoIn(
            file_id=largest.file_id,
            file_unique_id=largest.file_unique_id,
            size=size,
            note=text(update, context, "reports/flow/too_big_photo.j2"),
        )
    path = reports.store_photo(context.runtime.settings.data_dir, data)
    return PhotoIn(
        file_id=largest.file_id, file_unique_id=largest.file_unique_id, size=len(data), path=path
    )


async def photo_added(update: Update, context: BotContext) -> int:
    message = update.effective_message
    assert message is not None
    draft = _draft(context)
    if len(draft.photos) >= reports.MAX_PHOTOS:
        await reply(
            update,
            context,
            "reports/errors/too_long.j2",
            limit=reports.MAX_PHOTOS,
            length=len(draft.photos) + 1,
        )
        return PHOTOS
    photo = await _received_photo(update, context, message)
    draft.photos.append(photo)
    await reply(
        update, context, "reports/flow/photo_added.j2", count=len(draft.photos), note=photo.note
    )
    return PHOTOS


async def location_added(update: Update, context: BotContext) -> int:
    message = update.effective_message
    assert message is not None
    assert message.location is not None
    draft = _draft(context)
    draft.latitude, draft.longitude = message.location.latitude, message.location.longitude
    await reply(update, context, "reports/flow/location_added.j2")
    return PHOTOS


async def not_a_photo(update: Update, context: BotContext) -> int:
    await reply(update, context, "reports/errors/not_a_photo.j2")
    return PHOTOS


async def photos_done(update: Update, context: BotContext) -> int:
    return await ask_anonymous(update, context)


async def chose_anonymity(update: Update, context: BotContext) -> int:
    _, value = pressed(update, f"{FLOW}anon:")
    if value not in ("0", "1"):
        raise StaleButton()
    _draft(context).anonymous = value == "1"
    return await ask_confirmation(update, context)


async def confirmed(update: Update, context: BotContext) -> int:
    query, _ = pressed(update, FLOW)
    await query.answer()
    await query.edit_message_reply_markup(None)  # no second submission from the same card
    await _file(update, context, _draft(context))
    return ConversationHandler.END


async def edit(update: Update, context: BotContext) -> int:
    return await ask_category(update, context)


async def _file(update: Update, context: BotContext, draft: Draft) -> None:
    actor = await actor_of(update, context)
    report = await reports.file_report(context.runtime, actor, draft)
    assert context.user_data is not None
    context.user_data.pop(DRAFT, None)
    # Said only now: the report is committed.
    await reply(update, context, "reports/flow/filed.j2", report=report)


# --- views -----------------------------------------------------------------------------------


async def show_report(update: Update, context: BotContext, report_id: int) -> None:
    actor = await actor_of(update, context)
    view = await reports.view(context.runtime, actor, report_id)
    await reply(
        update,
        context,
        "reports/detail.j2",
        view=view,
        buttons=detail_buttons(update, context, actor, view.report),
    )
    assert update.effective_chat is not None
    for photo in view.report.photos[: reports.MAX_PHOTOS]:
        try:
            await context.bot.send_photo(update.effective_chat.id, photo.file_id)
        except TelegramError:
            continue  # a photo Telegram no longer has; the text above still stands


async def list_reports(update: Update, context: BotContext, *, mine: bool, page: int = 0) -> None:
    actor = await actor_of(update, context)
    found = (
        await reports.my_reports(context.runtime, actor, page)
        if mine
        else await reports.open_reports(context.runtime, actor, page)
    )
    prefix = "rm:" if mine else "rl:"
    row = []
    if found.number > 0:
        row.append(
            button(update, context, "reports/buttons/previous.j2", f"{prefix}{found.number - 1}")
        )
    if found.number + 1 < found.total_pages:
        row.append(
            button(update, context, "reports/buttons/next.j2", f"{prefix}{found.number + 1}")
        )
    await show(
        update, context, "reports/list.j2", page=found, mine=mine, buttons=[row] if row else []
    )


async def open_reports(update: Update, context: BotContext) -> None:
    await list_reports(update, context, mine=False)


async def my_reports(update: Update, context: BotContext) -> None:
    await list_reports(update, context, mine=True)


async def turn_page(update: Update, context: BotContext) -> None:
    query = update.callback_query
    assert query is not None
    prefix, page = (query.data or "x:").split(":", 1)
    if not page.isdigit():
        raise StaleButton()
    await list_reports(update, context, mine=prefix == "rm", page=int(page))


async def nothing_to_cancel(update: Update, context: BotContext) -> None:
    await reply(update, context, "reports/nothing_to_cancel.j2")


def _flow_handler() -> Flow:
    flow = f"^{FLOW}"
    back = {
        state: CallbackQueryHandler(step_back(STEPS, state), pattern=f"{flow}back$")
        for state in STEPS
        if state
    }
    cancelled = cancel(DRAFT, "reports/flow/cancelled.j2")
    cancel_button = CallbackQueryHandler(cancelled, pattern=f"{flow}cancel$")
    return guided(
        entry_points=[
            CommandHandler("report", begin, filters=PRIVATE),
            CommandHandler("start", begin, filters=PRIVATE & filters.Regex(r"^/start report$")),
            MessageHandler(
                PRIVATE & filters.PHOTO & filters.CaptionRegex(r"^/report\b"),
                photo_with_caption,
            ),
        ],
        states={
            CATEGORY: [
                CallbackQueryHandler(chose_category, pattern=f"{flow}cat:"),
                cancel_button,
            ],
            SEVERITY: [
                CallbackQueryHandler(chose_severity, pattern=f"{flow}sev:"),
                back[SEVERITY],
                cancel_button,
            ],
            DESCRIPTION: [
                MessageHandler(filters.TEXT & ~filters.COMMAND, described),
                CallbackQueryHandler(kept_description, pattern=f"{flow}keep$"),
                MessageHandler(~filters.TEXT & ~filters.COMMAND, not_text),
                back[DESCRIPTION],
                cancel_button,
            ],
            PHOTOS: [
                MessageHandler(filters.PHOTO, photo_added),
                MessageHandler(filters.LOCATION, location_added),
                CallbackQueryHandler(photos_done, pattern=f"{flow}done$"),
                MessageHandler(~filters.COMMAND, not_a_photo),
                back[PHOTOS],
                cancel_button,
            ],
            ANONYMOUS: [
                CallbackQueryHandler(chose_anonymity, pattern=f"{flow}anon:"),
                back[ANONYMOUS],
                cancel_button,
            ],
            CONFIRM: [
                CallbackQueryHandler(confirmed, pattern=f"{flow}confirm$"),
                CallbackQueryHandler(edit, pattern=f"{flow}edit$"),
                back[CONFIRM],
                cancel_button,
            ],
        },
        draft=DRAFT,
        cancelled=cancelled,
        timeout_template="reports/flow/timeout.j2",
        name="report",
    )


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    application.add_handler(_flow_handler())
    command(application, "report", begin)  # reached only outside private chats: explains where
    command(application, "reports", open_reports)
    command(application, "myreports", my_reports)
    command(application, "cancel", nothing_to_cancel)  # inside a flow, the flow takes /cancel
    application.add_handler(CallbackQueryHandler(turn_page, pattern=r"^r[lm]:"))
