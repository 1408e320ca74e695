"""The command registry: which commands exist, who may use them and where.

/help and the Telegram command menus are built from it. It only decides what to *show*:
every service checks roles and scope again on the server side.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeAllChatAdministrators,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeChat,
    Update,
)
from telegram.error import TelegramError
from telegram.ext import Application, CommandHandler, filters

from bot.errors import WrongChat
from bot.logs import log_event
from bot.render import LOCALES, Renderer
from bot.runtime import Runtime
from bot.services import compliance, drills, org
from bot.services.models import Actor, Role
from handlers.common import is_private
from handlers.context import BotContext

logger = logging.getLogger(__name__)

PRIVATE = "private"
GROUP = "group"
Callback = Callable[[Update, BotContext], Awaitable[None]]


@dataclass(frozen=True)
class CommandSpec:
    """A command: its name, where it works, and which roles it is for (None: everyone)."""

    name: str
    where: frozenset[str]
    roles: frozenset[Role] | None = None

    def allowed(self, actor: Actor | None) -> bool:
        if self.roles is None:
            return True
        return actor is not None and any(actor.has_role(role) for role in self.roles)

    def describe(self, renderer: Renderer, locale: str) -> str:
        return renderer.render(locale, f"help/commands/{self.name}.j2")


ADMINS = frozenset({Role.ADMIN})
HANDLERS = frozenset({Role.OFFICER, Role.ADMIN})
ENROLLED = frozenset(Role)
# The people a duty roster names, and the admins who load it.
ON_DUTY = frozenset({Role.ADMIN, Role.OFFICER, Role.GUARD, Role.LEADER})
# Who walks patrol rounds, and who watches them.
PATROLLING = frozenset({Role.GUARD, Role.OFFICER, Role.ADMIN})
# Who walks inspection checklists.
INSPECTING = frozenset({Role.GUARD, Role.OFFICER, Role.ADMIN, Role.UNIT_HEAD})
# Who reports hazards, and who follows the ledger (unit heads see what they must rectify).
REPORTING_HAZARDS = frozenset(
    {Role.GUARD, Role.OFFICER, Role.ADMIN, Role.UNIT_HEAD, Role.INFORMANT}
)
HAZARD_VIEWERS = REPORTING_HAZARDS | {Role.LEADER}
BOTH = frozenset({PRIVATE, GROUP})
COMMANDS: list[CommandSpec] = [
    CommandSpec("start", frozenset({PRIVATE})),
    CommandSpec("help", BOTH),
    CommandSpec("whoami", frozenset({PRIVATE})),
    CommandSpec("language", frozenset({PRIVATE})),
    CommandSpec("invite", frozenset({PRIVATE}), ADMINS),
    CommandSpec("invites", frozenset({PRIVATE}), ADMINS),
    CommandSpec("people", frozenset({PRIVATE}), ADMINS),
    CommandSpec("revoke", frozenset({PRIVATE}), ADMINS),
    CommandSpec("report", frozenset({PRIVATE}), ENROLLED),
    CommandSpec("myreports", frozenset({PRIVATE}), ENROLLED),
    CommandSpec("reports", frozenset({PRIVATE}), HANDLERS),
    CommandSpec("cancel", frozenset({PRIVATE}), ENROLLED),
    CommandSpec("allclear", frozenset({PRIVATE}), frozenset({Role.INFORMANT})),
    # Private only: who is on duty and the handover notes are not for a class group.
    CommandSpec("duty", frozenset({PRIVATE}), ON_DUTY),
    CommandSpec("handover", frozenset({PRIVATE}), ON_DUTY),
    CommandSpec("checkpoint", frozenset({PRIVATE}), ADMINS),
    CommandSpec("checkpoints", frozenset({PRIVATE}), ADMINS),
    CommandSpec("route", frozenset({PRIVATE}), ADMINS),
    CommandSpec("routes", frozenset({PRIVATE}), PATROLLING),
    CommandSpec("round", frozenset({PRIVATE}), PATROLLING),
    CommandSpec("patrols", frozenset({PRIVATE}), HANDLERS),
    CommandSpec("inspect", frozenset({PRIVATE}), INSPECTING),
    CommandSpec("checklists", frozenset({PRIVATE}), INSPECTING),
    CommandSpec("hazard", frozenset({PRIVATE}), REPORTING_HAZARDS),
    CommandSpec("hazards", frozenset({PRIVATE}), HAZARD_VIEWERS),
    CommandSpec("reminders", frozenset({PRIVATE}), ADMINS),
    CommandSpec("remind", frozenset({PRIVATE}), ADMINS),
    CommandSpec("drill", frozenset({PRIVATE}), frozenset(drills.ORGANISERS)),
    CommandSpec("drills", frozenset({PRIVATE}), frozenset(drills.VIEWERS)),
    CommandSpec("compliance", frozenset({PRIVATE}), frozenset(compliance.WATCHERS)),
    CommandSpec("alert", frozenset({PRIVATE}), ADMINS),
    CommandSpec("bind", frozenset({GROUP}), ADMINS),
    CommandSpec("unbind", frozenset({GROUP}), ADMINS),
]
SPECS = {spec.name: spec for spec in COMMANDS}


def available(actor: Actor | None, where: str) -> list[CommandSpec]:
    """The commands ``actor`` may use in a chat of kind ``where``, in menu order."""
    return [spec for spec in COMMANDS if where in spec.where and spec.allowed(actor)]


def command(
    application: Application[Any, Any, Any, Any, Any, Any], name: str, callback: Callback
) -> None:
    """Register ``callback`` for command ``name``; used in the wrong kind of chat, the
    command answers where it belongs instead of acting."""
    spec = SPECS[name]

    async def guarded(update: Update, context: BotContext) -> None:
        where = PRIVATE if is_private(update) else GROUP
        if where not in spec.where:
            raise WrongChat(command=name, where=next(iter(spec.where)), bot=context.bot.username)
        await callback(update, context)

    # Only new messages: editing an old /invite must not make a second invitation.
    application.add_handler(CommandHandler(name, guarded, filters=filters.UpdateType.MESSAGE))


def _bot_commands(specs: list[CommandSpec], renderer: Renderer, locale: str) -> list[BotCommand]:
    return [BotCommand(spec.name, spec.describe(renderer, locale)) for spec in specs]


async def publish_command_menus(bot: Bot, runtime: Runtime) -> None:
    """Register the command menus with Telegram: for everyone in private chats and groups and
    for group administrators, per language."""
    renderer = runtime.renderer
    everyone_private = available(None, PRIVATE)
    everyone_group = available(None, GROUP)
    group_admins = [spec for spec in COMMANDS if GROUP in spec.where]
    for language, locale in [(None, runtime.settings.locale), *((lc[:2], lc) for lc in LOCALES)]:
        scopes = [
            (BotCommandScopeAllPrivateChats(), everyone_private),
            (BotCommandScopeAllGroupChats(), everyone_group),
            (BotCommandScopeAllChatAdministrators(), group_admins),
        ]
        for scope, specs in scopes:
            await bot.set_my_commands(
                _bot_commands(specs, renderer, locale), scope=scope, language_code=language
            )


async def publish_personal_menus(bot: Bot, runtime: Runtime) -> None:
    """Refresh every enrolled person's menu: one call each, so run it in the background."""
    for actor in await org.enrolled_people(runtime):
        await publish_personal_menu(bot, runtime, actor)


async def publish_personal_menu(bot: Bot, runtime: Runtime, actor: Actor) -> None:
    """Show a person the private commands their roles allow, in their language."""
    if not actor.person.started:
        return
    specs = available(actor, PRIVATE)
    scope = BotCommandScopeChat(actor.person.telegram_id)
    try:
        await bot.set_my_commands(_bot_commands(specs, runtime.renderer, actor.locale), scope=scope)
    except TelegramError as exc:
        # A menu is a convenience: a person who blocked the bot must not stop the start-up.
        log_event(logger, "menu_not_set", logging.WARNING, person=actor.person.id, error=str(exc))
