"""Who is who: /whoami, /people, /revoke, and /language."""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import Application, CallbackQueryHandler

from bot.errors import BadArguments, StaleButton
from bot.outbox import Button
from bot.render import LOCALES
from bot.services import org
from handlers.commands import command, publish_personal_menu
from handlers.common import actor_of, button, pressed, reply, show
from handlers.context import BotContext

LANGUAGE = "lang:"
PEOPLE_PAGE = "people:"


async def whoami(update: Update, context: BotContext) -> None:
    actor = await actor_of(update, context)
    await reply(update, context, "people/whoami.j2", actor=actor)


def _people_buttons(
    update: Update, context: BotContext, page: org.PeoplePage
) -> list[list[Button]]:
    row = []
    if page.number > 0:
        row.append(
            button(
                update,
                context,
                "common/buttons/previous.j2",
                f"{PEOPLE_PAGE}{page.unit.id}:{page.number - 1}",
            )
        )
    if page.number + 1 < page.total_pages:
        row.append(
            button(
                update,
                context,
                "common/buttons/next.j2",
                f"{PEOPLE_PAGE}{page.unit.id}:{page.number + 1}",
            )
        )
    return [row] if row else []


async def people(update: Update, context: BotContext) -> None:
    actor = await actor_of(update, context)
    path = " ".join(context.args or [])
    page = await org.people_in(context.runtime, actor, path or None)
    await reply(
        update, context, "people/list.j2", page=page, buttons=_people_buttons(update, context, page)
    )


async def people_page(update: Update, context: BotContext) -> None:
    _, data = pressed(update, PEOPLE_PAGE)
    parts = data.split(":")
    if len(parts) != 2 or not all(part.isdigit() for part in parts):
        raise StaleButton()
    actor = await actor_of(update, context)
    page = await org.people_in(context.runtime, actor, unit_id=int(parts[0]), page=int(parts[1]))
    await show(
        update, context, "people/list.j2", page=page, buttons=_people_buttons(update, context, page)
    )


async def revoke(update: Update, context: BotContext) -> None:
    actor = await actor_of(update, context)
    args = context.args or []
    if len(args) < 2:
        raise BadArguments(usage="people/usage_revoke.j2")
    revocation = await org.revoke_role(
        context.runtime, actor, args[0], args[1], " ".join(args[2:]) or None
    )
    await reply(update, context, "people/revoked.j2", revocation=revocation)
    await publish_personal_menu(context.bot, context.runtime, revocation.remaining)


async def language(update: Update, context: BotContext) -> None:
    await actor_of(update, context)
    buttons = [
        [button(update, context, f"people/buttons/language_{locale}.j2", f"{LANGUAGE}{locale}")]
        for locale in LOCALES
    ]
    await reply(update, context, "people/language_choose.j2", buttons=buttons)


async def language_chosen(update: Update, context: BotContext) -> None:
    _, locale = pressed(update, LANGUAGE)
    if locale not in LOCALES:
        raise StaleButton()
    actor = await actor_of(update, context)
    context.actor = await org.set_locale(context.runtime, actor, locale)
    await show(update, context, "people/language_set.j2")
    await publish_personal_menu(context.bot, context.runtime, context.actor)


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    command(application, "whoami", whoami)
    command(application, "people", people)
    command(application, "revoke", revoke)
    command(application, "language", language)
    application.add_handler(CallbackQueryHandler(language_chosen, pattern=f"^{LANGUAGE}"))
    application.add_handler(CallbackQueryHandler(people_page, pattern=f"^{PEOPLE_PAGE}"))
