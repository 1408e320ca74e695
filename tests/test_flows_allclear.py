"""The all-clear cycle (零报告) through the real Application and the fake Telegram server:
/allclear, refusals, the reminder's button (and forged or stale presses), and the summary in
the command group — also when the close fell while the bot was down."""

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
from bot.store.tables import allclear_rounds, allclears
from schedules import allclear as allclear_schedule
from tests.fakebotapi import FakeBotAPI, FakeChat, FakeUser
from tests.harness import alert, bot_settings, bound_group, running_bot
from tests.support import SUPERADMIN_ID, FakeClock

AnyApp = Application[Any, Any, Any, Any, Any, Any]
SHANGHAI = ZoneInfo("Asia/Shanghai")
TUESDAY = datetime(2026, 9, 1, 9, 0, tzinfo=SHANGHAI)
FRIDAY_REMINDER = datetime(2026, 9, 4, 10, 0, tzinfo=SHANGHAI)
NEXT_MONDAY = datetime(2026, 9, 7, 8, 0, tzinfo=SHANGHAI)


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
    a: FakeUser  # informant of 信息学院/计科2201
    b: FakeUser  # informant of 信息学院/计科2202
    command_group: FakeChat


async def say(telegram: FakeBotAPI, user: FakeUser, text: str, chat: Any = None) -> str:
    """``user`` sends ``text``; the visible text of the bot's next message in that chat."""
    await user.send(text, chat)
    return (await telegram.next_message((chat or user.private_chat).id)).visible_text or ""


async def join_as_informant(
    telegram: FakeBotAPI, boss: FakeUser, user: FakeUser, path: str
) -> None:
    await boss.send(f"/invite informant {path}")
    photo = await telegram.next_message(boss.id)
    payload = (photo.visible_text or "").split("?start=")[1].split()[0]
    await say(telegram, user, f"/start {payload}")
    await telegram.next_message(boss.id)  # "… joined" notice to the inviter


async def school(telegram: FakeBotAPI) -> School:
    """Three classes: two with an informant, one bound as a class group without one; and a
    school-wide command group."""
    boss = telegram.user(SUPERADMIN_ID, "王处长", username="boss")
    await say(telegram, boss, "/start")
    a = telegram.user(201, "小李", username="xiaoli")
    b = telegram.user(202, "小王", username="xiaowang")
    await join_as_informant(telegram, boss, a, "信息学院/计科2201")
    await join_as_informant(telegram, boss, b, "信息学院/计科2202")
    command_group = await bound_group(telegram, boss, -700, "值班指挥群", "command")
    await bound_group(telegram, boss, -701, "计科2203班级群", "class 信息学院/计科2203")
    return School(boss=boss, a=a, b=b, command_group=command_group)


async def stored(rt: Runtime, table: Any, *conditions: Any) -> int:
    async with rt.db.read() as conn:
        query = select(func.count()).select_from(table).where(*conditions)
        return (await conn.execute(query)).scalar_one()


async def test_an_informant_sends_the_allclear_and_is_confirmed(
    app: AnyApp, fake_telegram: FakeBotAPI
) -> None:
    s = await school(fake_telegram)
    menu = [c["command"] for c in fake_telegram.commands("chat", chat_id=s.a.id)]
    assert "allclear" in menu
    confirmed = await say(fake_telegram, s.a, "/allclear")
    assert "已收到「信息学院/计科2201」本周的零报告" in confirmed
    assert "09-04（周五）16:00" in confirmed
    again = await say(fake_telegram, s.a, "/allclear")
    assert "已经记录过了" in again
    assert "小李" in again
    in_group = await say(fake_telegram, s.a, "/allclear", s.command_group)
    assert "私聊" in in_group
    assert await stored(runtime_of(app), allclears) == 1


async def test_a_non_informant_is_refused_and_nothing_is_stored(
    app: AnyApp, fake_telegram: FakeBotAPI
) -> None:
    s = await school(fake_telegram)
    guest = fake_telegram.user(299, "访客")
    for person in (guest, s.boss):
        refused = await say(fake_telegram, person, "/allclear")
        assert "零报告由各班的信息员发送" in refused
    english = fake_telegram.user(298, "Visitor", language_code="en")
    assert "informant" in await say(fake_telegram, english, "/allclear")
    assert await stored(runtime_of(app), allclears) == 0


async def test_the_reminder_button_records_it_and_forged_or_stale_presses_change_nothing(
    app: AnyApp, fake_telegram: FakeBotAPI, clock: FakeClock
) -> None:
    s = await school(fake_telegram)
    rt = runtime_of(app)
    clock.current = FRIDAY_REMINDER.astimezone(UTC)
    assert (await allclear_schedule.run(rt)).reminded == 2
    reminder_a = await fake_telegram.next_message(s.a.id)
    reminder_b = await fake_telegram.next_message(s.b.id)
    assert "「信息学院/计科2201」本周还没有报告" in (reminder_a.visible_text or "")
    own = reminder_a.button_data("本周无异常")
    others = reminder_b.button_data("本周无异常")

    await s.a.click(reminder_a, others)  # forged: B's class, pressed by A
    await alert(fake_telegram, "零报告由各班的信息员发送")
    for forged in ("ac:x:weekly-2026-09-04", "ac:1:garbage", "ac:"):
        await s.a.click(reminder_a, forged)
        await alert(fake_telegram, "失效")
    assert await stored(rt, allclears) == 0

    await s.a.click(reminder_a, own)
    edited = await fake_telegram.wait_for(lambda c: c.method == "editMessageText")
    assert "已收到「信息学院/计科2201」本周的零报告" in (edited.visible_text or "")
    assert edited.buttons == []  # the button goes with the reminder it replaced
    await s.a.click(reminder_a, own)
    await alert(fake_telegram, "已经记录过了")
    assert await stored(rt, allclears) == 1

    clock.current = NEXT_MONDAY.astimezone(UTC)
    await s.b.click(reminder_b, others)  # pressed after the close
    await alert(fake_telegram, "已经截止")
    assert await stored(rt, allclears) == 1
    await fake_telegram.no_message(s.a.id)


async def test_the_command_group_gets_the_summary_even_when_the_close_fell_while_down(
    tmp_path: Path, fake_telegram: FakeBotAPI, clock: FakeClock
) -> None:
    settings = bot_settings(tmp_path, fake_telegram)
    async with running_bot(settings, clock=clock) as application:
        s = await school(fake_telegram)
        await say(fake_telegram, s.a, "/allclear")
        rt = runtime_of(application)
        # The start-up pass began watching this week; another pass changes nothing.
        await allclear_schedule.run(rt)
        assert await stored(rt, allclear_rounds, allclear_rounds.c.step == "watched") == 1

    clock.current = NEXT_MONDAY.astimezone(UTC)  # Friday's close passed while the bot was off
    async with running_bot(settings, clock=clock) as application:
        summary = await fake_telegram.next_message(s.command_group.id)
        text = summary.visible_text or ""
        assert "零报告汇总" in text
        assert "全校共 3 个班级：1 个已报告，1 个未报告，1 个没有信息员。" in text
        assert "信息学院/计科2202" in text
        assert "信息学院/计科2203" in text
        assert (await allclear_schedule.run(runtime_of(application))).summarised == []
        await fake_telegram.no_message(s.command_group.id)
