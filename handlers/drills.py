"""Drills and other activities: /drill plan (guided, or all on one line), /drill done (guided:
participants, summary, photos), /drill record (one held but never planned here), /drill photos,
/drill postpone, /drill cancel, and /drills.

One Flow holds the guided paths, since all start with /drill and only one runs at a time. A
time already past typed in /drill plan asks whether the activity took place; if so the flow
records it after the fact (place, then the /drill done steps, a confirmation, photos), as
/drill record does from one line. Buttons carry ``dr:…``; what they say is only a choice, the
services check roles again.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from telegram import Update
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)

from bot.errors import BadArguments, NotAllowed, StaleButton
from bot.outbox import Button
from bot.services import drills
from bot.services.drills import ActivityDraft, Kind, State, Topic
from bot.services.models import Purpose, Role
from handlers.commands import command
from handlers.common import actor_of, button, pressed, reply, show, text
from handlers.context import BotContext
from handlers.flows import Flow, cancel, guided, step_back
from handlers.hazard_actions import IMAGE, received_image

FLOW = "dr:"
DRAFT = "safecampus.drill_draft"
KIND, TOPIC, WHEN, PLACE, TARGET, CONFIRM = range(6)
PARTICIPANTS, SUMMARY, PHOTOS = range(6, 9)
HELD, RECORD = range(9, 11)  # "has it taken place?"; confirming a record after the fact
# Steps of the guided plan before the place (kind, topic, time, place): a record after the fact
# continues its numbering from there.
PLAN_STEPS = 4
PRIVATE = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
TYPED = filters.TEXT & ~filters.COMMAND
REFERENCE = re.compile(r"[Dd]-?\d{1,9}")
# The target buttons: a purpose for the whole school (a unit path is typed instead).
TARGET_BUTTONS = {"class": Purpose.CLASS, "staff": Purpose.STAFF}
USAGE = "drills/usage.j2"


class Recording(BaseModel):
    """The /drill done and /drill photos steps: which activity, and what was typed so far."""

    activity_id: int
    participants: int | None = None


class Held(BaseModel):
    """An activity that took place but was never planned here, being recorded: what the plan
    steps chose, then what the /drill done steps take. ``steps_before`` numbers those steps
    after the guided plan's (none after /drill record)."""

    draft: ActivityDraft
    steps_before: int = 0
    participants: int | None = None
    summary: str = ""


def _plan_draft(context: BotContext) -> ActivityDraft:
    """What the plan steps fill in, also while recording after the fact."""
    assert context.user_data is not None
    draft = context.user_data.get(DRAFT)
    if isinstance(draft, Held):
        return draft.draft
    if not isinstance(draft, ActivityDraft):
        raise StaleButton()  # a button of a flow that ended (or of another one)
    return draft


def _held(context: BotContext) -> Held | None:
    assert context.user_data is not None
    held = context.user_data.get(DRAFT)
    return held if isinstance(held, Held) else None


def _tally(context: BotContext) -> Recording | Held:
    """Whoever takes the participants and the summary: /drill done, or a record after the fact."""
    return _held(context) or _recording(context)


def _recording(context: BotContext) -> Recording:
    assert context.user_data is not None
    recording = context.user_data.get(DRAFT)
    if not isinstance(recording, Recording):
        raise StaleButton()
    return recording


def _b(update: Update, context: BotContext, label: str, action: str, **values: Any) -> Button:
    return button(update, context, f"drills/buttons/{label}.j2", f"{FLOW}{action}", **values)


def _nav(update: Update, context: BotContext, back: bool = True) -> list[Button]:
    row = [_b(update, context, "cancel", "cancel")]
    return [_b(update, context, "back", "back"), *row] if back else row


def _rows(buttons: list[Button], width: int) -> list[list[Button]]:
    return [buttons[i : i + width] for i in range(0, len(buttons), width)]


def _rest(update: Update, words: int) -> str:
    """The message text after its first ``words`` words, spacing kept (a place, a reason)."""
    message = update.effective_message
    assert message is not None
    parts = (message.text or "").split(maxsplit=words)
    return parts[words] if len(parts) > words else ""


# --- planning, guided ------------------------------------------------------------------------


