"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakebotapi import FakeBotAPI


@pytest.fixture
async def fake_telegram() -> AsyncIterator[FakeBotAPI]:
    """A running fake Telegram Bot API server (see tests/fakebotapi.py)."""
    server = FakeBotAPI()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
