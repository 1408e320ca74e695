"""Special periods (重点时段) through the real Application and the fake Telegram server: an admin
declares one with /alert, the duty, guard team and class groups hear of its start once, the
reminder tied to its level reaches the class groups only inside it, an informant and forged
buttons change nothing, and "end now" ends it once with one notice to each group."""

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
from bot.store.tables import special_periods
from schedules import reminders as reminders_schedule
from schedules import special_periods as special_periods_schedule
from tests.fakebotapi import FakeBotAPI, FakeChat, FakeUser
from tests.harness import alert, bot_settings, bound_group, next_reply, running_bot
from tests.support import SUPERADMIN_ID, FakeClock, enrol, profile

AnyApp = Application[Any, Any, Any, Any, Any, Any]
SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY = datetime(2026, 9, 28, 8, 0, tzinfo=SHANGHAI)
PLAN = """
- name: 节日巡查
  text: "{date} 节日期间请加强巡查"
  schedule: daily
  at: "09:00"
  purpose: class
  alert_level: 2
"""


def local(day: int, hour: int, minute: int = 0, month: int = 9) -> datetime:
    return datetime(2026, month, day, hour, minute, 30, tzinfo=SHANGHAI).astimezone(UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(MONDAY.astimezone(UTC))


@pytest.fixture
async def app(tmp_path: Path, fake_telegram: FakeBotAPI, clock: FakeClock) -> AsyncIterator[AnyApp]:
    async with running_bot(bot_settings(tmp_path, fake_telegram), clock=clock) as application:
        yield application


@dataclass
class School:
    boss: FakeUser
    informant: FakeUser
    groups: list[FakeChat]  # two class groups and the guard team's


async def school(telegram: FakeBotAPI, rt: Runtime) -> School:
    boss = telegram.user(SUPERADMIN_ID, "王处长", username="boss")
    await next_reply(telegram, boss, "/start")
    groups = [
        await bound_group(telegram, boss, -801, "计科2201班级群", "class 信息学院/计科2201"),
        await bound_group(telegram, boss, -802, "计科2202班级群", "class 信息学院/计科2202"),
        await bound_group(telegram, boss, -803, "保安队", "staff"),
    ]
    actor = await org.identify(rt, profile(SUPERADMIN_ID, "王处长", "boss"), private=True)
    await enrol(rt, actor, 201, "informant", "信息学院/计科2201")
    await telegram.next_message(boss.id)  # "user201 joined as an informant"
    await reminders.import_plan(rt, actor, PLAN.encode())
    informant = telegram.user(201, "小李", username="u201")
    return School(boss=boss, informant=informant, groups=groups)


async def periods(rt: Runtime, *conditions: Any) -> int:
    async with rt.db.read() as conn:
        query = select(func.count()).select_from(special_periods).where(*conditions)
        return (await conn.execute(query)).scalar_one()


async def nothing_to(telegram: FakeBotAPI, groups: list[FakeChat]) -> None:
    """No group got a message (the announcements and reminders so far were all taken)."""
    for group in groups:
        await telegram.no_message(group.id)


async def test_an_admin_declares_the_groups_hear_it_once_and_the_level_reminder_runs_inside(
    app: AnyApp, fake_telegram: FakeBotAPI, clock: FakeClock
) -> None:
    rt = runtime_of(app)
    s = await school(fake_telegram, rt)
    classes = s.groups[:2]

    refused = await next_reply(fake_telegram, s.boss, "/alert 2 2026-02-30 国庆假期")
    assert "没有登记" in (refused.visible_text or "")
    assert "日期" in (refused.visible_text or "")
    assert await periods(rt) == 0

    declared = await next_reply(fake_telegram, s.boss, "/alert 2 2026-09-30 2026-10-01 国庆假期")
    text = declared.visible_text or ""
    assert "已登记二级防控：国庆假期（2026-09-30 至 2026-10-01）" in text
    assert "即将开始" in text
    assert declared.button_data("取消").startswith("alr:end:")
    await nothing_to(fake_telegram, s.groups)  # it has not started yet

    clock.current = local(29, 9)
    assert (await reminders_schedule.run(rt)).sent == []  # the day before: silent
    assert (await special_periods_schedule.run(rt)).started == []
    await nothing_to(fake_telegram, s.groups)

    clock.current = local(30, 0)
    assert len((await special_periods_schedule.run(rt)).started) == 1
    for group in s.groups:
        notice = (await fake_telegram.next_message(group.id)).visible_text or ""
        assert "启动二级防控：国庆假期" in notice
        assert "节日巡查" in notice
    assert (await special_periods_schedule.run(rt)).started == []
    await nothing_to(fake_telegram, s.groups)

    clock.current = local(30, 9)
    assert len((await reminders_schedule.run(rt)).sent) == 1
    for group in classes:
        reminder = await fake_telegram.next_message(group.id)
        assert "2026-09-30 节日期间请加强巡查" in (reminder.visible_text or "")

    clock.current = local(2, 0, month=10)
    assert len((await special_periods_schedule.run(rt)).ended) == 1
    for group in s.groups:
        notice = (await fake_telegram.next_message(group.id)).visible_text or ""
        assert "二级防控结束：国庆假期" in notice
        assert "恢复日常防控" in notice
    clock.current = local(2, 9, month=10)
    assert (await reminders_schedule.run(rt)).sent == []
    assert (await special_periods_schedule.run(rt)).ended == []
    await nothing_to(fake_telegram, s.groups)


async def test_an_informant_and_forged_buttons_change_nothing_and_end_now_ends_it_once(
    app: AnyApp, fake_telegram: FakeBotAPI, clock: FakeClock
) -> None:
    rt = runtime_of(app)
    s = await school(fake_telegram, rt)

    for words in ("/alert", "/alert 1 2026-09-28 演练"):
        refused = await next_reply(fake_telegram, s.informant, words)
        assert "没有权限" in (refused.visible_text or "")
    assert await periods(rt) == 0
    await nothing_to(fake_telegram, s.groups)

    declared = await next_reply(
        fake_telegram, s.boss, "/alert 1 2026-09-28 2026-09-29 重大活动安保"
    )
    assert "现已生效" in (declared.visible_text or "")
    for group in s.groups:  # in force already: announced at once
        notice = (await fake_telegram.next_message(group.id)).visible_text or ""
        assert "启动一级防控：重大活动安保" in notice
    listing = await next_reply(fake_telegram, s.boss, "/alert")
    assert "当前：🚨 一级防控" in (listing.visible_text or "")
    end = listing.button_data("立即结束")

    await s.informant.click(refused, end)  # a real button's data, pressed by an informant
    await alert(fake_telegram, "没有权限")
    for forged in ("alr:end:999", "alr:end:x", "alr:"):
        await s.boss.click(listing, forged)
        await alert(fake_telegram, "结束或不存在" if forged.endswith("999") else "失效")
    assert await periods(rt, special_periods.c.ended_at.is_not(None)) == 0
    await nothing_to(fake_telegram, s.groups)

    clock.current = local(28, 15)
    await s.boss.click(listing, end)
    await alert(fake_telegram, "已提前结束")
    edited = await fake_telegram.wait_for(lambda c: c.method == "editMessageText" and c.ok)
    fake_telegram.calls.remove(edited)
    assert "当前：日常防控" in (edited.visible_text or "")
    assert "提前结束" in (edited.visible_text or "")
    for group in s.groups:
        notice = (await fake_telegram.next_message(group.id)).visible_text or ""
        assert "一级防控结束：重大活动安保" in notice
        assert "提前结束" in notice

    await s.boss.click(listing, end)  # the same button again: the current state, no notice
    await alert(fake_telegram, "结束或不存在")
    assert (await special_periods_schedule.run(rt)).ended == []
    await nothing_to(fake_telegram, s.groups)
    assert await periods(rt, special_periods.c.ended_at.is_not(None)) == 1
