"""Handling a hazard: the buttons under a hazard card (``hz:<action>:<id>[:<value>]``), the
texts officers type after pressing one, the unit head's "after" photo, and the hazard views."""

from __future__ import annotations

import time
from typing import Any

from telegram import Message, Update
from telegram.error import BadRequest, TelegramError
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    MessageHandler,
    filters,
)

from bot.errors import DomainError, NotAllowed, StaleButton
from bot.outbox import Button
from bot.services import hazards, reports
from bot.services.hazards import Category, Hazard, Severity
from bot.services.models import Actor, Role
from bot.services.reports import PhotoIn
from handlers.common import actor_of, answer_step, ask_in_private, button, pressed, reply, text
from handlers.context import BotContext
from handlers.prompts import PENDING, expect, on_answer

ACTION = "hz:"
FIX = "safecampus.hazard_fix"  # (hazard id, monotonic time): the next photo is the fix
FIX_SECONDS = 30 * 60
# Before the patrols' pending photo (-2) and everything else: a photo after "Submit fix" is
# the fix, whatever else might want photos.
FIX_GROUP = -4
# The Bot API refuses to hand out files over 20 MB; such photos are recorded by file_id only.
DOWNLOAD_LIMIT = 20 * 1024 * 1024
PRIVATE_MESSAGE = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
IMAGE = filters.PHOTO | filters.Document.IMAGE
TYPED = {"interim", "reject", "extend", "dismiss"}
PROMPTING = TYPED | {"assign", "unit"}  # the buttons that ask the person to type


# --- shared pieces ---------------------------------------------------------------------------


def _hz(update: Update, context: BotContext, label: str, action: str, **values: Any) -> Button:
    return button(update, context, f"hazards/buttons/{label}.j2", f"{ACTION}{action}", **values)


def card_buttons(
    update: Update, context: BotContext, actor: Actor, hazard: Hazard
) -> list[list[Button]]:
    """What ``actor`` may do with ``hazard`` now, as buttons (under a detail or a reply)."""
    made = []
    if (
        hazard.state.open
        and hazard.missing
        and (hazard.reporter.id == actor.person.id or hazards.is_handler(actor, hazard))
    ):
        made.append(_hz(update, context, "classify", f"classify:{hazard.id}"))
    if hazards.is_handler(actor, hazard):
        made += [
            _hz(update, context, name, f"{name}:{hazard.id}")
            for name in hazards.handler_actions(hazard)
        ]
    if hazards.is_unit_head(actor, hazard) and hazard.state is hazards.State.RECTIFYING:
        made.append(_hz(update, context, "fix", f"fix:{hazard.id}"))
    if hazard.photos:
        made.append(_hz(update, context, "photos", f"photos:{hazard.id}"))
    return [made[i : i + 2] for i in range(0, len(made), 2)]


async def received_image(update: Update, context: BotContext, message: Message) -> PhotoIn:
    """The photo (or image file) in ``message``, kept under DATA_DIR by content hash; by
    Telegram's file id only if it is too big to download."""
    if message.photo:
        item: Any = message.photo[-1]
        suffix = ".jpg"
    else:
        item = message.document
        assert item is not None
        kind = (item.mime_type or "image/jpeg").split("/")[-1].lower()
        suffix = "." + ("jpg" if kind in ("jpeg", "pjpeg") else kind[:8])
    size = item.file_size
    too_big = PhotoIn(
        file_id=item.file_id,
        file_unique_id=item.file_unique_id,
        size=size,
        note=text(update, context, "hazards/flow/too_big_photo.j2"),
    )
    if size is not None and size > DOWNLOAD_LIMIT:
        return too_big
    try:
        file = await context.bot.get_file(item.file_id)
        data = bytes(await file.download_as_bytearray())
    except BadRequest:
        return too_big
    path = reports.store_photo(context.runtime.settings.data_dir, data, suffix)
    return PhotoIn(
        file_id=item.file_id, file_unique_id=item.file_unique_id, size=len(data), path=path
    )


async def show_hazard(update: Update, context: BotContext, hazard_id: int) -> None:
    actor = await actor_of(update, context)
    view = await hazards.view(context.runtime, actor, hazard_id)
    await reply(
        update,
        context,
        "hazards/detail.j2",
        view=view,
        now=context.runtime.now(),
        buttons=card_buttons(update, context, actor, view.hazard),
    )


async def send_photos(update: Update, context: BotContext, hazard_id: int) -> None:
    """Every photo of the hazard, before and after, each captioned with what it is."""
    actor = await actor_of(update, context)
    view = await hazards.view(context.runtime, actor, hazard_id)
    chat = update.effective_chat
    assert chat is not None
    for photo in view.hazard.photos:
        caption = text(update, context, "hazards/photo_caption.j2", hazard=view.hazard, photo=photo)
        try:
            await context.bot.send_photo(chat.id, photo.file_id, caption=caption)
        except TelegramError:
            continue  # a photo Telegram no longer has; the ledger still lists it


# --- buttons ---------------------------------------------------------------------------------


