"""Reminder rules (提醒): every minute, look in the database for occurrences whose time has come
and follow-ups that are due. Nothing is held in memory, so the start-up pass sends what fell
due while the bot was down (within the grace period; older ones are recorded as missed), and a
second timer or a restart never sends anything twice."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from telegram.ext import ContextTypes, JobQueue

from bot.runtime import Runtime
from bot.services import reminders

EVERY = timedelta(minutes=1)


async def run(runtime: Runtime) -> reminders.Progress:
    """One pass at ``runtime.now()`` (tests move the runtime's clock and call this directly)."""
    return await reminders.run_due(runtime)


def plan(job_queue: JobQueue[Any], runtime: Runtime) -> None:
    """A pass at start-up, then one a minute."""

    async def job(_context: ContextTypes.DEFAULT_TYPE) -> None:
        await run(runtime)

    job_queue.run_once(
        job, when=0, name="reminders_startup", job_kwargs={"misfire_grace_time": None}
    )
    job_queue.run_repeating(job, interval=EVERY, name="reminders")
