"""Reporting hazards: the guided /hazard flow, the quick path (a photo captioned "#隐患 …" or
"/hazard …" in a staff or unit group, or in private), and the /hazards ledger views."""

from __future__ import annotations

import re
from typing import Any

from telegram import Update
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)

from bot.errors import NotAllowed, StaleButton
from bot.outbox import Button
from bot.services import hazards, org
from bot.services.hazards import Category, HazardDraft, Severity
from bot.services.models import Purpose, Role
from handlers.commands import command
from handlers.common import actor_of, button, is_private, pressed, recipient_of, reply, show
from handlers.context import BotContext
from handlers.flows import Flow, cancel, guided, step_back
from handlers.hazard_actions import IMAGE, card_buttons, received_image, send_photos, show_hazard

FLOW = "hf:"
DRAFT = "safecampus.hazard_draft"
PHOTOS, CATEGORY, SEVERITY, PLACE, DESCRIPTION, CONFIRM = range(6)
PRIVATE = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
CAPTIONED = filters.CaptionRegex(hazards.CAPTION)
REFERENCE = re.compile(r"[Hh]-?\d{1,9}")
QUICK_GROUPS = (Purpose.STAFF, Purpose.UNIT)
LIST = "hzl:"  # hzl:<which>:<page>
SUMMARY = "hzs:"


def _draft(context: BotContext) -> HazardDraft:
    assert context.user_data is not None
    draft: HazardDraft = context.user_data.setdefault(DRAFT, HazardDraft())
    return draft


def _b(update: Update, context: BotContext, label: str, action: str, **values: Any) -> Button:
    return button(update, context, f"hazards/buttons/{label}.j2", f"{FLOW}{action}", **values)


def _nav(update: Update, context: BotContext, back: bool = True) -> list[Button]:
    row = [_b(update, context, "cancel", "cancel")]
    return [_b(update, context, "back", "back"), *row] if back else row


async def _show(
    update: Update, context: BotContext, template: str, buttons: list[list[Button]]
) -> None:
    await show(update, context, template, buttons=buttons, draft=_draft(context))


# --- the guided flow -------------------------------------------------------------------------


async def ask_photos(update: Update, context: BotContext) -> int:
    buttons = [[_b(update, context, "done", "done")], _nav(update, context, back=False)]
    await _show(update, context, "hazards/flow/ask_photos.j2", buttons)
    return PHOTOS


async def ask_category(update: Update, context: BotContext) -> int:
    choices = [_b(update, context, "category", f"cat:{c.value}", category=c) for c in Category]
    rows = [choices[i : i + 4] for i in range(0, len(choices), 4)]
    await _show(update, context, "hazards/flow/choose_category.j2", [*rows, _nav(update, context)])
    return CATEGORY


async def ask_severity(update: Update, context: BotContext) -> int:
    choices = [
        _b(update, context, "severity", f"sev:{s.value}", severity=s) for s in reversed(Severity)
    ]
    await _show(
        update, context, "hazards/flow/choose_severity.j2", [choices, _nav(update, context)]
    )
    return SEVERITY


async def ask_place(update: Update, context: BotContext) -> int:
    places = await hazards.checkpoint_places(context.runtime)
    rows = [
        [_b(update, context, "checkpoint", f"cp:{p.id}", checkpoint=p) for p in places[i : i + 2]]
        for i in range(0, len(places), 2)
    ]
    await _show(update, context, "hazards/flow/ask_place.j2", [*rows, _nav(update, context)])
    return PLACE


async def ask_description(update: Update, context: BotContext) -> int:
    await _show(update, context, "hazards/flow/ask_description.j2", [_nav(update, context)])
    return DESCRIPTION


async def ask_confirmation(update: Update, context: BotContext) -> int:
    buttons = [
        [
            _b(update, context, "confirm_flow", "confirm"),
            _b(update, context, "edit", "edit"),
        ],
        _nav(update, context),
    ]
    await _show(update, context, "hazards/flow/confirm.j2", buttons)
    return CONFIRM


STEPS = {
    PHOTOS: ask_photos,
    CATEGORY: ask_category,
    SEVERITY: ask_severity,
    PLACE: ask_place,
    DESCRIPTION: ask_description,
    CONFIRM: ask_confirmation,
}


async def begin(update: Update, context: BotContext) -> int:
    """/hazard: with a reference, show it; with text, register it at once; else guide."""
    actor = await actor_of(update, context)
    args = context.args or []
    if len(args) == 1 and REFERENCE.fullmatch(args[0]):
        await show_hazard(update, context, hazards.parse_reference(args[0]))
        return ConversationHandler.END
    if args:
        message = update.effective_message
        assert message is not None
        assert message.text
        await _register(update, context, HazardDraft(description=message.text.split(maxsplit=1)[1]))
        return ConversationHandler.END
    if not hazards.may_report(actor):
        await reply(update, context, "hazards/flow/not_allowed.j2")
        return ConversationHandler.END
    assert context.user_data is not None
    context.user_data[DRAFT] = HazardDraft()
    return await ask_photos(update, context)


