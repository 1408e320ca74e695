"""Patrols in Telegram: checkpoints and their QR codes, check-ins, routes, rounds and views.

A check-in takes two messages: the scan (``/start cp-<token>``, see handlers/start.py) and the
location the bot then asks for. What is pending between them (a scan, an admin placing a
checkpoint, a photo for a check-in) lives in memory, a scan for STALE_AFTER and the others for
PENDING_SECONDS: after a restart the guard simply scans again. Any new command drops it, so a
forgotten prompt never takes a message meant for another flow.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from typing import Any

from telegram import (
    KeyboardButton,
    Location,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot.errors import BadArguments, StaleButton
from bot.outbox import Button
from bot.qr import qr_png
from bot.services import patrols, reports
from bot.services.models import Role
from bot.services.patrols import Checkin, Checkpoint
from handlers.commands import command
from handlers.common import actor_of, button, is_private, pressed, reply, show, text
from handlers.context import BotContext
from handlers.prompts import EXPIRES_AFTER, PENDING, expect, on_answer
from handlers.reports import DRAFT

SCAN = "safecampus.patrol_scan"  # (token, Telegram time of the scan, monotonic time)
PLACING = "safecampus.patrol_placing"  # (checkpoint id, monotonic time)
PHOTO_FOR = "safecampus.patrol_photo"  # (check-in id, monotonic time)
PENDING_SECONDS = 15 * 60
# A location later than this would not verify the visit anyway (patrols.STALE_AFTER); waiting
# longer only lets a scan the guard gave up on take a location meant for something else.
SCAN_SECONDS = patrols.STALE_AFTER / timedelta(seconds=1)
# Before everything else: a new command drops what was pending before it reaches any handler.
CLEAR_GROUP = -3
# Before the prompts (-1) and every capability (0): a pending scan or placement takes the next
# location, the "no location" answer or a photo before the fallback could.
PENDING_GROUP = -2
CARD = "cpc:"  # cpc:<checkpoint id>: a checkpoint's card with its admin buttons
ACTION = "cpa:"  # cpa:<action>:<checkpoint id>
AFTER = "cin:"  # cin:<note|photo|problem>:<check-in id>
DETAILS = "pvd:"  # pvd:<checkpoint id>:<YYYY-MM-DD>
LISTED = 40  # buttons in one /checkpoints or /patrols answer
PRIVATE_MESSAGE = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE


def _pending(context: BotContext, key: str, limit: float = PENDING_SECONDS) -> Any:
    """What is pending under ``key`` (taken off), or None if nothing or it is older than
    ``limit`` seconds."""
    assert context.user_data is not None
    held = context.user_data.pop(key, None)
    if held is None or time.monotonic() - held[-1] > limit:
        return None
    return held[:-1]


def _elsewhere(context: BotContext) -> bool:
    """Whether the person is filling in a /report draft or answering a typed prompt: their
    next location, text or photo belongs to that, not to a patrol."""
    assert context.user_data is not None
    prompt = context.user_data.get(PENDING)
    if prompt is not None and time.monotonic() - prompt[-1] <= EXPIRES_AFTER:
        return True
    return DRAFT in context.user_data


async def new_command(_update: Update, context: BotContext) -> None:
    """A new command in private: whatever patrol answer was awaited is abandoned (the command
    itself runs as usual; ``/start cp-…`` sets a fresh scan afterwards)."""
    assert context.user_data is not None
    for key in (SCAN, PLACING, PHOTO_FOR):
        context.user_data.pop(key, None)


def _hold(context: BotContext, key: str, *values: Any) -> None:
    assert context.user_data is not None
    context.user_data[key] = (*values, time.monotonic())


def _int(value: str) -> int:
    if not value.isdigit():
        raise StaleButton()
    return int(value)


async def _ask_location(
    update: Update, context: BotContext, template: str, *, decline: bool, **values: Any
) -> None:
    """Ask for the location with Telegram's "share location" button (and "no location")."""
    rows = [
        [KeyboardButton(text(update, context, "patrols/buttons/share.j2"), request_location=True)]
    ]
    if decline:
        rows.append([KeyboardButton(text(update, context, "patrols/buttons/no_location.j2"))])
    chat = update.effective_chat
    assert chat is not None
    await context.bot.send_message(
        chat.id,
        text(update, context, template, **values),
        parse_mode=ParseMode.HTML,
        reply_markup=ReplyKeyboardMarkup(rows, one_time_keyboard=True, resize_keyboard=True),
    )


