"""Hazard deadlines (限期整改): a reminder to the unit heads a day before the deadline, and once
it has passed an overdue notice to the officers, the leader on duty and the admins, daily until
the hazard is closed.

The due times live on the hazard rows and move in the same transaction as the notices, so a
restart neither loses a notice nor sends one twice.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from telegram.ext import ContextTypes, JobQueue

from bot.logs import log_event
from bot.runtime import Runtime
from bot.services import hazards

logger = logging.getLogger(__name__)
# Deadlines are days apart: looking once a minute is plenty.
EVERY = timedelta(minutes=1)


async def run(runtime: Runtime) -> hazards.DeadlineRun:
    """Send whatever is due at ``runtime.now()`` (tests move the clock and call this)."""
    done = await hazards.run_deadlines(runtime)
    for hazard in done.reminded:
        log_event(logger, "hazard_reminded", ref=hazard.ref)
    for hazard in done.escalated:
        log_event(logger, "hazard_overdue", ref=hazard.ref, count=hazard.escalations)
    return done


def plan(job_queue: JobQueue[Any], runtime: Runtime) -> None:
    async def job(_context: ContextTypes.DEFAULT_TYPE) -> None:
        await run(runtime)

    job_queue.run_repeating(job, interval=EVERY, first=5, name="hazard_deadlines")
