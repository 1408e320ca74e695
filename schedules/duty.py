"""Shift reminders (值班提醒): every minute, look in the database for shift starts not yet
handled; remind their people, or record a start as missed when the bot was down too long.

Nothing is held in memory, so the first pass after a start-up catches up on starts missed while
the bot was down, and a second timer or a restart never reminds anyone twice.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from telegram.ext import ContextTypes, JobQueue

from bot.runtime import Runtime
from bot.services import duty

EVERY = timedelta(minutes=1)


async def run(runtime: Runtime) -> duty.ReminderProgress:
    """One pass at ``runtime.now()`` (tests move the runtime's clock and call this directly)."""
    return await duty.remind_due(runtime)


def plan(job_queue: JobQueue[Any], runtime: Runtime) -> None:
    """A pass at start-up, then one a minute."""

    async def job(_context: ContextTypes.DEFAULT_TYPE) -> None:
        await run(runtime)

    # No misfire limit on the start-up pass: APScheduler would otherwise drop it if the
    # scheduler starts a second late, and a missed start would wait for the next minute's pass.
    job_queue.run_once(job, when=0, name="duty_startup", job_kwargs={"misfire_grace_time": None})
    job_queue.run_repeating(job, interval=EVERY, name="duty")