async def _done(update: Update, context: BotContext, template: str, **values: Any) -> None:
    """A confirmation that also takes the location keyboard away."""
    chat = update.effective_chat
    assert chat is not None
    await context.bot.send_message(
        chat.id,
        text(update, context, template, **values),
        parse_mode=ParseMode.HTML,
        reply_markup=ReplyKeyboardRemove(),
    )


# --- check-ins -------------------------------------------------------------------------------


async def scan(update: Update, context: BotContext, token: str) -> None:
    """``/start cp-<token>`` in private: a guard scanned a checkpoint; ask where they are."""
    message = update.effective_message
    assert message is not None
    actor = await actor_of(update, context)
    checkpoint = await patrols.scan(context.runtime, actor, token)
    _hold(context, SCAN, token, message.date)
    await _ask_location(
        update, context, "patrols/ask_location.j2", decline=True, checkpoint=checkpoint
    )


async def scan_in_group(update: Update, context: BotContext) -> None:
    """A checkpoint link opened in a group: nothing is recorded; say where it works."""
    await reply(update, context, "patrols/errors/scan_in_group.j2", bot=context.bot.username)


async def _receipt(update: Update, context: BotContext, checkin: Checkin) -> None:
    """Said only after the check-in is committed; offers a note, a photo or a problem report."""
    after = [
        [
            button(update, context, "patrols/buttons/note.j2", f"{AFTER}note:{checkin.id}"),
            button(update, context, "patrols/buttons/photo.j2", f"{AFTER}photo:{checkin.id}"),
        ],
        [button(update, context, "patrols/buttons/problem.j2", f"{AFTER}problem:{checkin.id}")],
    ]
    await reply(update, context, "patrols/checked_in.j2", checkin=checkin, buttons=after)


def _forwarded(message: Message) -> bool:
    return message.forward_origin is not None


def _live(location: Location) -> bool:
    """Whether it is a live location (read from the wire form: PTB's ``live_period`` property
    warns about its coming change of type, and only its presence matters here)."""
    return "live_period" in location.to_dict()


async def pending_location(update: Update, context: BotContext) -> None:
    """A location in private answering a placement or a scan; anything else passes on."""
    message = update.effective_message
    assert message is not None
    assert message.location is not None
    if _elsewhere(context):
        return
    location = message.location
    placing = _pending(context, PLACING)
    if placing is not None:
        actor = await actor_of(update, context)
        checkpoint = await patrols.place_checkpoint(
            context.runtime, actor, placing[0], location.latitude, location.longitude
        )
        await _done(update, context, "patrols/placed.j2", checkpoint=checkpoint)
        raise ApplicationHandlerStop
    scanned = _pending(context, SCAN, SCAN_SECONDS)
    if scanned is None:
        return
    actor = await actor_of(update, context)
    checkin = await patrols.check_in(
        context.runtime,
        actor,
        scanned[0],
        latitude=location.latitude,
        longitude=location.longitude,
        live=_live(location),
        sent_at=message.date,
        scanned_at=scanned[1],
        forwarded=_forwarded(message),
    )
    await _receipt(update, context, checkin)
    raise ApplicationHandlerStop


async def declined(update: Update, context: BotContext) -> None:
    """The "no location" button after a scan: a no-location check-in; other text passes on."""
    message = update.effective_message
    assert message is not None
    assert context.user_data is not None
    if (
        SCAN not in context.user_data
        or _elsewhere(context)
        or message.text != text(update, context, "patrols/buttons/no_location.j2")
    ):
        return
    scanned = _pending(context, SCAN, SCAN_SECONDS)
    if scanned is None:
        return
    actor = await actor_of(update, context)
    checkin = await patrols.check_in(
        context.runtime,
        actor,
        scanned[0],
        latitude=None,
        longitude=None,
        live=False,
        sent_at=message.date,
        scanned_at=scanned[1],
    )
    await _receipt(update, context, checkin)
    raise ApplicationHandlerStop