async def ask_kind(update: Update, context: BotContext) -> int:
    choices = [_b(update, context, "kind", f"kind:{k.value}", kind=k) for k in Kind]
    buttons = [*_rows(choices, 2), _nav(update, context, back=False)]
    await show(update, context, "drills/flow/choose_kind.j2", buttons=buttons)
    return KIND


async def ask_topic(update: Update, context: BotContext) -> int:
    choices = [_b(update, context, "topic", f"topic:{t.value}", topic=t) for t in Topic]
    buttons = [*_rows(choices, 2), _nav(update, context)]
    draft = _plan_draft(context)
    await show(update, context, "drills/flow/choose_topic.j2", buttons=buttons, draft=draft)
    return TOPIC


async def ask_when(update: Update, context: BotContext) -> int:
    runtime = context.runtime
    week = (runtime.now() + timedelta(days=7)).astimezone(runtime.settings.zone)
    await show(
        update,
        context,
        "drills/flow/ask_when.j2",
        buttons=[_nav(update, context)],
        example=week.strftime("%Y-%m-%d 15:00"),
    )
    return WHEN


async def ask_place(update: Update, context: BotContext) -> int:
    await show(update, context, "drills/flow/ask_place.j2", buttons=[_nav(update, context)])
    return PLACE


async def ask_target(update: Update, context: BotContext) -> int:
    choices = [_b(update, context, f"target_{name}", f"to:{name}") for name in TARGET_BUTTONS]
    await show(
        update,
        context,
        "drills/flow/choose_target.j2",
        buttons=[choices, _nav(update, context)],
    )
    return TARGET


async def ask_confirmation(update: Update, context: BotContext) -> int:
    draft = _plan_draft(context)
    assert draft.topic is not None
    assert draft.when is not None
    runtime = context.runtime
    # Checked again here (and once more on saving): a group may have left meanwhile.
    targets = await drills.check_targets(
        runtime, await actor_of(update, context), draft.purpose, draft.unit
    )
    buttons = [[_b(update, context, "confirm", "confirm")], _nav(update, context)]
    await show(
        update,
        context,
        "drills/flow/confirm.j2",
        buttons=buttons,
        draft=draft,
        title=drills.default_title(runtime, draft.kind, draft.topic),
        targets=targets,
        times=drills.reminder_times(draft.when, runtime.now()),
    )
    return CONFIRM


async def chose_kind(update: Update, context: BotContext) -> int:
    _, value = pressed(update, f"{FLOW}kind:")
    if value not in Kind.__members__.values():
        raise StaleButton()
    _plan_draft(context).kind = Kind(value)
    return await ask_topic(update, context)


async def chose_topic(update: Update, context: BotContext) -> int:
    _, value = pressed(update, f"{FLOW}topic:")
    if value not in Topic.__members__.values():
        raise StaleButton()
    _plan_draft(context).topic = Topic(value)
    return await ask_when(update, context)


async def ask_held(update: Update, context: BotContext) -> int:
    choices = [
        _b(update, context, "held_yes", "held:yes"),
        _b(update, context, "held_no", "held:no"),
    ]
    await show(
        update,
        context,
        "drills/flow/ask_held.j2",
        buttons=[*_rows(choices, 1), _nav(update, context)],
        draft=_plan_draft(context),
    )
    return HELD


async def when_typed(update: Update, context: BotContext) -> int:
    message = update.effective_message
    assert message is not None
    assert message.text is not None
    runtime = context.runtime
    now = runtime.now()
    # A bad time raises: the error is explained and the person stays on this step.
    when = drills.parse_moment(message.text, runtime.settings.zone)
    draft = _plan_draft(context)
    if when <= now:
        # Perhaps held but never planned here: ask, unless too long ago to record.
        drills.check_held(when, now)
        draft.when = when
        return await ask_held(update, context)
    drills.check_ahead(when, now)
    draft.when = when
    assert context.user_data is not None
    context.user_data[DRAFT] = draft  # a time ahead is a plan (again, after "held?")
    return await ask_place(update, context)


async def chose_held(update: Update, context: BotContext) -> int:
    """ "Record it as done" continues with the place; "type the time again" goes back."""
    _, value = pressed(update, f"{FLOW}held:")
    draft = _plan_draft(context)
    assert context.user_data is not None
    if value == "no":
        context.user_data[DRAFT] = draft
        return await ask_when(update, context)
    if value != "yes" or draft.when is None:
        raise StaleButton()
    actor = await actor_of(update, context)
    draft.unit = drills.home_unit(actor)
    context.user_data[DRAFT] = _held(context) or Held(draft=draft, steps_before=PLAN_STEPS)
    return await ask_place(update, context)


