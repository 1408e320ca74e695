"""Reminder rules (提醒) through the real Application and the fake Telegram server: a plan sent
to three class groups once each with a "收到" button, acknowledgement once per person (forged
presses change nothing), two groups acknowledge and only the silent third gets the follow-up
while the creator gets the list, and the admin's /reminders with pause and resume."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from telegram.ext import Application

from bot.app import runtime_of
from bot.runtime import Runtime
from bot.services import org, reminders
from bot.store.tables import reminder_acks, reminder_occurrences, reminder_rules
from schedules import reminders as reminders_schedule
from tests.fakebotapi import FakeBotAPI, FakeChat, FakeUser
from tests.harness import alert, bot_settings, bound_group, next_reply, running_bot
from tests.support import SUPERADMIN_ID, FakeClock, profile

AnyApp = Application[Any, Any, Any, Any, Any, Any]
SHANGHAI = ZoneInfo("Asia/Shanghai")
TUESDAY = datetime(2026, 9, 1, 7, 30, tzinfo=SHANGHAI)
DUE = datetime(2026, 9, 1, 9, 0, 30, tzinfo=SHANGHAI)
PLAN = """
- name: 消防检查
  text: "请于 {date} {time} 前完成消防检查"
  schedule: daily
  at: "09:00"
  leads: [0]
  purpose: class
  unit: 信息学院
  ack: true
  follow_up: 2h
"""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(TUESDAY.astimezone(UTC))


@pytest.fixture
async def app(tmp_path: Path, fake_telegram: FakeBotAPI, clock: FakeClock) -> AsyncIterator[AnyApp]:
    async with running_bot(bot_settings(tmp_path, fake_telegram), clock=clock) as application:
        yield application


@dataclass
class School:
    boss: FakeUser
    a: FakeUser  # a member of class group A
    c: FakeUser  # a member of class group C
    group_a: FakeChat
    group_b: FakeChat
    group_c: FakeChat


async def school(telegram: FakeBotAPI, rt: Runtime) -> School:
    """Three class groups under 信息学院 and the boss's plan (so the boss is its creator)."""
    boss = telegram.user(SUPERADMIN_ID, "王处长", username="boss")
    await next_reply(telegram, boss, "/start")
    group_a = await bound_group(telegram, boss, -801, "计科2201班级群", "class 信息学院/计科2201")
    group_b = await bound_group(telegram, boss, -802, "计科2202班级群", "class 信息学院/计科2202")
    group_c = await bound_group(telegram, boss, -803, "计科2203班级群", "class 信息学院/计科2203")
    a = telegram.user(201, "小李", username="xiaoli")
    c = telegram.user(203, "小王", username="xiaowang")
    actor = await org.identify(rt, profile(SUPERADMIN_ID, "王处长", "boss"), private=True)
    summary = await reminders.import_plan(rt, actor, PLAN.encode())
    assert summary.created == ["消防检查"]
    return School(boss=boss, a=a, c=c, group_a=group_a, group_b=group_b, group_c=group_c)


async def stored(rt: Runtime, table: Any, *conditions: Any) -> int:
    async with rt.db.read() as conn:
        query = select(func.count()).select_from(table).where(*conditions)
        return (await conn.execute(query)).scalar_one()


