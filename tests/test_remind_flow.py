"""/remind through the real Application and the fake Telegram server: an admin makes a weekly
reminder step by step, sees its next five due times, saves it, and it reaches the class groups;
impossible dates, a cron line that never fires, a unit without such groups, a taken name,
outsiders and forged buttons are all refused with nothing saved."""

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
from bot.runtime import Runtime
from bot.services import org, reminders
from bot.store.tables import reminder_rules
from schedules import reminders as reminders_schedule
from tests.fakebotapi import Call, FakeBotAPI, FakeChat, FakeUser
from tests.harness import bot_settings, bound_group, running_bot
from tests.support import SUPERADMIN_ID, FakeClock, enrol, profile

AnyApp = Application[Any, Any, Any, Any, Any, Any]
SHANGHAI = ZoneInfo("Asia/Shanghai")
TUESDAY = datetime(2026, 9, 1, 7, 30, tzinfo=SHANGHAI)
TEXT = "消防通道检查\n请于 {date} {time} 前检查消防通道（{weekday}）"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(TUESDAY.astimezone(UTC))


@pytest.fixture
async def app(tmp_path: Path, fake_telegram: FakeBotAPI, clock: FakeClock) -> AsyncIterator[AnyApp]:
    async with running_bot(bot_settings(tmp_path, fake_telegram), clock=clock) as application:
        yield application


async def _answer(telegram: FakeBotAPI, chat_id: int, since: int) -> Call:
    """The bot's first message sent or edited in ``chat_id`` after call number ``since``."""
    return await telegram.wait_for(
        lambda c: (
            telegram.calls.index(c) >= since
            and c.ok
            and c.method in ("sendMessage", "editMessageText")
            and c.chat_id == chat_id
        )
    )


async def say(
    telegram: FakeBotAPI, user: FakeUser, text: str, chat: FakeChat | None = None
) -> Call:
    since = len(telegram.calls)
    await user.send(text, chat)
    return await _answer(telegram, (chat or user.private_chat).id, since)


async def press(telegram: FakeBotAPI, user: FakeUser, message: Call, label: str) -> Call:
    """Press the button labelled ``label``; the step it leads to."""
    since = len(telegram.calls)
    await user.click(message, message.button_data(label))
    return await _answer(telegram, user.private_chat.id, since)


async def alert(telegram: FakeBotAPI, user: FakeUser, message: Call, data: str) -> str:
    """Press a button with ``data`` (forged or not); the pop-up it answers with."""
    since = len(telegram.calls)
    await user.click(message, data)
    call = await telegram.wait_for(
        lambda c: (
            telegram.calls.index(c) >= since
            and c.method == "answerCallbackQuery"
            and c.params.get("text") is not None
        )
    )
    return str(call.params["text"])


async def stored_rules(rt: Runtime) -> int:
    async with rt.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(reminder_rules))).scalar())


@pytest.fixture
async def school(app: AnyApp, fake_telegram: FakeBotAPI) -> dict[str, Any]:
    """The boss (a superadmin) and two class groups of 信息学院."""
    boss = fake_telegram.user(SUPERADMIN_ID, "王处长", username="boss")
    await say(fake_telegram, boss, "/start")
    group_a = await bound_group(
        fake_telegram, boss, -801, "计科2201班级群", "class 信息学院/计科2201"
    )
    group_b = await bound_group(
        fake_telegram, boss, -802, "计科2202班级群", "class 信息学院/计科2202"
    )
    return {"boss": boss, "group_a": group_a, "group_b": group_b}


async def up_to_the_time(telegram: FakeBotAPI, boss: FakeUser, kind: str) -> Call:
    """/remind, the text, and the kind: the "when?" question."""
    first = await say(telegram, boss, "/remind")
    assert "第 1/7 步" in (first.visible_text or "")
    kinds = await say(telegram, boss, TEXT)
    assert "「消防通道检查」多久提醒一次" in (kinds.visible_text or "")
    return await press(telegram, boss, kinds, kind)