async def place_typed(update: Update, context: BotContext) -> int:
    message = update.effective_message
    assert message is not None
    assert message.text is not None
    place = message.text.strip()
    if not place:
        raise drills.Empty(what="place")
    if len(place) > drills.MAX_PLACE:
        raise drills.TooLong(what="place", limit=drills.MAX_PLACE, length=len(place))
    _plan_draft(context).place = place
    if _held(context) is not None:
        return await ask_participants(update, context)  # it is over: nobody to remind
    return await ask_target(update, context)


async def chose_target(update: Update, context: BotContext) -> int:
    _, value = pressed(update, f"{FLOW}to:")
    if value not in TARGET_BUTTONS:
        raise StaleButton()
    draft = _plan_draft(context)
    draft.purpose, draft.unit = TARGET_BUTTONS[value], ""
    return await ask_confirmation(update, context)


async def unit_typed(update: Update, context: BotContext) -> int:
    """A unit path typed at the target step: that unit's class groups."""
    message = update.effective_message
    assert message is not None
    assert message.text is not None
    draft = _plan_draft(context)
    check = await drills.check_targets(
        context.runtime, await actor_of(update, context), Purpose.CLASS, message.text.strip()
    )
    draft.purpose, draft.unit = Purpose.CLASS, check.unit.path
    return await ask_confirmation(update, context)


async def confirmed(update: Update, context: BotContext) -> int:
    query, _ = pressed(update, FLOW)
    # A refusal (the time has passed meanwhile) leaves the card and its buttons: go back and
    # fix it. Updates are handled one at a time, so a double tap finds the flow ended.
    await _plan(update, context, _plan_draft(context))
    await query.answer()
    await query.edit_message_reply_markup(None)
    return ConversationHandler.END


async def _plan(update: Update, context: BotContext, draft: ActivityDraft) -> None:
    actor = await actor_of(update, context)
    activity = await drills.plan(context.runtime, actor, draft)
    assert context.user_data is not None
    context.user_data.pop(DRAFT, None)
    # Said only now: the activity and its reminders are committed.
    await reply(
        update,
        context,
        "drills/planned.j2",
        activity=activity,
        times=drills.reminder_times(activity.planned_at, activity.created_at),
    )


# --- planning on one line, moving, cancelling ------------------------------------------------


def _one_line(update: Update, context: BotContext, args: list[str]) -> ActivityDraft:
    """[kind] topic YYYY-MM-DD HH:MM place… after "/drill plan" or "/drill record"; the time
    is read, not yet checked against now."""
    words = [word.lower() for word in args]
    kind_given = bool(words) and words[0] in Kind.__members__.values()
    kind = Kind(words.pop(0)) if kind_given else Kind.DRILL
    if len(words) < 4 or words[0] not in Topic.__members__.values():
        raise BadArguments(usage=USAGE)
    when = drills.parse_moment(f"{words[1]} {words[2]}", context.runtime.settings.zone)
    # The place keeps its own spacing: everything after "/drill plan [kind] topic date time".
    place = _rest(update, 6 if kind_given else 5)
    return ActivityDraft(kind=kind, topic=Topic(words[0]), when=when, place=place)


async def quick_plan(update: Update, context: BotContext, args: list[str]) -> None:
    """/drill plan [kind] topic YYYY-MM-DD HH:MM place… — the class groups of the school."""
    draft = _one_line(update, context, args)
    assert draft.when is not None
    if draft.when <= context.runtime.now():
        raise drills.InThePast(when=draft.when, record=True)  # pointing to /drill record
    await _plan(update, context, draft)


async def quick_record(update: Update, context: BotContext, args: list[str]) -> int:
    """/drill record [kind] topic YYYY-MM-DD HH:MM place… — held but never planned here; then
    the participants, the summary, a confirmation and photos, as in the guided flow."""
    actor = await actor_of(update, context)
    if not drills.may_organise(actor):  # refused before anything is typed
        raise NotAllowed(needed=Role.OFFICER, unit="")
    draft = _one_line(update, context, args)
    assert draft.when is not None
    drills.check_held(draft.when, context.runtime.now())
    draft.unit = drills.home_unit(actor)
    assert context.user_data is not None
    context.user_data[DRAFT] = Held(draft=draft)
    return await ask_participants(update, context)