def _parse(data: str) -> tuple[str, int, str | None]:
    action, _, rest = data.partition(":")
    number, _, value = rest.partition(":")
    if not number.isdigit():
        raise StaleButton()
    return action, int(number), value or None


async def pressed_action(update: Update, context: BotContext) -> None:
    query, data = pressed(update, ACTION)
    action, hazard_id, value = _parse(data)
    pending_fix = (context.user_data or {}).get(FIX)
    if pending_fix is not None and (pending_fix[0] != hazard_id or action in PROMPTING):
        # Busy with another hazard, or about to type something: a later photo must not
        # become the pending fix.
        assert context.user_data is not None
        context.user_data.pop(FIX, None)
    actor = await actor_of(update, context)
    rt = context.runtime
    if action == "classify" and value is None:
        hazard = await hazards.get(rt, hazard_id)
        if hazard.reporter.id != actor.person.id and not hazards.is_handler(actor, hazard):
            raise NotAllowed(needed=Role.OFFICER, unit=hazard.unit.path)
        await query.answer()
        await _ask_classification(update, context, hazard)
    elif action == "cat" and value in Category.__members__.values():
        outcome = await hazards.complete(rt, actor, hazard_id, category=Category(value))
        await query.answer()
        await _ask_classification(update, context, outcome.hazard)
    elif action == "sev" and value in Severity.__members__.values():
        outcome = await hazards.complete(rt, actor, hazard_id, severity=Severity(value))
        await query.answer()
        await _ask_classification(update, context, outcome.hazard)
    elif action == "confirm" and value is None:
        outcome = await hazards.confirm(rt, actor, hazard_id)
        await _answer(update, context, outcome, "hazards/done/confirmed.j2")
    elif action == "verify" and value is None:
        outcome = await hazards.verify(rt, actor, hazard_id)
        await _answer(update, context, outcome, "hazards/done/verified.j2")
    elif action == "assign" and value is None:
        hazard, units = await hazards.departments(rt, actor, hazard_id)
        choices = [
            [_hz(update, context, "unit", f"unit:{hazard.id}:{unit.id}", unit=unit)]
            for unit in units[:20]
        ]
        await _prompt(update, context, "hazards/prompts/assign.j2", choices, hazard=hazard)
        expect(context, "hz_assign", hazard.id)
    elif action == "unit" and value is not None and value.isdigit():
        hazard = await hazards.for_handling(rt, actor, hazard_id)
        if hazard.severity is Severity.MAJOR and not hazard.interim_measures:
            await _prompt(update, context, "hazards/prompts/interim_for_assign.j2", hazard=hazard)
            expect(context, "hz_assign_interim", hazard.id, int(value))
            return
        outcome = await hazards.assign(rt, actor, hazard_id, int(value))
        await query.answer()
        await reply(update, context, "hazards/done/assigned.j2", hazard=outcome.hazard)
    elif action in TYPED and value is None:
        hazard = await hazards.for_handling(rt, actor, hazard_id)
        await _prompt(update, context, f"hazards/prompts/{action}.j2", hazard=hazard)
        expect(context, f"hz_{action}", hazard.id)
    elif action == "fix" and value is None:
        hazard = await hazards.for_fix(rt, actor, hazard_id)
        await _prompt(update, context, "hazards/prompts/fix.j2", hazard=hazard)
        assert context.user_data is not None
        context.user_data[FIX] = (hazard.id, time.monotonic())
    elif action == "view" and value is None:
        await query.answer()
        await show_hazard(update, context, hazard_id)
    elif action == "photos" and value is None:
        await query.answer()
        await send_photos(update, context, hazard_id)
    else:
        raise StaleButton()


async def _ask_classification(update: Update, context: BotContext, hazard: Hazard) -> None:
    """Offer the next missing field as buttons (category, then severity), or say it is done."""
    if hazard.category is None:
        row = [
            _hz(update, context, "category", f"cat:{hazard.id}:{c.value}", category=c)
            for c in Category
        ]
        rows = [row[i : i + 4] for i in range(0, len(row), 4)]
        await reply(update, context, "hazards/choose_category.j2", hazard=hazard, buttons=rows)
    elif hazard.severity is None:
        row = [
            _hz(update, context, "severity", f"sev:{hazard.id}:{s.value}", severity=s)
            for s in reversed(Severity)
        ]
        await reply(update, context, "hazards/choose_severity.j2", hazard=hazard, buttons=[row])
    else:
        await reply(update, context, "hazards/state.j2", hazard=hazard)


async def _answer(
    update: Update, context: BotContext, outcome: hazards.Handling, done: str
) -> None:
    await answer_step(
        update,
        context,
        changed=outcome.changed,
        done=done,
        current="hazards/state.j2",
        hazard=outcome.hazard,
    )


async def _prompt(
    update: Update,
    context: BotContext,
    template: str,
    buttons: list[list[Button]] | None = None,
    **values: Any,
) -> None:
    await ask_in_private(
        update,
        context,
        template,
        cannot="hazards/errors/start_private.j2",
        buttons=buttons,
        **values,
    )


# --- typed answers ---------------------------------------------------------------------------


