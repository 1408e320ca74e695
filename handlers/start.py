"""/start: the first contact, and deep links (join-<token> accepts an invitation, cp-<token> is
a checkpoint scan)."""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import Application

from bot.services import invitations
from bot.services.patrols import SCAN_PREFIX
from handlers.commands import PRIVATE, SPECS, available, command, publish_personal_menu
from handlers.common import actor_of, profile_of, reply
from handlers.context import BotContext
from handlers.patrols import scan

JOIN = "join-"


async def start(update: Update, context: BotContext) -> None:
    payload = context.args[0] if context.args else ""
    if payload.startswith(JOIN):
        await _join(update, context, payload.removeprefix(JOIN))
        return
    if payload.startswith(SCAN_PREFIX):
        await scan(update, context, payload.removeprefix(SCAN_PREFIX))
        return
    if payload in SPECS:  # a "continue in private" link from a group
        await reply(update, context, "start/continue.j2", command=payload)
        return
    if payload:
        await reply(update, context, "start/unknown_link.j2")
        return
    actor = await actor_of(update, context)
    template = "start/welcome.j2" if actor.enrolled else "start/not_enrolled.j2"
    await reply(update, context, template, actor=actor, commands=available(actor, PRIVATE))


async def _join(update: Update, context: BotContext, token: str) -> None:
    assert update.effective_user is not None
    enrolment = await invitations.accept_invitation(
        context.runtime, profile_of(update.effective_user), token
    )
    context.actor = enrolment.actor
    await reply(
        update,
        context,
        "invitations/welcome.j2",
        enrolment=enrolment,
        commands=available(enrolment.actor, PRIVATE),
    )
    await publish_personal_menu(context.bot, context.runtime, enrolment.actor)


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    command(application, "start", start)
