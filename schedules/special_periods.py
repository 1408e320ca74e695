"""Special periods (重点时段): every minute, announce the periods that have started and those that
have ended (at their end or early). The claims are in the database, so the start-up pass
announces what happened while the bot was down, and a second timer or a restart never
announces anything twice. The level-bound reminders need no job of their own: the reminders
pass asks the level at each occurrence."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from telegram.ext import ContextTypes, JobQueue

from bot.runtime import Runtime
from bot.services import special_periods

EVERY = timedelta(minutes=1)


async def run(runtime: Runtime) -> special_periods.Announced:
    """One pass at ``runtime.now()`` (tests move the runtime's clock and call this directly)."""
    return await special_periods.announce_due(runtime)


def plan(job_queue: JobQueue[Any], runtime: Runtime) -> None:
    """A pass at start-up, then one a minute."""

    async def job(_context: ContextTypes.DEFAULT_TYPE) -> None:
        await run(runtime)

    job_queue.run_once(
        job, when=0, name="special_periods_startup", job_kwargs={"misfire_grace_time": None}
    )
    job_queue.run_repeating(job, interval=EVERY, name="special_periods")
