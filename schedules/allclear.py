"""The all-clear cycle (零报告): every minute, look in the database for due work — a closed
period to summarise, the current period to start watching, silent informants to remind.

Nothing is held in memory, so the first pass after a start-up catches up on a close that was
missed while the bot was down, and a second timer or a restart never sends anything twice.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from telegram.ext import ContextTypes, JobQueue

from bot.runtime import Runtime
from bot.services import allclear

EVERY = timedelta(minutes=1)


async def run(runtime: Runtime) -> allclear.Progress:
    """One pass at ``runtime.now()`` (tests move the runtime's clock and call this directly)."""
    return await allclear.run_due(runtime)


def plan(job_queue: JobQueue[Any], runtime: Runtime) -> None:
    """A pass at start-up, then one a minute."""

    async def job(_context: ContextTypes.DEFAULT_TYPE) -> None:
        await run(runtime)

    # One pass at start-up catches up on a close missed while the bot was down. No misfire
    # limit: APScheduler would otherwise drop it if the scheduler starts a second late.
    job_queue.run_once(
        job, when=0, name="allclear_startup", job_kwargs={"misfire_grace_time": None}
    )
    job_queue.run_repeating(job, interval=EVERY, name="allclear")
