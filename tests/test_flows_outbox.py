"""Durable delivery through the whole application: notifications survive a Telegram outage
and a restart of the bot, and each arrives exactly once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select

from bot.runtime import build_runtime
from bot.store.tables import outbox
from tests.fakebotapi import FakeBotAPI
from tests.harness import bot_settings, running_bot
from tests.support import SUPERADMIN_ID

STUDENTS = 5


async def test_notifications_survive_an_outage_and_a_restart(
    tmp_path: Path, fake_telegram: FakeBotAPI
) -> None:
    settings = bot_settings(tmp_path, fake_telegram)
    boss = fake_telegram.user(SUPERADMIN_ID, "王处长", username="boss")
    students = [fake_telegram.user(300 + n, f"学生{n}") for n in range(STUDENTS)]

    async with running_bot(settings):
        await boss.send("/start")
        await fake_telegram.next_message(boss.id)
        await boss.send(f"/invite informant 信息学院/计科2201 {STUDENTS}")
        invitation = await fake_telegram.next_message(boss.id)
        payload = (invitation.visible_text or "").split("start=")[1].split()[0]

        fake_telegram.fail("sendMessage", status=502)  # Telegram is down from now on
        for student in students:
            update = await student.send(f"/start {payload}")
            await fake_telegram.wait_delivered(update)
        # The joins are committed (the service acknowledges only after commit) and the five
        # notices to the inviter wait in the outbox while every attempt fails.
        await fake_telegram.wait_until(
            lambda: (
                sum(1 for c in fake_telegram.calls if c.chat_id == boss.id and c.status == 502) >= 2
            ),
            what="the sender retrying during the outage",
        )
    # The bot was stopped (a restart) with the notices still undelivered.
    rt = build_runtime(settings)
    async with rt.db.read() as conn:
        pending = (await conn.execute(select(outbox.c.status))).scalars().all()
    await rt.db.close()
    assert pending.count("pending") == STUDENTS

    async with running_bot(settings):
        await asyncio.sleep(0.3)  # still down for a moment after the restart
        fake_telegram.heal()
        await fake_telegram.wait_until(
            lambda: len(_notices(fake_telegram, boss.id)) >= STUDENTS, what="all notices"
        )
        await asyncio.sleep(0.5)  # anything sent twice would show up here

    texts = [c.visible_text or "" for c in _notices(fake_telegram, boss.id)]
    assert len(texts) == STUDENTS
    for n in range(STUDENTS):
        assert sum(f"学生{n} " in text for text in texts) == 1, texts
    rt = build_runtime(settings)
    async with rt.db.read() as conn:
        statuses = (await conn.execute(select(outbox.c.status))).scalars().all()
    await rt.db.close()
    assert statuses == ["sent"] * STUDENTS


def _notices(telegram: FakeBotAPI, chat_id: int) -> list:
    return [c for c in telegram.sent_messages(chat_id) if "通过你的邀请" in (c.visible_text or "")]