async def photo_added(update: Update, context: BotContext) -> int:
    message = update.effective_message
    assert message is not None
    draft = _draft(context)
    if len(draft.photos) >= hazards.MAX_PHOTOS:
        await reply(
            update,
            context,
            "hazards/errors/too_long.j2",
            limit=hazards.MAX_PHOTOS,
            length=len(draft.photos) + 1,
        )
        return PHOTOS
    photo = await received_image(update, context, message)
    draft.photos.append(photo)
    await reply(
        update, context, "hazards/flow/photo_added.j2", count=len(draft.photos), note=photo.note
    )
    return PHOTOS


async def not_a_photo(update: Update, context: BotContext) -> int:
    message = update.effective_message
    template = "hazards/errors/not_an_image.j2" if message and message.document else None
    await reply(update, context, template or "hazards/errors/not_a_photo.j2")
    return PHOTOS


async def photos_done(update: Update, context: BotContext) -> int:
    return await ask_category(update, context)


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
    return await ask_place(update, context)


async def place_typed(update: Update, context: BotContext) -> int:
    message = update.effective_message
    assert message is not None
    assert message.text is not None
    place = message.text.strip()
    if not place or len(place) > hazards.MAX_PLACE:
        await reply(
            update,
            context,
            "hazards/errors/too_long.j2",
            limit=hazards.MAX_PLACE,
            length=len(place),
        )
        return PLACE
    draft = _draft(context)
    draft.place, draft.checkpoint_id = place, None
    return await ask_description(update, context)


async def place_located(update: Update, context: BotContext) -> int:
    message = update.effective_message
    assert message is not None
    assert message.location is not None
    draft = _draft(context)
    draft.latitude, draft.longitude = message.location.latitude, message.location.longitude
    await reply(update, context, "hazards/flow/location_added.j2")
    return await ask_description(update, context)


async def place_checkpoint(update: Update, context: BotContext) -> int:
    _, value = pressed(update, f"{FLOW}cp:")
    places = {p.id: p for p in await hazards.checkpoint_places(context.runtime)}
    if not value.isdigit() or int(value) not in places:
        raise StaleButton()
    draft = _draft(context)
    draft.checkpoint_id, draft.place = int(value), places[int(value)].name
    return await ask_description(update, context)


async def described(update: Update, context: BotContext) -> int:
    message = update.effective_message
    assert message is not None
    assert message.text is not None
    length = len(message.text.strip())
    if not length or length > hazards.MAX_DESCRIPTION:
        template = "hazards/errors/empty.j2" if not length else "hazards/errors/too_long.j2"
        await reply(update, context, template, limit=hazards.MAX_DESCRIPTION, length=length)
        return DESCRIPTION
    _draft(context).description = message.text.strip()
    return await ask_confirmation(update, context)


async def not_text(update: Update, context: BotContext) -> int:
    await reply(update, context, "hazards/errors/not_text.j2")
    return DESCRIPTION


async def confirmed(update: Update, context: BotContext) -> int:
    query, _ = pressed(update, FLOW)
    await query.answer()
    await query.edit_message_reply_markup(None)  # no second submission from the same card
    await _register(update, context, _draft(context))
    return ConversationHandler.END


async def edit(update: Update, context: BotContext) -> int:
    return await ask_category(update, context)


async def _register(update: Update, context: BotContext, draft: HazardDraft) -> None:
    actor = await actor_of(update, context)
    hazard = await hazards.register(context.runtime, actor, draft)
    assert context.user_data is not None
    context.user_data.pop(DRAFT, None)
    # Said only now: the hazard is committed.
    await reply(
        update,
        context,
        "hazards/registered.j2",
        hazard=hazard,
        buttons=card_buttons(update, context, actor, hazard),
    )


# --- the quick path --------------------------------------------------------------------------


async def quick_photo(update: Update, context: BotContext) -> None:
    """A photo (or image file) captioned "#隐患 …" or "/hazard …": registered at once, in
    private or in a staff or unit group; other groups are not the place (ignored)."""
    message = update.effective_message
    chat = update.effective_chat
    assert message is not None
    assert chat is not None
    if not is_private(update):
        group = await org.group_status(context.runtime, recipient_of(chat))
        if group is None or group.purpose not in QUICK_GROUPS:
            return
    if not hazards.may_report(await actor_of(update, context)):
        # Refuse before downloading: a stranger must not be able to fill DATA_DIR.
        raise NotAllowed(needed=Role.GUARD, unit="")
    description = hazards.caption_text(message.caption) or ""
    photo = await received_image(update, context, message)
    await _register(update, context, HazardDraft(description=description, photos=[photo]))


async def not_an_image(update: Update, context: BotContext) -> None:
    """A captioned hazard sent as a file that is not an image."""
    message = update.effective_message
    chat = update.effective_chat
    assert message is not None
    assert chat is not None
    if not is_private(update):
        group = await org.group_status(context.runtime, recipient_of(chat))
        if group is None or group.purpose not in QUICK_GROUPS:
            return
    await reply(update, context, "hazards/errors/not_an_image.j2")


# --- views -----------------------------------------------------------------------------------


