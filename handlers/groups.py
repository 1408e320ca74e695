"""Group chats: the bot joining or leaving, /bind and /unbind, supergroup migrations."""

from __future__ import annotations

from typing import Any

from telegram import Chat, ChatMember, Update
from telegram.ext import Application, ChatMemberHandler, MessageHandler, filters

from bot.outbox import Recipient
from bot.services import org
from bot.services.models import TELEGRAM
from handlers.commands import command
from handlers.common import actor_of, recipient_of, reply
from handlers.context import BotContext

_PRESENT = {ChatMember.MEMBER, ChatMember.ADMINISTRATOR, ChatMember.OWNER, ChatMember.RESTRICTED}


async def membership_changed(update: Update, context: BotContext) -> None:
    """The bot was added to or removed from a group."""
    change = update.my_chat_member
    assert change is not None
    chat = change.chat
    if chat.type not in (Chat.GROUP, Chat.SUPERGROUP):
        return
    was_in = change.old_chat_member.status in _PRESENT
    is_in = change.new_chat_member.status in _PRESENT
    if is_in and not was_in:
        await org.group_joined(context.runtime, recipient_of(chat), chat.title or "")
    elif was_in and not is_in:
        await org.group_left(context.runtime, recipient_of(chat))


async def bind(update: Update, context: BotContext) -> None:
    actor = await actor_of(update, context)
    chat = update.effective_chat
    assert chat is not None
    args = context.args or []
    if not args:
        await reply(update, context, "org/usage/bind.j2")
        return
    group = await org.bind_group(
        context.runtime, actor, recipient_of(chat), chat.title or "", args[0], " ".join(args[1:])
    )
    await reply(update, context, "groups/bound.j2", group=group)


async def unbind(update: Update, context: BotContext) -> None:
    actor = await actor_of(update, context)
    chat = update.effective_chat
    assert chat is not None
    group = await org.unbind_group(context.runtime, actor, recipient_of(chat))
    await reply(update, context, "groups/unbound.j2", group=group)


async def migrated(update: Update, context: BotContext) -> None:
    """A group became a supergroup: Telegram sends this in both the old and the new chat."""
    message = update.effective_message
    assert message is not None
    if message.migrate_to_chat_id:
        old, new = message.chat.id, message.migrate_to_chat_id
    elif message.migrate_from_chat_id:
        old, new = message.migrate_from_chat_id, message.chat.id
    else:
        return
    await org.group_moved(
        context.runtime, Recipient(TELEGRAM, str(old)), Recipient(TELEGRAM, str(new))
    )


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    application.add_handler(ChatMemberHandler(membership_changed, ChatMemberHandler.MY_CHAT_MEMBER))
    application.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, migrated))
    command(application, "bind", bind)
    command(application, "unbind", unbind)
