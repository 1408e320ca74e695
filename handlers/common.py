"""What every handler needs: who is asking, where, and how to answer in their language."""

from __future__ import annotations

import html
import re
from typing import Any

from telegram import CallbackQuery, Chat, Message, Update, User
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden

from bot.errors import StaleButton
from bot.outbox import Button, Recipient
from bot.outbox.telegram import inline_keyboard, split_text
from bot.render import choose_locale
from bot.services import org
from bot.services.models import TELEGRAM, Actor, Profile
from handlers.context import BotContext


def profile_of(user: User) -> Profile:
    return Profile(
        telegram_id=user.id,
        username=user.username,
        full_name=user.full_name,
        language_code=user.language_code,
    )


def recipient_of(chat: Chat) -> Recipient:
    return Recipient(TELEGRAM, str(chat.id))


def is_private(update: Update) -> bool:
    return update.effective_chat is not None and update.effective_chat.type == Chat.PRIVATE


async def actor_of(update: Update, context: BotContext) -> Actor:
    """The person behind this update, identified once per update."""
    if context.actor is None:
        assert update.effective_user is not None
        context.actor = await org.identify(
            context.runtime, profile_of(update.effective_user), private=is_private(update)
        )
    return context.actor


def locale_of(update: Update, context: BotContext) -> str:
    """The caller's language: their setting if known, else their Telegram app's, else default."""
    if context.actor is not None:
        return context.actor.locale
    user = update.effective_user
    return choose_locale(
        None, user.language_code if user else None, context.runtime.settings.locale
    )


def text(update: Update, context: BotContext, template: str, **values: Any) -> str:
    """Render ``template`` in the caller's language."""
    return context.runtime.renderer.render(locale_of(update, context), template, **values)


async def reply(
    update: Update,
    context: BotContext,
    template: str,
    *,
    buttons: list[list[Button]] | None = None,
    **values: Any,
) -> Message:
    """Answer in the chat the update came from, in the caller's language. A text longer than
    one Telegram message (a long report history) goes out in parts, buttons on the last."""
    chat = update.effective_chat
    assert chat is not None
    *first, last = split_text(text(update, context, template, **values)) or [""]
    for part in first:
        await context.bot.send_message(
            chat.id, part, parse_mode=ParseMode.HTML, disable_web_page_preview=True
        )
    return await context.bot.send_message(
        chat.id,
        last,
        parse_mode=ParseMode.HTML,
        reply_markup=inline_keyboard(buttons or []),
        disable_web_page_preview=True,
    )


ALERT_LIMIT = 200  # Telegram's limit for a button's answer shown as a pop-up
_TAGS = re.compile(r"<[^>]+>")


def plain(rendered: str) -> str:
    """A rendered (HTML) text as a pop-up shows it, which knows no markup: no tags, no
    entities ("A&amp;B" is "A&B")."""
    return html.unescape(_TAGS.sub("", rendered)).strip()


def popup(update: Update, context: BotContext, template: str, **values: Any) -> str | None:
    """``template`` as a button's pop-up answer; None if it is too long for one."""
    said = plain(text(update, context, template, **values))
    return said if len(said) <= ALERT_LIMIT else None


def button(
    update: Update, context: BotContext, template: str, action: str, **values: Any
) -> Button:
    """A button whose label is a template and whose callback data is ``action``."""
    return Button(text=text(update, context, template, **values), action=action)


def pressed(update: Update, prefix: str) -> tuple[CallbackQuery, str]:
    """The button press behind ``update`` and its data after ``prefix`` (never trusted)."""
    query = update.callback_query
    if query is None or query.data is None:
        raise StaleButton()
    return query, query.data.removeprefix(prefix)


async def show(
    update: Update,
    context: BotContext,
    template: str,
    *,
    buttons: list[list[Button]] | None = None,
    **values: Any,
) -> None:
    """Answer a button press by updating the message it is on; otherwise send a new message.
    A double tap (Telegram's "message is not modified") is not an error."""
    query = update.callback_query
    if query is None:
        await reply(update, context, template, buttons=buttons, **values)
        return
    await query.answer()
    try:
        await query.edit_message_text(
            text(update, context, template, **values),
            parse_mode=ParseMode.HTML,
            reply_markup=inline_keyboard(buttons or []),
            disable_web_page_preview=True,
        )
    except BadRequest as exc:
        if "not modified" not in exc.message.lower():
            raise


async def ask_in_private(
    update: Update,
    context: BotContext,
    template: str,
    *,
    cannot: str,
    buttons: list[list[Button]] | None = None,
    **values: Any,
) -> None:
    """Ask the person who pressed a button for something in their private chat (a group is no
    place to type an outcome or send a photo). If the bot may not write to them there, the
    button answers with ``cannot`` and nothing else happens."""
    query = update.callback_query
    user = update.effective_user
    assert query is not None
    assert user is not None
    try:
        await context.bot.send_message(
            user.id,
            text(update, context, template, **values),
            parse_mode=ParseMode.HTML,
            reply_markup=inline_keyboard(buttons or []),
        )
    except Forbidden:
        await query.answer(popup(update, context, cannot), show_alert=True)
        raise StaleButton() from None
    await query.answer()


async def answer_step(
    update: Update,
    context: BotContext,
    *,
    changed: bool,
    done: str,
    current: str,
    **values: Any,
) -> None:
    """Say what a button did (``done``, in the chat); a button that no longer applies answers
    with the current state (``current``, as an alert) instead of acting twice."""
    query = update.callback_query
    assert query is not None
    if changed:
        await query.answer()
        actor = await actor_of(update, context)
        await reply(update, context, done, by=actor.person, **values)
    else:
        await query.answer(popup(update, context, current, **values), show_alert=True)
