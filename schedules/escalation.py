"""Escalate reports that nobody acknowledged in time (急报超时未确认 → 带班领导 and admins).

Deadlines live on the report rows, so this job only asks the database what is due: a restart
neither loses an escalation nor sends one twice.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from telegram.ext import ContextTypes, JobQueue

from bot.logs import log_event
from bot.runtime import Runtime
from bot.services import reports

logger = logging.getLogger(__name__)
# Urgent reports must be acknowledged within minutes: look twice a minute.
EVERY = timedelta(seconds=30)


async def run(runtime: Runtime) -> list[reports.Report]:
    """Escalate whatever is due at ``runtime.now()`` (tests move the clock and call this)."""
    escalated = await reports.escalate_due(runtime)
    for report in escalated:
        log_event(logger, "report_escalated", ref=report.ref, severity=report.severity)
    return escalated


def plan(job_queue: JobQueue[Any], runtime: Runtime) -> None:
    async def job(_context: ContextTypes.DEFAULT_TYPE) -> None:
        await run(runtime)

    job_queue.run_repeating(job, interval=EVERY, first=1, name="report_escalation")