async def postpone(update: Update, context: BotContext, args: list[str]) -> None:
    """/drill postpone D-0003 YYYY-MM-DD HH:MM [reason…]"""
    if len(args) < 3:
        raise BadArguments(usage=USAGE)
    runtime = context.runtime
    activity_id = drills.parse_reference(args[0])
    when = drills.parse_when(f"{args[1]} {args[2]}", runtime.now(), runtime.settings.zone)
    actor = await actor_of(update, context)
    activity = await drills.postpone(runtime, actor, activity_id, when, _rest(update, 5))
    await reply(
        update,
        context,
        "drills/postponed.j2",
        activity=activity,
        times=drills.reminder_times(activity.planned_at, runtime.now()),
    )


async def call_off(update: Update, context: BotContext, args: list[str]) -> None:
    """/drill cancel D-0003 [reason…]"""
    if not args:
        raise BadArguments(usage=USAGE)
    actor = await actor_of(update, context)
    activity = await drills.cancel(
        context.runtime, actor, drills.parse_reference(args[0]), _rest(update, 3)
    )
    await reply(update, context, "drills/cancelled.j2", activity=activity)


# --- recording, guided -----------------------------------------------------------------------


def _step(context: BotContext, step: int) -> int:
    """The number shown for step ``step`` of recording (participants 1, summary 2, photos 3)."""
    held = _held(context)
    return step + (held.steps_before if held else 0)


async def ask_participants(update: Update, context: BotContext) -> int:
    held = _held(context)
    if held is None:
        recording = _recording(context)
        activity = await drills.for_step(
            context.runtime, await actor_of(update, context), recording.activity_id, State.PLANNED
        )
        values: dict[str, Any] = {"activity": activity}
    else:
        draft = held.draft
        assert draft.topic is not None
        title = drills.default_title(context.runtime, draft.kind, draft.topic)
        values = {"activity": None, "title": title, "when": draft.when}
    await show(
        update,
        context,
        "drills/flow/ask_participants.j2",
        # Back to the place when recording after the fact; /drill done starts here.
        buttons=[_nav(update, context, back=held is not None)],
        step=_step(context, 1),
        **values,
    )
    return PARTICIPANTS


async def ask_summary(update: Update, context: BotContext) -> int:
    await show(
        update,
        context,
        "drills/flow/ask_summary.j2",
        buttons=[_nav(update, context)],
        limit=drills.MAX_SUMMARY,
        step=_step(context, 2),
    )
    return SUMMARY


async def ask_record_confirmation(update: Update, context: BotContext) -> int:
    held = _held(context)
    if held is None:
        raise StaleButton()
    draft = held.draft
    assert draft.topic is not None
    buttons = [[_b(update, context, "record", "record")], _nav(update, context)]
    await show(
        update,
        context,
        "drills/flow/confirm_record.j2",
        buttons=buttons,
        draft=draft,
        title=drills.default_title(context.runtime, draft.kind, draft.topic),
        participants=held.participants,
        summary=held.summary,
    )
    return RECORD


async def back_to_place(update: Update, context: BotContext) -> int:
    """Back from the participants: only a record after the fact has a place step before."""
    if _held(context) is None:
        raise StaleButton()
    return await ask_place(update, context)


async def participants_typed(update: Update, context: BotContext) -> int:
    message = update.effective_message
    assert message is not None
    assert message.text is not None
    _tally(context).participants = drills.parse_participants(message.text)
    return await ask_summary(update, context)


async def summary_typed(update: Update, context: BotContext) -> int:
    message = update.effective_message
    assert message is not None
    assert message.text is not None
    held = _held(context)
    if held is not None:
        # Checked now (and again on saving), so a bad summary is retyped on this step.
        held.summary = drills.check_summary(message.text)
        return await ask_record_confirmation(update, context)
    recording = _recording(context)
    assert recording.participants is not None
    activity = await drills.record_done(
        context.runtime,
        await actor_of(update, context),
        recording.activity_id,
        recording.participants,
        message.text,
    )
    return await _offer_photos(update, context, activity)


