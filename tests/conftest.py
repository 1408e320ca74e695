"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.runtime import Runtime
from tests.fakebotapi import FakeBotAPI
from tests.support import FakeClock, make_settings, open_runtime


@pytest.fixture
async def fake_telegram() -> AsyncIterator[FakeBotAPI]:
    """A running fake Telegram Bot API server (see tests/fakebotapi.py)."""
    server = FakeBotAPI()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def clock() -> FakeClock:
    """The time services see; a test moves it with ``clock.advance(...)``."""
    return FakeClock()


@pytest.fixture
async def rt(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Runtime]:
    """A Runtime on a migrated SQLite file in the test's own folder."""
    runtime = await open_runtime(make_settings(tmp_path), clock)
    yield runtime
    await runtime.db.close()