async def test_each_class_group_gets_it_once_acks_count_once_and_only_the_silent_are_followed_up(
    app: AnyApp, fake_telegram: FakeBotAPI, clock: FakeClock
) -> None:
    rt = runtime_of(app)
    s = await school(fake_telegram, rt)
    assert (await reminders_schedule.run(rt)).sent == []  # 07:30: nothing due yet
    await fake_telegram.no_message(s.group_a.id)

    clock.current = DUE.astimezone(UTC)
    progress = await reminders_schedule.run(rt)
    assert len(progress.sent) == 1
    reminder_a = await fake_telegram.next_message(s.group_a.id)
    reminder_b = await fake_telegram.next_message(s.group_b.id)
    reminder_c = await fake_telegram.next_message(s.group_c.id)
    for reminder in (reminder_a, reminder_b, reminder_c):
        assert "请于 2026-09-01 09:00 前完成消防检查" in (reminder.visible_text or "")
    own = reminder_a.button_data("收到")
    assert own.startswith("rk:")
    assert reminder_b.button_data("收到") == reminder_c.button_data("收到") == own
    assert (await reminders_schedule.run(rt)).sent == []  # a second pass sends nothing
    await fake_telegram.no_message(s.group_a.id)
    await fake_telegram.no_message(s.group_b.id)

    for forged in ("rk:999999", "rk:abc", "rk:"):
        await s.a.click(reminder_a, forged)
        await alert(fake_telegram, "失效")
    assert await stored(rt, reminder_acks) == 0

    await s.a.click(reminder_a, own)
    await alert(fake_telegram, "已确认收到「消防检查」")
    await s.a.click(reminder_a, own)
    await alert(fake_telegram, "你已经确认过了")
    await s.c.click(reminder_c, own)
    await alert(fake_telegram, "已确认收到「消防检查」")
    assert await stored(rt, reminder_acks) == 2

    clock.advance(hours=1)
    assert (await reminders_schedule.run(rt)).followed_up == 0  # not yet: the delay is 2 h
    await fake_telegram.no_message(s.group_b.id)

    clock.advance(hours=1, minutes=1)
    assert (await reminders_schedule.run(rt)).followed_up == 1
    follow_up = await fake_telegram.next_message(s.group_b.id)
    assert "再次提醒" in (follow_up.visible_text or "")
    assert follow_up.button_data("收到") == own
    silent = await fake_telegram.next_message(s.boss.id)  # the creator's list
    text = silent.visible_text or ""
    assert "计科2201班级群：小李" in text
    assert "计科2203班级群：小王" in text
    silent_part = text[text.index("仍未确认") :]
    assert "计科2202班级群" in silent_part
    assert "计科2201" not in silent_part
    assert "计科2203" not in silent_part
    await fake_telegram.no_message(s.group_a.id)
    await fake_telegram.no_message(s.group_c.id)

    again = await reminders_schedule.run(rt)
    assert (again.sent, again.missed, again.followed_up) == ([], [], 0)
    await fake_telegram.no_message(s.group_a.id)
    await fake_telegram.no_message(s.group_b.id)
    await fake_telegram.no_message(s.boss.id)
    assert await stored(rt, reminder_occurrences) == 1


async def test_an_admin_lists_pauses_and_resumes_and_others_are_refused(
    app: AnyApp, fake_telegram: FakeBotAPI, clock: FakeClock
) -> None:
    rt = runtime_of(app)
    s = await school(fake_telegram, rt)

    guest = fake_telegram.user(299, "访客")
    await next_reply(fake_telegram, guest, "/start")
    refused = await next_reply(fake_telegram, guest, "/reminders")
    assert "没有权限" in (refused.visible_text or "")
    assert "消防检查" not in (refused.visible_text or "")

    listing = await next_reply(fake_telegram, s.boss, "/reminders")
    text = listing.visible_text or ""
    assert "消防检查" in text
    assert "2026-09-01 09:00；2026-09-02 09:00；2026-09-03 09:00" in text
    pause = listing.button_data("暂停")

    await guest.click(refused, pause)  # forged by a non-admin: refused, nothing changes
    await alert(fake_telegram, "没有权限")
    assert await stored(rt, reminder_rules, reminder_rules.c.paused.is_(True)) == 0

    await s.boss.click(listing, pause)
    paused = await fake_telegram.wait_for(lambda c: c.method == "editMessageText")
    fake_telegram.calls.remove(paused)
    assert "（已暂停）" in (paused.visible_text or "")
    resume = paused.button_data("恢复")
    assert await stored(rt, reminder_rules, reminder_rules.c.paused.is_(True)) == 1

    clock.current = DUE.astimezone(UTC)  # 09:00 passes while paused
    progress = await reminders_schedule.run(rt)
    assert (progress.sent, progress.missed) == ([], [])
    await fake_telegram.no_message(s.group_a.id)
    await fake_telegram.no_message(s.group_b.id)

    await s.boss.click(listing, resume)
    resumed = await fake_telegram.wait_for(lambda c: c.method == "editMessageText")
    assert "（已暂停）" not in (resumed.visible_text or "")
    assert "2026-09-02 09:00" in (resumed.visible_text or "")
    assert (await reminders_schedule.run(rt)).sent == []  # what fell due while paused stays so
    await fake_telegram.no_message(s.group_a.id)

    clock.current = datetime(2026, 9, 2, 9, 0, 30, tzinfo=SHANGHAI).astimezone(UTC)
    assert len((await reminders_schedule.run(rt)).sent) == 1
    for group in (s.group_a, s.group_b):
        tomorrow = await fake_telegram.next_message(group.id)
        assert "请于 2026-09-02 09:00 前完成消防检查" in (tomorrow.visible_text or "")