async def unscanned_location(update: Update, context: BotContext) -> None:
    """A location without a scan: in private, a check-in at the nearest checkpoint; in a group,
    a refusal to a guard (check-ins are personal evidence, made in private). Anyone else's
    location in a group is none of the bot's business."""
    message = update.effective_message
    assert message is not None
    assert message.location is not None
    if not is_private(update):
        if not (await actor_of(update, context)).has_role(Role.GUARD):
            return
        await reply(
            update, context, "patrols/errors/location_in_group.j2", bot=context.bot.username
        )
        return
    actor = await actor_of(update, context)
    checkin = await patrols.check_in_nearby(
        context.runtime,
        actor,
        latitude=message.location.latitude,
        longitude=message.location.longitude,
        live=_live(message.location),
        sent_at=message.date,
        forwarded=_forwarded(message),
    )
    await _receipt(update, context, checkin)


async def after_pressed(update: Update, context: BotContext) -> None:
    """The buttons under a check-in receipt: add a note, a photo, or report a problem."""
    query, data = pressed(update, AFTER)
    what, _, number = data.partition(":")
    if what not in ("note", "photo", "problem"):
        raise StaleButton()
    actor = await actor_of(update, context)
    checkin = await patrols.own_checkin(context.runtime, actor, _int(number))
    await query.answer()
    if what == "photo":
        _hold(context, PHOTO_FOR, checkin.id)
    else:
        expect(context, f"patrol_{what}", checkin.id)
    await reply(update, context, f"patrols/ask_{what}.j2", checkin=checkin)


@on_answer("patrol_note")
async def note_answered(
    update: Update, context: BotContext, answer: str, args: tuple[Any, ...]
) -> None:
    actor = await actor_of(update, context)
    checkin = await patrols.add_note(context.runtime, actor, args[0], answer)
    await reply(update, context, "patrols/note_added.j2", checkin=checkin)


@on_answer("patrol_problem")
async def problem_answered(
    update: Update, context: BotContext, answer: str, args: tuple[Any, ...]
) -> None:
    """File the problem as a report naming the checkpoint, and link it from the check-in."""
    actor = await actor_of(update, context)
    checkin = await patrols.own_checkin(context.runtime, actor, args[0])
    # Reports are read by the school's officers: written in the school's language.
    description = context.runtime.renderer.render(
        context.runtime.settings.locale,
        "patrols/problem_description.j2",
        checkin=checkin,
        text=answer.strip(),
    )
    report = await reports.file_report(
        context.runtime,
        actor,
        reports.Draft(
            description=description, latitude=checkin.latitude, longitude=checkin.longitude
        ),
    )
    await patrols.add_note(context.runtime, actor, checkin.id, reports.reference(report.id))
    await reply(update, context, "reports/flow/filed.j2", report=report)


async def pending_photo(update: Update, context: BotContext) -> None:
    """A photo in private after "add a photo" on a check-in; other photos pass on."""
    assert context.user_data is not None
    if PHOTO_FOR not in context.user_data or _elsewhere(context):
        return
    held = _pending(context, PHOTO_FOR)
    if held is None:
        return
    message = update.effective_message
    assert message is not None
    largest = message.photo[-1]
    try:
        file = await context.bot.get_file(largest.file_id)
        data = bytes(await file.download_as_bytearray())
    except BadRequest:  # Telegram hands out files up to 20 MB only
        await reply(update, context, "patrols/errors/photo_too_big.j2")
        raise ApplicationHandlerStop from None
    path = reports.store_photo(context.runtime.settings.data_dir, data)
    actor = await actor_of(update, context)
    checkin = await patrols.add_photo(context.runtime, actor, held[0], path)
    await reply(update, context, "patrols/photo_added.j2", checkin=checkin)
    raise ApplicationHandlerStop


# --- checkpoints (admins) --------------------------------------------------------------------


async def checkpoint_command(update: Update, context: BotContext) -> None:
    """``/checkpoint add <name> [unit path]``, then the admin shares the place's location."""
    args = context.args or []
    if len(args) < 2 or args[0] != "add":
        raise BadArguments(usage="patrols/usage/checkpoint.j2")
    actor = await actor_of(update, context)
    checkpoint = await patrols.add_checkpoint(
        context.runtime, actor, args[1], " ".join(args[2:]) or None
    )
    _hold(context, PLACING, checkpoint.id)
    await _ask_location(
        update, context, "patrols/ask_placement.j2", decline=False, checkpoint=checkpoint
    )


