"""/remind: an admin makes one reminder rule step by step in private, sees whom it reaches and
its next five due times, and saves it (or goes back, edits, cancels).

Steps: the text (its first line names the rule), how it repeats, when (typed, one line), to
whom (groups of a purpose, or holders of a role in private), in which unit, how long before,
and whether to ask for acknowledgement. Nothing is stored before "save"; the service checks
everything again then (roles, name, schedule, targets).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
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

from bot.errors import DomainError, StaleButton
from bot.outbox import Button
from bot.services import recurrence, reminders
from bot.services.models import GRANTABLE_ROLES, Purpose
from bot.services.recurrence import Schedule, ScheduleProblem
from bot.services.reminders import RuleIn
from handlers.commands import command
from handlers.common import actor_of, button, popup, pressed, reply, show
from handlers.context import BotContext
from handlers.flows import Flow, Step, cancel, guided, step_back

FLOW = "rmd:"  # "rmd:<step>:<choice>", "rmd:back:<state>", "rmd:save|edit|cancel"
DRAFT = "safecampus.remind_draft"
TEXT, KIND, WHEN, TARGET, UNIT, LEADS, ACK, CONFIRM = range(8)
PRIVATE = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
TYPED = filters.TEXT & ~filters.COMMAND
NOT_TYPED = ~filters.TEXT & ~filters.COMMAND
HOUR = 3600
DAY = 24 * HOUR
# The lead-time choices: seconds before each due time.
LEADS_CHOICES = {"0": [0], "1h": [HOUR], "1d": [DAY], "7d1d1h": [7 * DAY, DAY, HOUR]}
FOLLOW_UP = int(timedelta(hours=2).total_seconds())  # asking for acknowledgement follows up
ROLES = [role.value for role in GRANTABLE_ROLES]
# A step that may answer None: the flow stays where it was.
Answer = Callable[[Update, BotContext], Awaitable[int | None]]


@dataclass
class Draft:
    """The rule as chosen so far (kept in user_data; nothing is stored before "save")."""

    text: str = ""
    kind: str = ""
    schedule: Schedule | None = None
    purpose: str | None = None
    role: str | None = None
    unit: str = ""
    leads: list[int] = field(default_factory=lambda: [0])
    ack: bool = False

    @property
    def name(self) -> str:
        return reminders.rule_name(self.text)

    def rule(self) -> RuleIn:
        assert self.schedule is not None
        return RuleIn(
            line=0,  # not from a file
            name=self.name,
            text=self.text,
            schedule=self.schedule,
            leads=self.leads,
            purpose=self.purpose,
            unit=self.unit,
            role=self.role,
            ack=self.ack,
            follow_up=FOLLOW_UP if self.ack else None,
        )


def _draft(context: BotContext) -> Draft:
    assert context.user_data is not None
    draft: Draft = context.user_data.setdefault(DRAFT, Draft())
    return draft


def _b(update: Update, context: BotContext, label: str, action: str, **values: Any) -> Button:
    return button(update, context, f"remind/buttons/{label}.j2", f"{FLOW}{action}", **values)


def _nav(update: Update, context: BotContext, state: int) -> list[Button]:
    """Back to the step before ``state`` (named in the data, so a button left on an older
    message cannot move another step back) and cancel."""
    return [_b(update, context, "back", f"back:{state}"), _b(update, context, "cancel", "cancel")]


def _rows(buttons: list[Button], width: int) -> list[list[Button]]:
    return [buttons[i : i + width] for i in range(0, len(buttons), width)]


async def _show(
    update: Update,
    context: BotContext,
    template: str,
    buttons: list[list[Button]],
    **values: Any,
) -> None:
    await show(update, context, template, buttons=buttons, draft=_draft(context), **values)


async def _refused(update: Update, context: BotContext, refusal: DomainError) -> None:
    """Say why, as the error handler would: an alert on a button, else a message."""
    query = update.callback_query
    if query is not None:
        said = popup(update, context, refusal.template, **refusal.context)
        if said is not None:
            await query.answer(said, show_alert=True)
            return
        await query.answer()
    await reply(update, context, refusal.template, **refusal.context)


def _staying(step: Answer) -> Answer:
    """A step that, refused, says why and keeps the flow where it was: returning None leaves
    the state (and its timeout) as it is, where an escaping error would drop the timeout."""

    async def run(update: Update, context: BotContext) -> int | None:
        try:
            return await step(update, context)
        except DomainError as refusal:
            await _refused(update, context, refusal)
            return None

    return run


# --- the steps -------------------------------------------------------------------------------


async def ask_text(update: Update, context: BotContext) -> int:
    row = [_b(update, context, "cancel", "cancel")]
    if _draft(context).text:
        row.insert(0, _b(update, context, "keep", "text:keep"))
    await _show(update, context, "remind/ask_text.j2", [row], limit=reminders.MAX_TEXT)
    return TEXT


async def ask_kind(update: Update, context: BotContext) -> int:
    kinds = [_b(update, context, "kind", f"kind:{kind}", kind=kind) for kind in recurrence.KINDS]
    await _show(
        update, context, "remind/choose_kind.j2", [*_rows(kinds, 4), _nav(update, context, KIND)]
    )
    return KIND


async def ask_when(update: Update, context: BotContext) -> int:
    draft = _draft(context)
    rows = []
    if draft.schedule is not None and draft.schedule.kind == draft.kind:
        rows.append([_b(update, context, "keep", "when:keep")])
    await _show(update, context, "remind/ask_when.j2", [*rows, _nav(update, context, WHEN)])
    return WHEN


async def ask_target(update: Update, context: BotContext) -> int:
    groups = [_b(update, context, "purpose", f"to:p:{p.value}", purpose=p.value) for p in Purpose]
    roles = [_b(update, context, "role", f"to:r:{role}", role=role) for role in ROLES]
    await _show(
        update,
        context,
        "remind/choose_target.j2",
        [*_rows(groups, 2), *_rows(roles, 3), _nav(update, context, TARGET)],
    )
    return TARGET


async def ask_unit(update: Update, context: BotContext) -> int:
    buttons = [[_b(update, context, "whole_school", "unit:school")], _nav(update, context, UNIT)]
    await _show(update, context, "remind/ask_unit.j2", buttons)
    return UNIT


async def ask_leads(update: Update, context: BotContext) -> int:
    choices = [_b(update, context, "leads", f"lead:{key}", key=key) for key in LEADS_CHOICES]
    await _show(
        update,
        context,
        "remind/choose_leads.j2",
        [*_rows(choices, 2), _nav(update, context, LEADS)],
    )
    return LEADS


async def ask_ack(update: Update, context: BotContext) -> int:
    choices = [_b(update, context, "ack", f"ack:{answer}", ack=answer) for answer in ("no", "yes")]
    await _show(
        update, context, "remind/choose_ack.j2", [choices, _nav(update, context, ACK)], hours=2
    )
    return ACK


async def ask_confirmation(update: Update, context: BotContext) -> int:
    """The card: the rule, whom it reaches and its next five due times (nothing saved yet)."""
    actor = await actor_of(update, context)
    draft = _draft(context)
    preview = await reminders.preview(context.runtime, actor, draft.rule())
    buttons = [
        [_b(update, context, "save", "save"), _b(update, context, "edit", "edit")],
        _nav(update, context, CONFIRM),
    ]
    await _show(
        update, context, "remind/confirm.j2", buttons, preview=preview, rule=draft.rule(), hours=2
    )
    return CONFIRM


STEPS: dict[int, Step] = {
    TEXT: ask_text,
    KIND: ask_kind,
    WHEN: ask_when,
    TARGET: ask_target,
    UNIT: ask_unit,
    LEADS: ask_leads,
    ACK: ask_ack,
    CONFIRM: ask_confirmation,
}


# --- answers ---------------------------------------------------------------------------------


async def begin(update: Update, context: BotContext) -> int:
    """/remind: school admins only (others get the usual refusal, and no flow starts)."""
    actor = await actor_of(update, context)
    await reminders.authorize(context.runtime, actor)
    assert context.user_data is not None
    context.user_data[DRAFT] = Draft()
    return await ask_text(update, context)


async def text_typed(update: Update, context: BotContext) -> int:
    message = update.effective_message
    assert message is not None
    assert message.text is not None
    typed = message.text.strip()
    reminders.check_rule_text(typed)
    await reminders.check_name(
        context.runtime, await actor_of(update, context), reminders.rule_name(typed)
    )
    _draft(context).text = typed
    return await ask_kind(update, context)


async def text_kept(update: Update, context: BotContext) -> int:
    if not _draft(context).text:
        raise StaleButton()
    return await ask_kind(update, context)


async def not_text(update: Update, context: BotContext) -> None:
    await reply(update, context, "remind/not_text.j2")


async def chose_kind(update: Update, context: BotContext) -> int:
    _, kind = pressed(update, f"{FLOW}kind:")
    if kind not in recurrence.KINDS:
        raise StaleButton()
    _draft(context).kind = kind
    return await ask_when(update, context)


async def when_typed(update: Update, context: BotContext) -> int | None:
    message = update.effective_message
    assert message is not None
    assert message.text is not None
    draft = _draft(context)
    try:
        draft.schedule = recurrence.parse_when(
            draft.kind, message.text, context.runtime.now(), context.runtime.settings.calendar
        )
    except ScheduleProblem as problem:
        await reply(
            update,
            context,
            "remind/bad_when.j2",
            draft=draft,
            problem=problem.problem,
            value=problem.value,
        )
        return None  # the same question again
    return await ask_target(update, context)


async def when_kept(update: Update, context: BotContext) -> int:
    draft = _draft(context)
    if draft.schedule is None or draft.schedule.kind != draft.kind:
        raise StaleButton()
    return await ask_target(update, context)


async def chose_target(update: Update, context: BotContext) -> int:
    _, data = pressed(update, f"{FLOW}to:")
    which, _, value = data.partition(":")
    draft = _draft(context)
    if which == "p" and value in Purpose.__members__.values():
        draft.purpose, draft.role = value, None
    elif which == "r" and value in ROLES:
        draft.purpose, draft.role = None, value
    else:
        raise StaleButton()
    return await ask_unit(update, context)


async def _unit_chosen(update: Update, context: BotContext, path: str) -> int:
    """Take the unit only if it exists and the targets reach someone there (the service says
    why not, and the question stays)."""
    draft = _draft(context)
    actor = await actor_of(update, context)
    preview = await reminders.preview(
        context.runtime, actor, draft.rule().model_copy(update={"unit": path})
    )
    draft.unit = preview.unit
    return await ask_leads(update, context)


async def unit_typed(update: Update, context: BotContext) -> int:
    message = update.effective_message
    assert message is not None
    assert message.text is not None
    return await _unit_chosen(update, context, message.text.strip())


async def whole_school(update: Update, context: BotContext) -> int:
    return await _unit_chosen(update, context, "")


async def chose_leads(update: Update, context: BotContext) -> int:
    _, key = pressed(update, f"{FLOW}lead:")
    if key not in LEADS_CHOICES:
        raise StaleButton()
    _draft(context).leads = list(LEADS_CHOICES[key])
    return await ask_ack(update, context)


async def chose_ack(update: Update, context: BotContext) -> int:
    _, answer = pressed(update, f"{FLOW}ack:")
    if answer not in ("no", "yes"):
        raise StaleButton()
    _draft(context).ack = answer == "yes"
    return await ask_confirmation(update, context)


async def save(update: Update, context: BotContext) -> int:
    """Store the rule; a refusal (the groups left meanwhile, the name was taken) keeps the card
    so the admin can edit or cancel."""
    query, _ = pressed(update, FLOW)
    actor = await actor_of(update, context)
    rule = await reminders.create_rule(context.runtime, actor, _draft(context).rule())
    await query.answer()
    await query.edit_message_reply_markup(None)  # the card cannot save a second time
    assert context.user_data is not None
    context.user_data.pop(DRAFT, None)
    # Said only now: the rule is committed.
    await reply(update, context, "remind/saved.j2", rule=rule)
    return ConversationHandler.END


async def edit(update: Update, context: BotContext) -> int:
    return await ask_text(update, context)


def _flow_handler() -> Flow:
    flow = f"^{FLOW}"
    back = {
        state: CallbackQueryHandler(
            _staying(step_back(STEPS, state)), pattern=f"{flow}back:{state}$"
        )
        for state in STEPS
        if state != TEXT
    }
    cancelled = cancel(DRAFT, "remind/cancelled.j2")
    cancel_button = CallbackQueryHandler(cancelled, pattern=f"{flow}cancel$")

    def on(step: Answer, pattern: str) -> CallbackQueryHandler[Any, Any]:
        return CallbackQueryHandler(_staying(step), pattern=f"{flow}{pattern}")

    return guided(
        entry_points=[CommandHandler("remind", begin, filters=PRIVATE)],
        states={
            TEXT: [
                MessageHandler(TYPED, _staying(text_typed)),
                on(text_kept, "text:keep$"),
                MessageHandler(NOT_TYPED, not_text),
                cancel_button,
            ],
            KIND: [on(chose_kind, "kind:"), back[KIND], cancel_button],
            WHEN: [
                MessageHandler(TYPED, _staying(when_typed)),
                on(when_kept, "when:keep$"),
                MessageHandler(NOT_TYPED, not_text),
                back[WHEN],
                cancel_button,
            ],
            TARGET: [on(chose_target, "to:"), back[TARGET], cancel_button],
            UNIT: [
                MessageHandler(TYPED, _staying(unit_typed)),
                on(whole_school, "unit:school$"),
                MessageHandler(NOT_TYPED, not_text),
                back[UNIT],
                cancel_button,
            ],
            LEADS: [on(chose_leads, "lead:"), back[LEADS], cancel_button],
            ACK: [on(chose_ack, "ack:"), back[ACK], cancel_button],
            CONFIRM: [
                on(save, "save$"),
                on(edit, "edit$"),
                back[CONFIRM],
                cancel_button,
            ],
        },
        draft=DRAFT,
        cancelled=cancelled,
        timeout_template="remind/timeout.j2",
        name="remind",
    )


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    application.add_handler(_flow_handler())
    command(application, "remind", begin)  # reached only outside private chats: explains where
