"""Time-driven work, planned from the database at start-up (through PTB's JobQueue)."""

from __future__ import annotations

from typing import Any

from telegram.ext import Application

from bot.runtime import Runtime
from schedules import (
    allclear,
    duty,
    escalation,
    hazards,
    outbox_housekeeping,
    patrols,
    reminders,
    special_periods,
)


async def plan(application: Application[Any, Any, Any, Any, Any, Any], runtime: Runtime) -> None:
    """(Re-)plan every scheduled job. Called once the database is migrated."""
    job_queue = application.job_queue
    assert job_queue is not None, "install python-telegram-bot[job-queue]"
    outbox_housekeeping.plan(job_queue, runtime)
    allclear.plan(job_queue, runtime)
    escalation.plan(job_queue, runtime)
    duty.plan(job_queue, runtime)
    patrols.plan(job_queue, runtime)
    hazards.plan(job_queue, runtime)
    reminders.plan(job_queue, runtime)
    special_periods.plan(job_queue, runtime)
