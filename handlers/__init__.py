"""Telegram in and out: parse an Update, call one service, render the reply. Thin.

One module per capability; ``register`` adds them all to the Application in order.
"""

from __future__ import annotations

from typing import Any

from telegram.ext import Application

from handlers import (
    allclear,
    compliance,
    drills,
    duty,
    errors,
    fallback,
    flows,
    groups,
    hazard_actions,
    hazards,
    help,
    inspections,
    invitations,
    patrols,
    people,
    prompts,
    remind,
    reminders,
    report_actions,
    reports,
    special_periods,
    start,
)
from handlers.commands import publish_command_menus, publish_personal_menus

__all__ = ["publish_command_menus", "publish_personal_menus", "register"]


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Add every handler; the fallback goes last so it only sees what nothing else took."""
    for module in (
        flows,
        prompts,
        hazards,  # its flow's /cancel before the reports' "nothing to cancel"
        hazard_actions,
        drills,  # its flow's /cancel before the reports' too
        remind,  # and this one's
        reports,
        report_actions,
        allclear,
        reminders,
        compliance,
        inspections,  # its checklist files before the roster's catch-all for files
        duty,
        patrols,
        start,
        help,
        people,
        invitations,
        groups,
        special_periods,
        fallback,
        errors,
    ):
        module.register(application)
