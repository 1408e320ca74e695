"""Telegram in and out: parse an Update, call one service, render the reply. Thin.

One module per capability; ``register`` adds them all to the Application in order.
"""

from __future__ import annotations

from typing import Any

from telegram.ext import Application

from handlers import (
    allclear,
    duty,
    errors,
    fallback,
    groups,
    help,
    invitations,
    patrols,
    people,
    prompts,
    report_actions,
    reports,
    start,
)
from handlers.commands import publish_command_menus, publish_personal_menus

__all__ = ["publish_command_menus", "publish_personal_menus", "register"]


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Add every handler; the fallback goes last so it only sees what nothing else took."""
    for module in (
        prompts,
        reports,
        report_actions,
        allclear,
        duty,
        patrols,
        start,
        help,
        people,
        invitations,
        groups,
        fallback,
        errors,
    ):
        module.register(application)