async def list_hazards(update: Update, context: BotContext, which: str, page: int = 0) -> None:
    actor = await actor_of(update, context)
    found = await hazards.listing(context.runtime, actor, which, page)
    row = []
    if found.number > 0:
        row.append(
            button(
                update, context, "hazards/buttons/previous.j2", f"{LIST}{which}:{found.number - 1}"
            )
        )
    if found.number + 1 < found.total_pages:
        row.append(
            button(update, context, "hazards/buttons/next.j2", f"{LIST}{which}:{found.number + 1}")
        )
    rows = [row] if row else []
    rows += [
        [
            button(update, context, "hazards/buttons/hazard.j2", f"hz:view:{h.id}", hazard=h)
            for h in found.hazards[i : i + 4]
        ]
        for i in range(0, len(found.hazards), 4)
    ]
    if any(actor.has_role(role) for role in (Role.OFFICER, Role.ADMIN, Role.LEADER)):
        rows.append([button(update, context, "hazards/buttons/summary.j2", SUMMARY)])
    await show(
        update,
        context,
        "hazards/list.j2",
        page=found,
        now=context.runtime.now(),
        buttons=rows,
    )


async def show_summary(update: Update, context: BotContext) -> None:
    actor = await actor_of(update, context)
    summary = await hazards.summary(context.runtime, actor)
    if update.callback_query is not None:
        await update.callback_query.answer()
    await reply(update, context, "hazards/summary.j2", summary=summary)


async def hazards_command(update: Update, context: BotContext) -> None:
    """/hazards [open|overdue|mine|summary|H-0107]"""
    actor = await actor_of(update, context)
    args = context.args or []
    if not args:
        watcher = any(actor.has_role(r) for r in (Role.OFFICER, Role.ADMIN, Role.LEADER))
        await list_hazards(update, context, "open" if watcher else "mine")
    elif len(args) == 1 and args[0].lower() in hazards.LISTS:
        await list_hazards(update, context, args[0].lower())
    elif len(args) == 1 and args[0].lower() == "summary":
        await show_summary(update, context)
    elif len(args) == 1 and REFERENCE.fullmatch(args[0]):
        hazard_id = hazards.parse_reference(args[0])
        await show_hazard(update, context, hazard_id)
        await send_photos(update, context, hazard_id)
    else:
        await reply(update, context, "hazards/usage.j2")


async def turn_page(update: Update, context: BotContext) -> None:
    _, data = pressed(update, LIST)
    which, _, page = data.partition(":")
    if which not in hazards.LISTS or not page.isdigit():
        raise StaleButton()
    await list_hazards(update, context, which, int(page))


def _flow_handler() -> Flow:
    flow = f"^{FLOW}"
    back = {
        state: CallbackQueryHandler(step_back(STEPS, state), pattern=f"{flow}back$")
        for state in STEPS
    }
    cancelled = cancel(DRAFT, "hazards/flow/cancelled.j2")
    cancel_button = CallbackQueryHandler(cancelled, pattern=f"{flow}cancel$")
    return guided(
        entry_points=[CommandHandler("hazard", begin, filters=PRIVATE)],
        states={
            PHOTOS: [
                MessageHandler(IMAGE & ~CAPTIONED, photo_added),
                CallbackQueryHandler(photos_done, pattern=f"{flow}done$"),
                MessageHandler(~filters.COMMAND & ~CAPTIONED, not_a_photo),
                cancel_button,
            ],
            CATEGORY: [
                CallbackQueryHandler(chose_category, pattern=f"{flow}cat:"),
                back[CATEGORY],
                cancel_button,
            ],
            SEVERITY: [
                CallbackQueryHandler(chose_severity, pattern=f"{flow}sev:"),
                back[SEVERITY],
                cancel_button,
            ],
            PLACE: [
                MessageHandler(filters.TEXT & ~filters.COMMAND, place_typed),
                MessageHandler(filters.LOCATION, place_located),
                CallbackQueryHandler(place_checkpoint, pattern=f"{flow}cp:"),
                back[PLACE],
                cancel_button,
            ],
            DESCRIPTION: [
                MessageHandler(filters.TEXT & ~filters.COMMAND, described),
                MessageHandler(~filters.TEXT & ~filters.COMMAND & ~CAPTIONED, not_text),
                back[DESCRIPTION],
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
        timeout_template="hazards/flow/timeout.j2",
        name="hazard",
    )


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    application.add_handler(_flow_handler())
    message = filters.UpdateType.MESSAGE & (filters.ChatType.PRIVATE | filters.ChatType.GROUPS)
    application.add_handler(MessageHandler(message & IMAGE & CAPTIONED, quick_photo))
    application.add_handler(
        MessageHandler(message & filters.Document.ALL & ~IMAGE & CAPTIONED, not_an_image)
    )
    command(application, "hazard", begin)  # reached only outside private chats: explains where
    command(application, "hazards", hazards_command)
    application.add_handler(CallbackQueryHandler(turn_page, pattern=f"^{LIST}"))
    application.add_handler(CallbackQueryHandler(show_summary, pattern=f"^{SUMMARY}$"))
