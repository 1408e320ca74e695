"""The clock is injected so that tests can move time; everything stored is UTC."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The real clock: an aware datetime in UTC."""
    return datetime.now(UTC)