async def list_checkpoints(update: Update, context: BotContext) -> None:
    actor = await actor_of(update, context)
    found = await patrols.list_checkpoints(context.runtime, actor)
    buttons = [
        [button(update, context, "patrols/buttons/checkpoint.j2", f"{CARD}{cp.id}", checkpoint=cp)]
        for cp in found[:LISTED]
    ]
    await reply(update, context, "patrols/checkpoint_list.j2", checkpoints=found, buttons=buttons)


def _card_buttons(update: Update, context: BotContext, cp: Checkpoint) -> list[list[Button]]:
    def action(name: str) -> Button:
        label = f"patrols/buttons/{name}.j2"
        return button(update, context, label, f"{ACTION}{name}:{cp.id}", checkpoint=cp)

    return [
        [action("qr"), action("rename")],
        [action("move"), action("radius")],
        [action("toggle"), action("reissue")],
    ]


async def _show_card(update: Update, context: BotContext, cp: Checkpoint) -> None:
    await show(
        update,
        context,
        "patrols/checkpoint_card.j2",
        checkpoint=cp,
        buttons=_card_buttons(update, context, cp),
    )


async def card_pressed(update: Update, context: BotContext) -> None:
    _, number = pressed(update, CARD)
    actor = await actor_of(update, context)
    await _show_card(
        update, context, await patrols.checkpoint_for_admin(context.runtime, actor, _int(number))
    )


async def _send_qr(update: Update, context: BotContext, cp: Checkpoint) -> None:
    """The QR code as a PNG; its caption names the checkpoint (segno draws no text)."""
    link = patrols.scan_link(context.bot.username, cp)
    chat = update.effective_chat
    assert chat is not None
    await context.bot.send_photo(
        chat.id,
        qr_png(link),
        caption=text(update, context, "patrols/qr_caption.j2", checkpoint=cp, link=link),
        parse_mode=ParseMode.HTML,
    )


async def action_pressed(update: Update, context: BotContext) -> None:
    """A checkpoint card's buttons; the service checks the presser administers it."""
    query, data = pressed(update, ACTION)
    what, _, number = data.partition(":")
    actor = await actor_of(update, context)
    rt = context.runtime
    cp = await patrols.checkpoint_for_admin(rt, actor, _int(number))
    if what == "qr":
        await query.answer()
        await _send_qr(update, context, cp)
    elif what in ("rename", "radius"):
        await query.answer()
        expect(context, f"checkpoint_{what}", cp.id)
        await reply(update, context, f"patrols/ask_{what}.j2", checkpoint=cp)
    elif what == "move":
        await query.answer()
        _hold(context, PLACING, cp.id)
        await _ask_location(
            update, context, "patrols/ask_placement.j2", decline=False, checkpoint=cp
        )
    elif what == "toggle":
        await _show_card(update, context, await patrols.set_active(rt, actor, cp.id, not cp.active))
    elif what == "reissue":
        cp = await patrols.reissue_token(rt, actor, cp.id)
        await _show_card(update, context, cp)
        await reply(update, context, "patrols/reissued.j2", checkpoint=cp)
        await _send_qr(update, context, cp)
    else:
        raise StaleButton()


@on_answer("checkpoint_rename")
async def rename_answered(
    update: Update, context: BotContext, answer: str, args: tuple[Any, ...]
) -> None:
    actor = await actor_of(update, context)
    cp = await patrols.rename_checkpoint(context.runtime, actor, args[0], answer)
    await _show_card(update, context, cp)


@on_answer("checkpoint_radius")
async def radius_answered(
    update: Update, context: BotContext, answer: str, args: tuple[Any, ...]
) -> None:
    actor = await actor_of(update, context)
    cp = await patrols.set_radius(context.runtime, actor, args[0], answer)
    await _show_card(update, context, cp)


# --- routes and rounds -----------------------------------------------------------------------


async def route_command(update: Update, context: BotContext) -> None:
    """``/route add …`` or ``/route rename|window|points|disable|enable <name> …``."""
    args = context.args or []
    if not args:
        raise BadArguments(usage="patrols/usage/route.j2")
    actor = await actor_of(update, context)
    if args[0] == "add":
        route = await patrols.add_route(context.runtime, actor, args[1:])
    else:
        route = await patrols.edit_route(context.runtime, actor, args)
    await reply(update, context, "patrols/route_saved.j2", route=route)


