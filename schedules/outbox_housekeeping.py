"""Every night, forget delivered notifications older than the retention period.

Undeliverable ones are kept: they are the evidence that someone was not reached.
"""

from __future__ import annotations

import logging
from datetime import time, timedelta
from typing import Any

from telegram.ext import ContextTypes, JobQueue

from bot.logs import log_event
from bot.outbox.queue import purge_sent
from bot.runtime import Runtime

logger = logging.getLogger(__name__)
RETENTION = timedelta(days=30)
AT = time(3, 30)  # local time, when the school is quiet


async def run(runtime: Runtime) -> int:
    """Delete sent outbox rows older than RETENTION; returns how many."""
    async with runtime.db.transaction() as conn:
        removed = await purge_sent(conn, before=runtime.now() - RETENTION)
    log_event(logger, "outbox_purged", removed=removed)
    return removed


def plan(job_queue: JobQueue[Any], runtime: Runtime) -> None:
    async def job(_context: ContextTypes.DEFAULT_TYPE) -> None:
        await run(runtime)

    job_queue.run_daily(job, AT.replace(tzinfo=runtime.settings.zone), name="outbox_housekeeping")
