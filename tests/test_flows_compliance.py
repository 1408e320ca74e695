"""The assessment calendar through the real Application and the fake Telegram server: an admin
loads the "平安校园" preset with the button in an empty /compliance, plans an anti-terror drill
and records it done, and /compliance then shows the quarter's obligation done with the drill's
reference; an officer sees the calendar without the button, an informant is refused, a forged
button loads nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from telegram.ext import Application

from bot.app import runtime_of
from bot.store.tables import obligations
from tests.fakebotapi import FakeBotAPI
from tests.harness import alert, bot_settings, invited, running_bot, say
from tests.support import SUPERADMIN_ID, FakeClock

AnyApp = Application[Any, Any, Any, Any, Any, Any]
SHANGHAI = ZoneInfo("Asia/Shanghai")
PRESET = "cmp:preset:pingan-campus"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).astimezone(UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(at("2026-10-09 08:00"))  # early in the fourth quarter


@pytest.fixture
async def app(tmp_path: Path, fake_telegram: FakeBotAPI, clock: FakeClock) -> AsyncIterator[AnyApp]:
    async with running_bot(bot_settings(tmp_path, fake_telegram), clock=clock) as application:
        yield application


async def stored_obligations(app: AnyApp) -> int:
    async with runtime_of(app).db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(obligations))).scalar_one()


async def test_a_recorded_drill_shows_the_quarter_done_in_compliance(
    app: AnyApp, fake_telegram: FakeBotAPI, clock: FakeClock
) -> None:
    boss = fake_telegram.user(SUPERADMIN_ID, "王处长", username="boss")
    await say(fake_telegram, boss, "/start", "")
    group = fake_telegram.group(-801, "计科2201班级群")
    await fake_telegram.add_bot_to_group(group, boss)
    await boss.send("/bind class 信息学院/计科2201", group)
    officer = fake_telegram.user(202, "张干事", username="zhang")
    informant = fake_telegram.user(201, "小李", username="xiaoli")
    await invited(fake_telegram, boss, officer, "officer")
    await invited(fake_telegram, boss, informant, "informant 信息学院/计科2201")

    await say(fake_telegram, informant, "/compliance", "没有权限")
    empty = await say(fake_telegram, officer, "/compliance", "还没有考评项目")
    assert empty.buttons == []  # only admins may load the preset
    await officer.click(empty, PRESET)  # a button they were never shown
    await alert(fake_telegram, "没有权限")
    calendar = await say(fake_telegram, boss, "/compliance", "还没有考评项目")
    await boss.click(calendar, "cmp:preset:../../etc")
    await alert(fake_telegram, "按钮已失效")
    assert await stored_obligations(app) == 0

    await boss.click(calendar, PRESET)
    loaded = await fake_telegram.wait_for(
        lambda c: c.chat_id == boss.id and "已加载" in (c.visible_text or "")
    )
    assert "考评项目新增 9 项" in (loaded.visible_text or "")
    shown = await say(fake_telegram, boss, "/compliance", "考评日历")
    assert "⏳ <b>反恐防暴演练</b>" in (shown.text or "")
    assert "2026年第4季度：待完成 0/1" in (shown.visible_text or "")

    await say(fake_telegram, boss, "/drill plan anti_terror 2026-10-20 15:00 体育馆", "D-0001")
    clock.current = at("2026-10-20 16:30")
    await say(fake_telegram, boss, "/drill done D-0001", "实际参加人数")
    await say(fake_telegram, boss, "320", "第 2 步")
    await say(fake_telegram, boss, "全校反恐防暴演练，12 分钟完成。", "已登记")

    done = await say(fake_telegram, officer, "/compliance", "考评日历")
    assert "✅ <b>反恐防暴演练</b>" in (done.text or "")
    assert "2026年第4季度：已完成 · D-0001（10-20）" in (done.visible_text or "")
    assert "⏳ <b>矛盾纠纷排查会议</b>" in (done.text or "")  # the other obligations stay due
    assert await stored_obligations(app) == 9