async def list_routes(update: Update, context: BotContext) -> None:
    actor = await actor_of(update, context)
    found = await patrols.list_routes(context.runtime, actor)
    await reply(update, context, "patrols/route_list.j2", routes=found)


async def round_command(update: Update, context: BotContext) -> None:
    """``/round``: the open rounds; ``/round start <route>``: open one explicitly."""
    args = context.args or []
    actor = await actor_of(update, context)
    if not args:
        views = await patrols.open_rounds(context.runtime, actor)
        await reply(update, context, "patrols/rounds.j2", views=views)
        return
    if args[0] != "start" or len(args) < 2:
        raise BadArguments(usage="patrols/usage/round.j2")
    view = await patrols.start_round(context.runtime, actor, " ".join(args[1:]))
    await reply(update, context, "patrols/round_started.j2", view=view)


# --- views -----------------------------------------------------------------------------------


async def patrols_command(update: Update, context: BotContext) -> None:
    """``/patrols [today|yesterday|YYYY-MM-DD]``: coverage per checkpoint and per route."""
    args = context.args or []
    if len(args) > 1:
        raise BadArguments(usage="patrols/usage/patrols.j2")
    rt = context.runtime
    actor = await actor_of(update, context)
    day = patrols.parse_day(args[0] if args else None, rt.now(), rt.settings.zone)
    found = await patrols.coverage(rt, actor, day)
    visited = [c for c in found.checkpoints if c.verified or c.far or c.no_location]
    buttons = [
        [
            button(
                update,
                context,
                "patrols/buttons/details.j2",
                f"{DETAILS}{c.checkpoint.id}:{day.isoformat()}",
                checkpoint=c.checkpoint,
            )
        ]
        for c in visited[:LISTED]
    ]
    await reply(update, context, "patrols/coverage.j2", coverage=found, buttons=buttons)


async def details_pressed(update: Update, context: BotContext) -> None:
    query, data = pressed(update, DETAILS)
    number, _, shown = data.partition(":")
    try:
        day = date.fromisoformat(shown)
    except ValueError:
        raise StaleButton() from None
    actor = await actor_of(update, context)
    found = await patrols.checkins_at(context.runtime, actor, _int(number), day)
    await query.answer()
    await reply(update, context, "patrols/checkin_details.j2", checkins=found, day=day)


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Register the pending-answer handlers early, the rest with the other capabilities."""
    application.add_handler(
        MessageHandler(
            PRIVATE_MESSAGE & (filters.Regex(r"^/") | filters.CaptionRegex(r"^/")), new_command
        ),
        group=CLEAR_GROUP,
    )
    application.add_handler(
        MessageHandler(PRIVATE_MESSAGE & filters.LOCATION, pending_location), group=PENDING_GROUP
    )
    application.add_handler(
        MessageHandler(PRIVATE_MESSAGE & filters.TEXT & ~filters.COMMAND, declined),
        group=PENDING_GROUP,
    )
    application.add_handler(
        MessageHandler(PRIVATE_MESSAGE & filters.PHOTO, pending_photo), group=PENDING_GROUP
    )
    application.add_handler(
        CommandHandler(
            "start",
            scan_in_group,
            filters=filters.ChatType.GROUPS
            & filters.Regex(rf"^/start(@\w+)?\s+{patrols.SCAN_PREFIX}"),
        )
    )
    application.add_handler(
        MessageHandler(filters.UpdateType.MESSAGE & filters.LOCATION, unscanned_location)
    )
    command(application, "checkpoint", checkpoint_command)
    command(application, "checkpoints", list_checkpoints)
    command(application, "route", route_command)
    command(application, "routes", list_routes)
    command(application, "round", round_command)
    command(application, "patrols", patrols_command)
    application.add_handler(CallbackQueryHandler(card_pressed, pattern=f"^{CARD}"))
    application.add_handler(CallbackQueryHandler(action_pressed, pattern=f"^{ACTION}"))
    application.add_handler(CallbackQueryHandler(after_pressed, pattern=f"^{AFTER}"))
    application.add_handler(CallbackQueryHandler(details_pressed, pattern=f"^{DETAILS}"))