async def record_confirmed(update: Update, context: BotContext) -> int:
    """Save the record after the fact; a refusal leaves the card to go back and fix it."""
    query, _ = pressed(update, FLOW)
    held = _held(context)
    if held is None or held.participants is None:
        raise StaleButton()
    actor = await actor_of(update, context)
    activity = await drills.record_past(
        context.runtime, actor, held.draft, held.participants, held.summary
    )
    await query.answer()
    await query.edit_message_reply_markup(None)
    return await _offer_photos(update, context, activity)


async def _offer_photos(update: Update, context: BotContext, activity: drills.Activity) -> int:
    """Committed: photos are optional and saved one by one as they arrive."""
    step = _step(context, 3)
    assert context.user_data is not None
    context.user_data[DRAFT] = Recording(activity_id=activity.id)
    await reply(
        update,
        context,
        "drills/done.j2",
        activity=activity,
        step=step,
        buttons=[[_b(update, context, "finish", "finish")]],
    )
    return PHOTOS


async def photo_added(update: Update, context: BotContext) -> int:
    message = update.effective_message
    assert message is not None
    recording = _recording(context)
    actor = await actor_of(update, context)
    # Refused before downloading if the activity no longer takes photos from this person.
    await drills.for_step(context.runtime, actor, recording.activity_id, State.DONE)
    photo = await received_image(update, context, message)
    activity = await drills.add_photos(context.runtime, actor, recording.activity_id, [photo])
    await reply(
        update,
        context,
        "drills/flow/photo_added.j2",
        count=activity.photo_count,
        note=photo.note,
        buttons=[[_b(update, context, "finish", "finish")]],
    )
    return PHOTOS


async def finished(update: Update, context: BotContext) -> int:
    """ "Done" (or /cancel) after the photos: the record as it now stands."""
    recording = _recording(context)
    if update.callback_query is not None:
        await update.callback_query.answer()
        await update.callback_query.edit_message_reply_markup(None)
    actor = await actor_of(update, context)
    view = await drills.view(context.runtime, actor, recording.activity_id)
    assert context.user_data is not None
    context.user_data.pop(DRAFT, None)
    await reply(update, context, "drills/finished.j2", activity=view.activity)
    return ConversationHandler.END


async def not_a_photo(update: Update, context: BotContext) -> int:
    await reply(
        update,
        context,
        "drills/flow/not_a_photo.j2",
        buttons=[[_b(update, context, "finish", "finish")]],
    )
    return PHOTOS


async def not_text(update: Update, context: BotContext) -> None:
    await reply(update, context, "drills/flow/not_text.j2")


async def _start_recording(
    update: Update, context: BotContext, args: list[str], state: State
) -> int:
    if len(args) != 1:
        raise BadArguments(usage=USAGE)
    actor = await actor_of(update, context)
    activity = await drills.for_step(context.runtime, actor, drills.parse_reference(args[0]), state)
    assert context.user_data is not None
    context.user_data[DRAFT] = Recording(activity_id=activity.id)
    if state is State.PLANNED:
        return await ask_participants(update, context)
    await reply(
        update,
        context,
        "drills/flow/ask_photos.j2",
        activity=activity,
        buttons=[[_b(update, context, "finish", "finish")]],
    )
    return PHOTOS


# --- entry -----------------------------------------------------------------------------------


async def begin(update: Update, context: BotContext) -> int:
    """/drill plan|done|photos|postpone|cancel …"""
    actor = await actor_of(update, context)
    assert context.user_data is not None
    context.user_data.pop(DRAFT, None)  # any /drill starts afresh
    args = context.args or []
    action, rest = (args[0].lower(), args[1:]) if args else ("", [])
    if action == "plan" and rest:
        await quick_plan(update, context, rest)
    elif action == "plan":
        if not drills.may_organise(actor):
            raise NotAllowed(needed=Role.OFFICER, unit="")
        context.user_data[DRAFT] = ActivityDraft()
        return await ask_kind(update, context)
    elif action == "record" and rest:
        return await quick_record(update, context, rest)
    elif action == "done":
        return await _start_recording(update, context, rest, State.PLANNED)
    elif action == "photos":
        return await _start_recording(update, context, rest, State.DONE)
    elif action == "postpone":
        await postpone(update, context, rest)
    elif action == "cancel":
        await call_off(update, context, rest)
    else:
        await reply(update, context, USAGE)
    return ConversationHandler.END


