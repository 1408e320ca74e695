"""Closing patrol rounds: every minute, summarise each route window that has ended.

The database says which windows were already summarised (a unique key per route and window),
so the pass at start-up reports a window that ended while the bot was down, and a restart or a
second timer never reports one twice. A window closes only patrols.CLOSE_GRACE after its end.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from telegram.ext import ContextTypes, JobQueue

from bot.runtime import Runtime
from bot.services import patrols
from bot.services.patrols import RoundView

EVERY = timedelta(minutes=1)
# The start-up pass waits for the backlog of updates Telegram kept while the bot was down: a
# check-in sent before a window's end must be recorded before that window is summarised.
STARTUP_DELAY = timedelta(seconds=30)


async def run(runtime: Runtime) -> list[RoundView]:
    """One pass at ``runtime.now()`` (tests move the runtime's clock and call this directly)."""
    return await patrols.run_due(runtime)


def plan(job_queue: JobQueue[Any], runtime: Runtime) -> None:
    """A pass shortly after start-up, then one a minute."""

    async def job(_context: ContextTypes.DEFAULT_TYPE) -> None:
        await run(runtime)

    # No misfire limit: the start-up pass must not be dropped if the scheduler starts late.
    job_queue.run_once(
        job, when=STARTUP_DELAY, name="patrols_startup", job_kwargs={"misfire_grace_time": None}
    )
    job_queue.run_repeating(job, interval=EVERY, name="patrols")