async def test_an_admin_makes_a_weekly_reminder_that_reaches_the_class_groups(
    app: AnyApp, fake_telegram: FakeBotAPI, clock: FakeClock, school: dict[str, Any]
) -> None:
    rt = runtime_of(app)
    boss: FakeUser = school["boss"]
    when = await up_to_the_time(fake_telegram, boss, "每周")
    assert "周一,周五 09:00" in (when.visible_text or "")  # the format hint for weekly
    targets = await say(fake_telegram, boss, "周一,周五 09:00")
    unit = await press(fake_telegram, boss, targets, "班级群")
    assert "哪个范围内的班级群" in (unit.visible_text or "")
    leads = await say(fake_telegram, boss, "信息学院")
    ack = await press(fake_telegram, boss, leads, "到点提醒")
    card = await press(fake_telegram, boss, ack, "需要确认")
    assert "提前：到点" in (card.visible_text or "")

    # "Edit" starts over with what was chosen kept where asked to.
    text = await press(fake_telegram, boss, card, "修改")
    assert "当前内容：\n消防通道检查" in (text.visible_text or "")
    kinds = await press(fake_telegram, boss, text, "保留")
    when = await press(fake_telegram, boss, kinds, "每周")
    assert "当前：每周一、五 09:00" in (when.visible_text or "")
    targets = await press(fake_telegram, boss, when, "保留")
    await press(fake_telegram, boss, targets, "班级群")
    leads = await say(fake_telegram, boss, "信息学院")
    ack = await press(fake_telegram, boss, leads, "提前 1 天")
    back = await press(fake_telegram, boss, ack, "返回")
    ack = await press(fake_telegram, boss, back, "到点提醒")
    card = await press(fake_telegram, boss, ack, "需要确认")

    shown = card.visible_text or ""
    assert "提前：到点" in shown
    assert "时间：每周一、五 09:00" in shown
    assert "对象：信息学院的班级群" in shown
    assert "覆盖：2 个群" in shown
    assert "确认收到：需要" in shown
    assert (
        "接下来 5 次：\n"
        "• 2026-09-04 09:00 周五\n"
        "• 2026-09-07 09:00 周一\n"
        "• 2026-09-11 09:00 周五\n"
        "• 2026-09-14 09:00 周一\n"
        "• 2026-09-18 09:00 周五"
    ) in shown
    assert await stored_rules(rt) == 0  # a preview, nothing saved yet

    saved = await press(fake_telegram, boss, card, "保存")
    assert "已保存提醒「消防通道检查」" in (saved.visible_text or "")
    assert "2026-09-04 09:00" in (saved.visible_text or "")
    assert await stored_rules(rt) == 1
    assert "失效" in await alert(fake_telegram, boss, card, "rmd:save")  # no second save
    assert await stored_rules(rt) == 1

    clock.current = datetime(2026, 9, 3, 9, 0, 30, tzinfo=SHANGHAI).astimezone(UTC)  # Thursday
    assert (await reminders_schedule.run(rt)).sent == []
    clock.current = datetime(2026, 9, 4, 9, 0, 30, tzinfo=SHANGHAI).astimezone(UTC)  # Friday
    assert len((await reminders_schedule.run(rt)).sent) == 1
    for group in (school["group_a"], school["group_b"]):
        reminder = await fake_telegram.next_message(group.id)
        assert "请于 2026-09-04 09:00 前检查消防通道（周五）" in (reminder.visible_text or "")
        assert reminder.button_data("收到").startswith("rk:")
    assert (await reminders_schedule.run(rt)).sent == []


async def test_impossible_times_and_unreachable_targets_are_asked_again_and_nothing_is_saved(
    app: AnyApp, fake_telegram: FakeBotAPI, school: dict[str, Any]
) -> None:
    rt = runtime_of(app)
    boss: FakeUser = school["boss"]
    when = await up_to_the_time(fake_telegram, boss, "一次")
    assert "2026-12-01 09:00" in (when.visible_text or "")
    again = await say(fake_telegram, boss, "2026-02-30 09:00")
    assert "没有这个日期或时间：2026-02-30 09:00" in (again.visible_text or "")
    again = await say(fake_telegram, boss, "2026-08-01 09:00")  # already past
    assert "一年内一次也不会触发" in (again.visible_text or "")

    kinds = await press(fake_telegram, boss, when, "返回")
    cron = await press(fake_telegram, boss, kinds, "cron")
    assert "0 8 * * 1-5" in (cron.visible_text or "")
    never = await say(fake_telegram, boss, "0 0 31 2 *")  # 31 February
    assert "一年内一次也不会触发" in (never.visible_text or "")
    assert "不是 cron 表达式" in (await say(fake_telegram, boss, "0 8 * *")).visible_text
    targets = await say(fake_telegram, boss, "0 8 * * 1-5")
    assert "发给谁" in (targets.visible_text or "")

    unit = await press(fake_telegram, boss, targets, "值班指挥群")
    unknown = await say(fake_telegram, boss, "不存在学院")
    assert "找不到单位「不存在学院」" in (unknown.visible_text or "")
    nobody = await say(fake_telegram, boss, "信息学院")
    assert "信息学院没有任何值班指挥群" in (nobody.visible_text or "")
    assert "没有保存" in (nobody.visible_text or "")
    assert "没有任何值班指挥群" in await alert(fake_telegram, boss, unit, "rmd:unit:school")

    cancelled = await say(fake_telegram, boss, "/cancel")
    assert "已取消" in (cancelled.visible_text or "")
    assert await stored_rules(rt) == 0


