"""TelegramTransport + OutboxSender against the fake Bot API: outages, restarts, flood control."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.clock import utc_now
from bot.outbox.queue import Button, OutgoingMessage, Recipient, Status, enqueue
from bot.outbox.sender import OutboxSender, SenderPolicy
from bot.outbox.telegram import TelegramTransport
from bot.settings import Settings
from bot.store import Database, open_database, upgrade
from bot.store.tables import outbox
from tests.fakebotapi import FakeBotAPI

POLICY = SenderPolicy(backoff_base=0.02, backoff_max=0.1, idle_poll=0.2)
GROUP = -1001
USER = 501
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d4944415478da63f8ffff3f0005fe02fea7d6a4280000000049454e44ae426082"
)


@pytest.fixture
async def telegram(fake_telegram: FakeBotAPI) -> FakeBotAPI:
    """The fake server with one group and one user who has started the bot."""
    fake_telegram.group(GROUP, "Safety officers")
    await fake_telegram.user(USER, "Lin").send("/start")
    return fake_telegram


@pytest.fixture
def settings(tmp_path: Path, telegram: FakeBotAPI) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        bot_token=FakeBotAPI.TOKEN,
        api_base_url=telegram.base_url,
        api_file_base_url=telegram.file_base_url,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}",
        data_dir=tmp_path / "data",
    )


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = open_database(settings.database_url)
    await upgrade(database)
    yield database
    await database.close()


async def queue(db: Database, chat_id: int, *texts: str) -> None:
    for text in texts:
        async with db.transaction() as conn:
            recipient = Recipient("telegram", str(chat_id))
            await enqueue(conn, recipient, OutgoingMessage(text=text), topic="t", now=utc_now())


async def rows(db: Database) -> dict[str, Any]:
    async with db.read() as conn:
        result = await conn.execute(select(outbox).order_by(outbox.c.id))
        return {row.payload["text"]: row for row in result}


def delivered(telegram: FakeBotAPI, chat_id: int | None = None) -> list[str | None]:
    return [call.text for call in telegram.sent_messages(chat_id)]


def refused(telegram: FakeBotAPI, status: int) -> int:
    return sum(
        1 for call in telegram.calls if call.method == "sendMessage" and call.status == status
    )


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def new_sender(db: Database, settings: Settings, **kwargs: Any) -> OutboxSender:
    return OutboxSender(
        db, TelegramTransport.create(settings), clock=utc_now, policy=POLICY, **kwargs
    )


async def test_bad_gateway_then_heal_delivers_each_message_once(
    telegram: FakeBotAPI, settings: Settings, db: Database
) -> None:
    telegram.fail("sendMessage", status=502)
    await queue(db, GROUP, "g1", "g2", "g3")
    await queue(db, USER, "u1", "u2")
    sender = new_sender(db, settings)
    await sender.start()
    try:
        await eventually(lambda: refused(telegram, 502) >= 6)
        assert delivered(telegram) == []
        assert {row.status for row in (await rows(db)).values()} == {Status.PENDING}
        assert (await rows(db))["g1"].last_error == "Bad Gateway"

        telegram.heal()
        await eventually(lambda: len(delivered(telegram)) == 5)
        await sender.wait_until_idle(5)
    finally:
        await sender.stop()
    assert delivered(telegram, GROUP) == ["g1", "g2", "g3"]
    assert delivered(telegram, USER) == ["u1", "u2"]
    table = await rows(db)
    assert {row.status for row in table.values()} == {Status.SENT}
    sent_ids = {call.text: str(call.message_id) for call in telegram.sent_messages()}
    assert {text: row.message_ref for text, row in table.items()} == sent_ids


async def test_restart_during_an_outage_then_recovery_delivers_each_message_once(
    telegram: FakeBotAPI, settings: Settings
) -> None:
    telegram.fail(None, status=500)
    first_db = open_database(settings.database_url)
    await upgrade(first_db)
    await queue(first_db, GROUP, "g1", "g2")
    await queue(first_db, USER, "u1")
    first = new_sender(first_db, settings)
    await first.start()
    await eventually(lambda: refused(telegram, 500) >= 4)
    await first.stop()
    await first_db.close()

    second_db = open_database(settings.database_url)  # the restarted process
    second = new_sender(second_db, settings)
    await second.start()
    try:
        failures = refused(telegram, 500)
        await eventually(lambda: refused(telegram, 500) >= failures + 4)
        assert delivered(telegram) == []
        telegram.heal()
        await eventually(lambda: len(delivered(telegram)) == 3)
        await second.wait_until_idle(5)
        await asyncio.sleep(0.2)  # a late duplicate would show up here
    finally:
        await second.stop()
    assert delivered(telegram, GROUP) == ["g1", "g2"]
    assert delivered(telegram, USER) == ["u1"]
    assert {row.status for row in (await rows(second_db)).values()} == {Status.SENT}
    await second_db.close()


# PTB 22's RetryAfter warns about its own future type when it is constructed.
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_flood_control_retry_after_is_honoured(
    telegram: FakeBotAPI, settings: Settings, db: Database
) -> None:
    telegram.rate_limit("sendMessage", retry_after=1)
    await queue(db, USER, "u1", "u2")
    sender = new_sender(db, settings)
    await sender.start()
    try:
        await eventually(lambda: len(delivered(telegram)) == 2)
    finally:
        await sender.stop()
    limited, retried, following = (c for c in telegram.calls if c.method == "sendMessage")
    assert (limited.status, limited.text) == (429, "u1")
    assert (retried.status, retried.text) == (200, "u1")
    assert retried.at - limited.at >= 1.0
    assert following.text == "u2"
    assert telegram.rate_limited == 1


async def test_blocked_user_is_undeliverable_with_the_reason(
    telegram: FakeBotAPI, settings: Settings, db: Database
) -> None:
    telegram.forbid(USER)
    await queue(db, USER, "u1")
    await queue(db, GROUP, "g1")
    sender = new_sender(db, settings)
    await sender.start()
    try:
        await sender.wait_until_idle(5)
        await asyncio.sleep(0.2)  # longer than backoff_max: no retry
    finally:
        await sender.stop()
    blocked = (await rows(db))["u1"]
    assert blocked.status == Status.UNDELIVERABLE
    assert blocked.last_error == "Forbidden: bot was blocked by the user"
    assert refused(telegram, 403) == 1
    assert delivered(telegram) == ["g1"]


async def test_migrated_group_follows_the_supergroup(
    telegram: FakeBotAPI, settings: Settings, db: Database
) -> None:
    supergroup = await telegram.migrate_group(telegram.chat(GROUP), -1009001)
    moves: list[tuple[Recipient, Recipient]] = []

    async def on_moved(old: Recipient, new: Recipient) -> None:
        moves.append((old, new))

    await queue(db, GROUP, "g1", "g2")
    sender = new_sender(db, settings, on_moved=on_moved)
    await sender.start()
    try:
        await sender.wait_until_idle(5)
    finally:
        await sender.stop()
    assert moves == [(Recipient("telegram", str(GROUP)), Recipient("telegram", str(supergroup.id)))]
    assert delivered(telegram, supergroup.id) == ["g1", "g2"]


async def test_photo_buttons_and_long_text(
    telegram: FakeBotAPI, settings: Settings, db: Database
) -> None:
    settings.data_dir.mkdir()
    (settings.data_dir / "hazard.png").write_bytes(PNG)
    buttons = [
        [Button(text="Handle", action="hz:7:take")],
        [Button(text="Map", url="https://x.cn")],
    ]
    long_text = "\n".join(f"<b>{i}</b> " + "x" * 90 for i in range(60))  # ~5.8k characters
    messages = [
        OutgoingMessage(text="<b>Wet floor</b> near lab 3", buttons=buttons, photo="hazard.png"),
        OutgoingMessage(text=long_text, buttons=buttons),
    ]
    async with db.transaction() as conn:
        for message in messages:
            await enqueue(
                conn, Recipient("telegram", str(GROUP)), message, topic="t", now=utc_now()
            )
    sender = new_sender(db, settings)
    await sender.start()
    try:
        await sender.wait_until_idle(10)
    finally:
        await sender.stop()

    photo, first_part, last_part = telegram.sent_messages(GROUP)
    assert photo.method == "sendPhoto"
    assert photo.visible_text == "Wet floor near lab 3"
    assert photo.callback_data == ["hz:7:take"]
    assert first_part.buttons == []
    assert first_part.params["link_preview_options"] == {"is_disabled": True}
    assert f"{first_part.text}\n{last_part.text}" == long_text
    assert last_part.callback_data == ["hz:7:take"]
    assert last_part.buttons[1]["url"] == "https://x.cn"
    table = await rows(db)
    assert table[long_text].message_ref == str(last_part.message_id)