async def list_drills(update: Update, context: BotContext) -> None:
    """/drills: upcoming and recent; /drills D-0003: one record with its history and photos."""
    actor = await actor_of(update, context)
    args = context.args or []
    runtime = context.runtime
    if not args:
        listing = await drills.listing(runtime, actor)
        await reply(update, context, "drills/list.j2", listing=listing, now=runtime.now())
        return
    if len(args) != 1 or not REFERENCE.fullmatch(args[0]):
        await reply(update, context, USAGE)
        return
    view = await drills.view(runtime, actor, drills.parse_reference(args[0]))
    await reply(update, context, "drills/detail.j2", view=view)
    chat = update.effective_chat
    assert chat is not None
    caption = text(update, context, "drills/photo_caption.j2", activity=view.activity)
    for photo in view.activity.photos:
        try:
            await context.bot.send_photo(chat.id, photo.file_id, caption=caption)
        except TelegramError:
            continue  # a photo Telegram no longer has; the record still counts it


def _flow_handler() -> Flow:
    flow = f"^{FLOW}"
    steps = {
        KIND: ask_kind,
        TOPIC: ask_topic,
        WHEN: ask_when,
        PLACE: ask_place,
        TARGET: ask_target,
        CONFIRM: ask_confirmation,
        PARTICIPANTS: ask_participants,
        SUMMARY: ask_summary,
    }
    back = {
        state: CallbackQueryHandler(step_back(steps, state), pattern=f"{flow}back$")
        for state in steps
        if state not in (KIND, PARTICIPANTS)
    }
    # Recording after the fact: participants come after the place, the card after the summary.
    back[PARTICIPANTS] = CallbackQueryHandler(back_to_place, pattern=f"{flow}back$")
    back[HELD] = CallbackQueryHandler(ask_when, pattern=f"{flow}back$")
    back[RECORD] = CallbackQueryHandler(ask_summary, pattern=f"{flow}back$")
    cancelled = cancel(DRAFT, "drills/flow/cancelled.j2")
    cancel_button = CallbackQueryHandler(cancelled, pattern=f"{flow}cancel$")
    wrong = MessageHandler(~filters.TEXT & ~filters.COMMAND, not_text)

    def typed(step: Any, state: int) -> list[Any]:
        return [MessageHandler(TYPED, step), wrong, back[state], cancel_button]

    return guided(
        entry_points=[CommandHandler("drill", begin, filters=PRIVATE)],
        states={
            KIND: [CallbackQueryHandler(chose_kind, pattern=f"{flow}kind:"), cancel_button],
            TOPIC: [
                CallbackQueryHandler(chose_topic, pattern=f"{flow}topic:"),
                back[TOPIC],
                cancel_button,
            ],
            WHEN: typed(when_typed, WHEN),
            PLACE: typed(place_typed, PLACE),
            TARGET: [
                CallbackQueryHandler(chose_target, pattern=f"{flow}to:"),
                *typed(unit_typed, TARGET),
            ],
            CONFIRM: [
                CallbackQueryHandler(confirmed, pattern=f"{flow}confirm$"),
                back[CONFIRM],
                cancel_button,
            ],
            HELD: [
                CallbackQueryHandler(chose_held, pattern=f"{flow}held:"),
                *typed(when_typed, HELD),  # another time typed instead of a button
            ],
            PARTICIPANTS: typed(participants_typed, PARTICIPANTS),
            SUMMARY: typed(summary_typed, SUMMARY),
            RECORD: [
                CallbackQueryHandler(record_confirmed, pattern=f"{flow}record$"),
                back[RECORD],
                cancel_button,
            ],
            PHOTOS: [
                MessageHandler(IMAGE, photo_added),
                CallbackQueryHandler(finished, pattern=f"{flow}finish$"),
                # The record is saved already: /cancel only ends the photos.
                CommandHandler("cancel", finished),
                MessageHandler(~filters.COMMAND, not_a_photo),
            ],
        },
        draft=DRAFT,
        cancelled=cancelled,
        timeout_template="drills/flow/timeout.j2",
        name="drill",
    )


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    application.add_handler(_flow_handler())
    command(application, "drill", begin)  # reached only outside private chats: explains where
    command(application, "drills", list_drills)