async def test_a_taken_name_and_a_bad_variable_are_asked_again(
    app: AnyApp, fake_telegram: FakeBotAPI, school: dict[str, Any]
) -> None:
    rt = runtime_of(app)
    boss: FakeUser = school["boss"]
    actor = await org.identify(rt, profile(SUPERADMIN_ID, "王处长", "boss"), private=True)
    plan = "name: 消防通道检查\ntext: x\nschedule: daily\nat: '09:00'\npurpose: class\n"
    await reminders.import_plan(rt, actor, plan.encode())
    await say(fake_telegram, boss, "/remind")
    taken = await say(fake_telegram, boss, TEXT)
    assert "已经有一条叫「消防通道检查」的提醒" in (taken.visible_text or "")
    bad = await say(fake_telegram, boss, "晨检\n{班级} 请晨检")
    assert "不能用的变量：{班级}" in (bad.visible_text or "")
    kinds = await say(fake_telegram, boss, "晨检\n{date} 请晨检")
    assert "「晨检」多久提醒一次" in (kinds.visible_text or "")
    assert await stored_rules(rt) == 1


async def test_outsiders_are_refused_and_forged_or_stale_buttons_change_nothing(
    app: AnyApp, fake_telegram: FakeBotAPI, school: dict[str, Any]
) -> None:
    rt = runtime_of(app)
    boss: FakeUser = school["boss"]
    group_a: FakeChat = school["group_a"]
    actor = await org.identify(rt, profile(SUPERADMIN_ID, "王处长", "boss"), private=True)
    await enrol(rt, actor, 301, "informant", "信息学院/计科2201")
    informant = fake_telegram.user(301, "user301", username="u301")
    guest = fake_telegram.user(299, "访客")
    for outsider in (informant, guest):
        await say(fake_telegram, outsider, "/start")
        refused = await say(fake_telegram, outsider, "/remind")
        assert "没有权限" in (refused.visible_text or "")
        hint = await say(fake_telegram, outsider, TEXT)  # no flow was started
        assert "多久提醒一次" not in (hint.visible_text or "")
        assert "失效" in await alert(fake_telegram, outsider, refused, "rmd:save")
    in_group = await say(fake_telegram, boss, "/remind", group_a)
    assert "私聊" in (in_group.visible_text or "")

    when = await up_to_the_time(fake_telegram, boss, "每天")
    for forged in ("rmd:kind:hourly", "rmd:save", "rmd:back:5", "rmd:to:p:class", "rmd:"):
        assert "失效" in await alert(fake_telegram, boss, when, forged), forged
    targets = await say(fake_telegram, boss, "09:00")  # the flow is still at "when?"
    for forged in ("rmd:to:p:nobody", "rmd:to:r:superadmin", "rmd:to:x:class"):
        assert "失效" in await alert(fake_telegram, boss, targets, forged), forged
    await press(fake_telegram, boss, targets, "班级群")
    leads = await say(fake_telegram, boss, "信息学院/计科2201")
    assert "失效" in await alert(fake_telegram, boss, leads, "rmd:lead:2h")
    ack = await press(fake_telegram, boss, leads, "提前 1 小时")
    card = await press(fake_telegram, boss, ack, "不用确认")
    assert "覆盖：1 个群" in (card.visible_text or "")
    assert "提前：提前 1 小时" in (card.visible_text or "")

    # The group leaves between the preview and "save": refused, nothing saved, card kept.
    await say(fake_telegram, boss, "/unbind", group_a)
    assert "没有任何班级群" in await alert(fake_telegram, boss, card, "rmd:save")
    assert await stored_rules(rt) == 0
    cancelled = await press(fake_telegram, boss, card, "取消")
    assert "已取消" in (cancelled.visible_text or "")
    assert "失效" in await alert(fake_telegram, boss, card, "rmd:save")
    assert await stored_rules(rt) == 0
