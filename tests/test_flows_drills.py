"""Drills through the real Application and the fake Telegram server: an admin plans an
anti-terror drill with the guided flow, the class groups get the 7-day, 1-day and 1-hour
reminders once each, /drill done records participants, a summary and a photo, /drills shows
it; the quick path, cancelling, and the refusals (an informant, bad input, a group chat); a
training held but never planned recorded after the fact through the same flow, and
/drill record on one line."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from telegram.ext import Application

from bot.app import runtime_of
from bot.services import drills, org
from schedules import reminders as reminders_schedule
from tests.fakebotapi import FakeBotAPI, FakeChat, FakeUser
from tests.harness import bot_settings, bound_group, click, invited, running_bot, say, shown_after
from tests.support import SUPERADMIN_ID, FakeClock, profile

AnyApp = Application[Any, Any, Any, Any, Any, Any]
SHANGHAI = ZoneInfo("Asia/Shanghai")
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


def at(text: str) -> datetime:
    """A local Shanghai time as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).astimezone(UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(at("2026-09-01 07:30"))


@pytest.fixture
async def app(tmp_path: Path, fake_telegram: FakeBotAPI, clock: FakeClock) -> AsyncIterator[AnyApp]:
    async with running_bot(bot_settings(tmp_path, fake_telegram), clock=clock) as application:
        yield application


@pytest.fixture
async def school(app: AnyApp, fake_telegram: FakeBotAPI) -> dict[str, Any]:
    boss = fake_telegram.user(SUPERADMIN_ID, "王处长", username="boss")
    await say(fake_telegram, boss, "/start", "")
    group_a = await bound_group(fake_telegram, boss, -801, "计科2201", "class 信息学院/计科2201")
    group_b = await bound_group(fake_telegram, boss, -802, "计科2202", "class 信息学院/计科2202")
    informant = fake_telegram.user(201, "小李", username="xiaoli")
    await invited(fake_telegram, boss, informant, "informant 信息学院/计科2201")
    return {"boss": boss, "a": group_a, "b": group_b, "informant": informant}


async def reminders_at(app: AnyApp, clock: FakeClock, local: str) -> int:
    """Run the reminders job at ``local`` time, then once more (which must send nothing)."""
    clock.current = at(local)
    rt = runtime_of(app)
    sent = len((await reminders_schedule.run(rt)).sent)
    assert (await reminders_schedule.run(rt)).sent == []
    return sent


async def test_an_admin_plans_a_drill_the_groups_are_reminded_and_it_is_recorded(
    app: AnyApp, fake_telegram: FakeBotAPI, clock: FakeClock, school: dict[str, Any]
) -> None:
    boss: FakeUser = school["boss"]
    a: FakeChat = school["a"]
    b: FakeChat = school["b"]
    card = await say(fake_telegram, boss, "/drill plan", "第 1 步")
    assert "dr:kind:drill" in card.callback_data
    await click(fake_telegram, boss, card, "dr:kind:drill", "第 2 步")
    await click(fake_telegram, boss, card, "dr:topic:anti_terror", "第 3 步")
    await say(fake_telegram, boss, "2026-02-30 09:00", "日期要真实存在")  # stays on step 3
    await say(fake_telegram, boss, "2026-09-10 15:00", "第 4 步")
    await say(fake_telegram, boss, "体育馆", "第 5 步")
    await say(fake_telegram, boss, "不存在学院", "找不到单位")  # stays on step 5
    confirm = await say(fake_telegram, boss, "信息学院", "请确认")
    shown = confirm.visible_text or ""
    assert "反恐防暴演练" in shown
    assert "信息学院的班级群（2 个群）" in shown
    for line in ("提前 7 天：2026-09-03 15:00", "提前 1 天：2026-09-09 15:00"):
        assert line in shown
    assert "提前 1 小时：2026-09-10 14:00" in shown
    planned = await click(fake_telegram, boss, confirm, "dr:confirm", "已安排 D-0001")
    assert "2026-09-10 15:00" in (planned.visible_text or "")

    assert await reminders_at(app, clock, "2026-09-03 14:59") == 0
    await fake_telegram.no_message(a.id)
    for local, lead in (
        ("2026-09-03 15:00:30", "7 天后"),
        ("2026-09-09 15:00:30", "1 天后"),
        ("2026-09-10 14:00:30", "1 小时后"),
    ):
        assert await reminders_at(app, clock, local) == 1
        for group in (a, b):
            reminder = await fake_telegram.next_message(group.id)
            assert f"{lead}举行：反恐防暴演练（D-0001）" in (reminder.visible_text or "")
            assert "地点：体育馆" in (reminder.visible_text or "")
            await fake_telegram.no_message(group.id)

    clock.current = at("2026-09-10 17:00")
    await say(fake_telegram, boss, "/drill done D-0001", "实际参加人数")
    await say(fake_telegram, boss, "-3", "1 到")
    await say(fake_telegram, boss, "很多人", "1 到")
    await say(fake_telegram, boss, "350", "第 2 步")
    done = await say(fake_telegram, boss, "全校师生 350 人参加，10 分钟内完成疏散。", "已登记")
    assert "350 人参加" in (done.visible_text or "")
    since = len(fake_telegram.calls)
    await boss.send_photo(PNG)
    await shown_after(fake_telegram, boss.id, "已保存第 1 张照片", since)
    finished = await click(fake_telegram, boss, done, "dr:finish", "已归档")
    assert "照片 1 张" in (finished.visible_text or "")
    more = await say(fake_telegram, boss, "/drill photos D-0001", "现场照片")
    await say(fake_telegram, boss, "照片在这里", "请发送照片")
    since = len(fake_telegram.calls)
    await boss.send_photo(PNG + b"second")
    await shown_after(fake_telegram, boss.id, "已保存第 2 张照片", since)
    finished = await click(fake_telegram, boss, more, "dr:finish", "已归档")
    assert "照片 2 张" in (finished.visible_text or "")

    listing = await say(fake_telegram, boss, "/drills", "演练与活动")
    text = listing.visible_text or ""
    assert "✅ D-0001 · 2026-09-10 15:00 · 反恐防暴演练 · 350 人 · 照片 2 张" in text
    since = len(fake_telegram.calls)
    await boss.send("/drills D-0001")
    detail = await shown_after(fake_telegram, boss.id, "经过", since)
    assert "全校师生 350 人参加" in (detail.visible_text or "")
    photo = await fake_telegram.wait_for(
        lambda c: fake_telegram.calls.index(c) >= since and c.method == "sendPhoto"
    )
    assert photo.chat_id == boss.id
    assert "D-0001 · 反恐防暴演练" in (photo.visible_text or "")

    rt = runtime_of(app)
    (evidence,) = await drills.activities_done(rt, at("2026-07-01 00:00"), at("2026-10-01 00:00"))
    assert (evidence.kind, evidence.topic, evidence.participants) == ("drill", "anti_terror", 350)
    assert evidence.done_at == at("2026-09-10 15:00")
    assert (rt.settings.data_dir / (evidence.photos[0].path or "")).exists()
    assert await reminders_at(app, clock, "2026-09-11 09:00") == 0


async def test_the_quick_path_cancelling_and_the_refusals(
    app: AnyApp, fake_telegram: FakeBotAPI, clock: FakeClock, school: dict[str, Any]
) -> None:
    boss: FakeUser = school["boss"]
    informant: FakeUser = school["informant"]
    a: FakeChat = school["a"]
    rt = runtime_of(app)

    await say(fake_telegram, informant, "/drill plan", "没有权限")
    await say(fake_telegram, informant, "/drills", "没有权限")
    await say(fake_telegram, boss, "/drill", "用法")
    await say(fake_telegram, boss, "/drill plan fire 2026-09-01 06:00 操场", "已经过去")
    await say(fake_telegram, boss, "/drill plan fire 明天 操场", "格式不对")
    planned = await say(
        fake_telegram, boss, "/drill plan fire 2026-09-20 09:00 1号教学楼  前广场", "已安排 D-0001"
    )
    assert "地点：1号教学楼  前广场" in (planned.visible_text or "")
    assert "提醒对象：全校的班级群" in (planned.visible_text or "")

    await say(fake_telegram, informant, "/drill done D-0001", "没有权限")
    await say(fake_telegram, boss, "/drill done D-0099", "找不到活动 D-0099")
    await say(fake_telegram, boss, "/drill postpone D-0001 2026-09-20 09:00", "无需改期")
    moved = await say(fake_telegram, boss, "/drill postpone D-0001 2026-09-21 09:00", "改到")
    assert "2026-09-21 09:00" in (moved.visible_text or "")
    notice = await fake_telegram.next_message(a.id)
    assert "改期通知" in (notice.visible_text or "")
    await say(fake_telegram, boss, "/drill cancel D-0001 台风预警", "已取消 D-0001")
    notice = await fake_telegram.next_message(a.id)
    assert "取消通知" in (notice.visible_text or "")
    assert "台风预警" in (notice.visible_text or "")
    await say(fake_telegram, boss, "/drill done D-0001", "已经取消了")
    await say(fake_telegram, boss, "/drill cancel D-0001", "已经取消了")
    assert (await drills.listing(rt, await _boss(app))).history[0].state == "cancelled"
    assert await reminders_at(app, clock, "2026-09-14 09:00:30") == 0  # its 7-day time
    await fake_telegram.no_message(a.id)

    # In a group, the command says where it belongs instead of acting.
    since = len(fake_telegram.calls)
    await boss.send("/drill plan", a)
    await shown_after(fake_telegram, a.id, "私聊", since)

    # The guided flow's cancel leaves nothing behind.
    await say(fake_telegram, boss, "/drill plan", "第 1 步")
    await say(fake_telegram, boss, "/cancel", "没有保存任何内容")
    assert len((await drills.listing(rt, await _boss(app))).history) == 1


async def test_an_admin_records_a_past_traffic_training_through_the_guided_flow(
    app: AnyApp, fake_telegram: FakeBotAPI, clock: FakeClock, school: dict[str, Any]
) -> None:
    boss: FakeUser = school["boss"]
    card = await say(fake_telegram, boss, "/drill plan", "第 1 步")
    kinds = ["dr:kind:drill", "dr:kind:training", "dr:kind:meeting", "dr:kind:publicity"]
    assert [data for data in card.callback_data if data.startswith("dr:kind:")] == kinds
    topic = await click(fake_telegram, boss, card, "dr:kind:training", "选择培训主题")
    assert "dr:topic:traffic" in topic.callback_data
    await click(fake_telegram, boss, card, "dr:topic:traffic", "第 3 步")
    await say(fake_telegram, boss, "2026-05-31 10:00", "超过 92 天")  # stays on step 3
    held = await say(fake_telegram, boss, "2026-08-25 14:00", "这次活动已经举行过了吗")
    assert held.callback_data[:2] == ["dr:held:yes", "dr:held:no"]
    await click(fake_telegram, boss, held, "dr:held:no", "第 3 步")  # type the time again
    held = await say(fake_telegram, boss, "2026-08-25 14:00", "这次活动已经举行过了吗")
    await click(fake_telegram, boss, held, "dr:held:yes", "第 4 步")
    await say(fake_telegram, boss, "学术报告厅", "第 5 步")  # no targets: nobody is reminded
    await say(fake_telegram, boss, "很多人", "1 到")
    await say(fake_telegram, boss, "86", "第 6 步")
    confirm = await say(fake_telegram, boss, "交警进校园讲解电动车安全。", "请确认补登")
    shown = confirm.visible_text or ""
    for line in ("交通安全培训", "举行时间：2026-08-25 14:00", "地点：学术报告厅", "86 人"):
        assert line in shown
    done = await click(fake_telegram, boss, confirm, "dr:record", "已登记 D-0001")
    assert "2026-08-25 14:00 举行，86 人参加" in (done.visible_text or "")
    assert "第 7 步" in (done.visible_text or "")
    since = len(fake_telegram.calls)
    await boss.send_photo(PNG)
    await shown_after(fake_telegram, boss.id, "已保存第 1 张照片", since)
    finished = await click(fake_telegram, boss, done, "dr:finish", "已归档")
    assert "照片 1 张" in (finished.visible_text or "")
    detail = await say(fake_telegram, boss, "/drills D-0001", "经过")
    assert "事后补登（08-25 14:00 已举行，86 人）" in (detail.visible_text or "")
    for group in (school["a"], school["b"]):
        await fake_telegram.no_message(group.id)  # it is over: nobody told

    rt = runtime_of(app)
    (evidence,) = await drills.activities_done(rt, at("2026-07-01 00:00"), at("2026-10-01 00:00"))
    assert (evidence.kind, evidence.topic, evidence.state) == ("training", "traffic", "done")
    assert (evidence.done_at, evidence.participants) == (at("2026-08-25 14:00"), 86)
    assert (evidence.reminder_rule_id, evidence.photo_count) == (None, 1)
    assert await reminders_at(app, clock, "2026-09-01 08:00") == 0


async def test_recording_on_one_line_and_its_refusals(
    app: AnyApp, fake_telegram: FakeBotAPI, school: dict[str, Any]
) -> None:
    boss: FakeUser = school["boss"]
    informant: FakeUser = school["informant"]
    await say(
        fake_telegram,
        informant,
        "/drill record meeting dispute 2026-08-28 16:00 会议室",
        "没有权限",
    )
    await say(fake_telegram, boss, "/drill plan fire 2026-08-28 16:00 操场", "/drill record")
    await say(fake_telegram, boss, "/drill record fire 2026-09-02 09:00 操场", "/drill plan")
    await say(fake_telegram, boss, "/drill record fire 2026-02-30 09:00 操场", "日期要真实存在")
    await say(fake_telegram, boss, "/drill record fire 2026-05-01 09:00 操场", "超过 92 天")
    await say(fake_telegram, boss, "/drill record", "用法")
    moved = await say(fake_telegram, boss, "/drill postpone D-0001 2026-08-01 09:00", "将来的时间")
    assert "/drill record" not in (moved.visible_text or "")  # moving it is not recording it
    rt = runtime_of(app)
    assert await drills.activities_done(rt, at("2026-01-01 00:00"), at("2027-01-01 00:00")) == []

    await say(
        fake_telegram,
        boss,
        "/drill record meeting dispute 2026-08-28 16:00 保卫处  会议室",
        "补登 矛盾纠纷排查化解会议",
    )
    await say(fake_telegram, boss, "15人", "第 2 步")
    confirm = await say(fake_telegram, boss, "排查纠纷 2 起，已化解。", "请确认补登")
    assert "地点：保卫处  会议室" in (confirm.visible_text or "")
    done = await click(fake_telegram, boss, confirm, "dr:record", "已登记 D-0001")
    assert "第 3 步" in (done.visible_text or "")
    await click(fake_telegram, boss, done, "dr:finish", "已归档")
    (meeting,) = await drills.activities_done(rt, at("2026-07-01 00:00"), at("2026-10-01 00:00"))
    assert (meeting.kind, meeting.topic, meeting.participants) == ("meeting", "dispute", 15)


async def _boss(app: AnyApp) -> Any:
    return await org.identify(
        runtime_of(app), profile(SUPERADMIN_ID, "王处长", "boss"), private=True
    )
