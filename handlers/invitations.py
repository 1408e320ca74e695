"""/invite and /invites: links and QR codes that enrol people in a role."""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.constants import ParseMode
from telegram.ext import Application, CallbackQueryHandler

from bot.errors import StaleButton
from bot.outbox.telegram import inline_keyboard
from bot.qr import qr_png
from bot.services import invitations
from bot.services.invitations import Invitation
from handlers.commands import command
from handlers.common import actor_of, button, popup, pressed, reply, text
from handlers.context import BotContext
from handlers.start import JOIN

REVOKE = "inv:revoke:"
SHOWN_AT_MOST = 10


def join_link(bot_username: str, invitation: Invitation) -> str:
    return f"https://t.me/{bot_username}?start={JOIN}{invitation.token}"


async def invite(update: Update, context: BotContext) -> None:
    actor = await actor_of(update, context)
    request = invitations.parse_invite_args(context.args or [])
    invitation = await invitations.create_invitation(context.runtime, actor, request)
    link = join_link(context.bot.username, invitation)
    revoke_button = button(
        update, context, "invitations/buttons/revoke.j2", f"{REVOKE}{invitation.id}"
    )
    assert update.effective_chat is not None
    await context.bot.send_photo(
        update.effective_chat.id,
        qr_png(link),
        caption=text(update, context, "invitations/created.j2", invitation=invitation, link=link),
        parse_mode=ParseMode.HTML,
        reply_markup=inline_keyboard([[revoke_button]]),
    )


async def list_invitations(update: Update, context: BotContext) -> None:
    actor = await actor_of(update, context)
    found = await invitations.open_invitations(context.runtime, actor)
    shown = found[:SHOWN_AT_MOST]
    buttons = [
        [
            button(
                update,
                context,
                "invitations/buttons/revoke_numbered.j2",
                f"{REVOKE}{inv.id}",
                invitation=inv,
            )
        ]
        for inv in shown
    ]
    await reply(
        update,
        context,
        "invitations/list.j2",
        invitations=shown,
        total=len(found),
        links={inv.id: join_link(context.bot.username, inv) for inv in shown},
        buttons=buttons,
    )


async def revoke_pressed(update: Update, context: BotContext) -> None:
    query, number = pressed(update, REVOKE)
    if not number.isdigit():
        raise StaleButton()
    actor = await actor_of(update, context)
    outcome = await invitations.revoke_invitation(context.runtime, actor, int(number))
    template = (
        "invitations/already_revoked.j2" if outcome.already_revoked else "invitations/revoked.j2"
    )
    said = popup(update, context, template, invitation=outcome.invitation)
    await query.answer(said, show_alert=said is not None)
    await reply(update, context, template, invitation=outcome.invitation)


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    command(application, "invite", invite)
    command(application, "invites", list_invitations)
    application.add_handler(CallbackQueryHandler(revoke_pressed, pattern=f"^{REVOKE}"))