@on_answer("hz_assign")
async def _assign(update: Update, context: BotContext, typed: str, args: tuple[Any, ...]) -> None:
    """ "总务处 [3d|2026-09-10] [interim measures…]"."""
    rt = context.runtime
    words = typed.split(maxsplit=2)
    unit, rest = words[0], words[1:]
    deadline = None
    if rest:
        try:
            deadline = hazards.parse_deadline(rest[0], rt.now(), rt.settings.zone)
            rest = rest[1:]
        except hazards.BadDeadline:
            rest = [" ".join(rest)]
    outcome = await hazards.assign(
        rt,
        await actor_of(update, context),
        args[0],
        unit,
        deadline=deadline,
        interim=rest[0] if rest else None,
    )
    await reply(update, context, "hazards/done/assigned.j2", hazard=outcome.hazard)


@on_answer("hz_assign_interim")
async def _assign_interim(
    update: Update, context: BotContext, typed: str, args: tuple[Any, ...]
) -> None:
    outcome = await hazards.assign(
        context.runtime, await actor_of(update, context), args[0], int(args[1]), interim=typed
    )
    await reply(update, context, "hazards/done/assigned.j2", hazard=outcome.hazard)


@on_answer("hz_interim")
async def _interim(update: Update, context: BotContext, typed: str, args: tuple[Any, ...]) -> None:
    outcome = await hazards.record_interim(
        context.runtime, await actor_of(update, context), args[0], typed
    )
    await reply(update, context, "hazards/done/interim.j2", hazard=outcome.hazard)


@on_answer("hz_reject")
async def _reject(update: Update, context: BotContext, typed: str, args: tuple[Any, ...]) -> None:
    outcome = await hazards.reject(context.runtime, await actor_of(update, context), args[0], typed)
    template = "hazards/done/rejected.j2" if outcome.changed else "hazards/state.j2"
    await reply(update, context, template, hazard=outcome.hazard)


@on_answer("hz_dismiss")
async def _dismiss(update: Update, context: BotContext, typed: str, args: tuple[Any, ...]) -> None:
    outcome = await hazards.dismiss(
        context.runtime, await actor_of(update, context), args[0], typed
    )
    await reply(update, context, "hazards/done/dismissed.j2", hazard=outcome.hazard)


@on_answer("hz_extend")
async def _extend(update: Update, context: BotContext, typed: str, args: tuple[Any, ...]) -> None:
    rt = context.runtime
    when, _, reason = typed.strip().partition(" ")
    deadline = hazards.parse_deadline(when, rt.now(), rt.settings.zone)
    hazard = await hazards.get(rt, args[0])
    if hazard.deadline is not None and when.strip().lower().rstrip("d天").isdigit():
        # "5" extends by five days from the current deadline, not from now.
        deadline = hazard.deadline + (deadline - rt.now())
    outcome = await hazards.extend(rt, await actor_of(update, context), args[0], deadline, reason)
    await reply(update, context, "hazards/done/extended.j2", hazard=outcome.hazard)


# --- the fix photo ---------------------------------------------------------------------------


async def fix_photo(update: Update, context: BotContext) -> None:
    """After "Submit fix": the next photo in private is the "after" photo, its caption the
    note. A command, a photo captioned with one, another hazard's button or any typed prompt
    started since drops the pending fix (/cancel says so)."""
    assert context.user_data is not None
    if FIX not in context.user_data:
        return
    message = update.effective_message
    assert message is not None
    if message.text is not None:
        if message.text.startswith("/"):
            context.user_data.pop(FIX, None)
            if message.text.split()[0].split("@")[0] == "/cancel":
                await reply(update, context, "reports/prompts/cancelled.j2")
                raise ApplicationHandlerStop
        return
    hazard_id, since = context.user_data[FIX]
    prompt = context.user_data.get(PENDING)
    if (message.caption or "").lstrip().startswith("/") or (
        prompt is not None and prompt[2] >= since
    ):
        # A command in the caption (/report, /hazard…) or a typed prompt started after
        # "Submit fix": the person moved on, so the photo is theirs and the fix is dropped.
        context.user_data.pop(FIX, None)
        return
    if hazards.caption_text(message.caption) is not None:
        return  # a new hazard ("#隐患"), not this fix
    context.user_data.pop(FIX)
    if time.monotonic() - since > FIX_SECONDS:
        return
    try:
        photo = await received_image(update, context, message)
        actor = await actor_of(update, context)
        outcome = await hazards.submit_fix(
            context.runtime, actor, hazard_id, message.caption or "", [photo]
        )
    except DomainError as error:
        # Explained here, so that no later handler takes the photo for something else.
        await reply(update, context, error.template, **error.context)
        raise ApplicationHandlerStop from None
    await reply(update, context, "hazards/done/fixed.j2", hazard=outcome.hazard)
    raise ApplicationHandlerStop


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    application.add_handler(
        MessageHandler(PRIVATE_MESSAGE & (IMAGE | filters.COMMAND), fix_photo), group=FIX_GROUP
    )
    application.add_handler(CallbackQueryHandler(pressed_action, pattern=f"^{ACTION}"))
