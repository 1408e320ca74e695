"""A report's whole life through the real Application and the fake Telegram server, acting as
an informant, a duty officer and the security office."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from telegram.ext import Application

from bot.app import runtime_of
from bot.services import reports
from tests.fakebotapi import Call, FakeBotAPI, FakeChat, FakeUser
from tests.harness import bot_settings, running_bot
from tests.support import SUPERADMIN_ID

AnyApp = Application[Any, Any, Any, Any, Any, Any]
LINK = re.compile(r"start=(join-[\w-]+)")
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


@pytest.fixture
async def app(tmp_path: Path, fake_telegram: FakeBotAPI) -> AsyncIterator[AnyApp]:
    async with running_bot(bot_settings(tmp_path, fake_telegram)) as application:
        yield application


async def say(
    telegram: FakeBotAPI,
    user: FakeUser,
    text: str,
    chat: FakeChat | None = None,
    expect: str | None = None,
) -> Call:
    """``user`` sends ``text``; returns the bot's next message in that chat (the next one
    containing ``expect``, if given)."""
    chat_id = (chat or user.private_chat).id
    since = len(telegram.calls)
    await user.send(text, chat)
    if expect is None:
        return await telegram.next_message(chat_id)
    return await telegram.wait_for(
        lambda c: (
            telegram.calls.index(c) >= since
            and c.ok
            and c.chat_id == chat_id
            and expect in (c.visible_text or "")
        )
    )


async def enrol(telegram: FakeBotAPI, boss: FakeUser, user: FakeUser, role_and_unit: str) -> None:
    await boss.send(f"/invite {role_and_unit}")
    invitation = await telegram.next_message(boss.id)
    payload = LINK.search(invitation.visible_text or "")
    assert payload
    await say(telegram, user, f"/start {payload.group(1)}")
    await telegram.next_message(boss.id)  # the join notice


@pytest.fixture
async def school(app: AnyApp, fake_telegram: FakeBotAPI) -> dict[str, Any]:
    boss = fake_telegram.user(SUPERADMIN_ID, "处长", username="boss")
    await say(fake_telegram, boss, "/start")
    duty = fake_telegram.group(-900, "保卫处值班群")
    await fake_telegram.add_bot_to_group(duty, boss)
    await fake_telegram.next_message(duty.id)
    await say(fake_telegram, boss, "/bind command 信息学院", duty)
    informant = fake_telegram.user(901, "小林", username="xiaolin")
    officer = fake_telegram.user(902, "张警官", username="zhang")
    await enrol(fake_telegram, boss, informant, "informant 信息学院/计科2201")
    await enrol(fake_telegram, boss, officer, "officer 信息学院")
    return {"boss": boss, "duty": duty, "informant": informant, "officer": officer}


async def click_and_see(
    telegram: FakeBotAPI, user: FakeUser, message: Call, data: str, chat_id: int, expect: str
) -> Call:
    """``user`` presses a button; returns the next message to ``chat_id`` containing ``expect``."""
    since = len(telegram.calls)
    await user.click(message, data)
    return await telegram.wait_for(
        lambda c: (
            telegram.calls.index(c) >= since
            and c.ok
            and c.chat_id == chat_id
            and expect in (c.visible_text or "")
        )
    )


async def test_guided_report_to_a_closed_case(
    app: AnyApp, fake_telegram: FakeBotAPI, school: dict[str, Any]
) -> None:
    informant: FakeUser = school["informant"]
    officer: FakeUser = school["officer"]
    duty: FakeChat = school["duty"]

    step = await say(fake_telegram, informant, "/report")
    assert "第 1 步" in (step.visible_text or "")
    await informant.click(step, step.button_data("治安"))
    step_two = await fake_telegram.wait_for(
        lambda c: c.method == "editMessageText" and "第 2 步" in (c.visible_text or "")
    )
    await informant.click(step, "rf:back")  # going back a step works
    await fake_telegram.wait_for(
        lambda c: (
            c.method == "editMessageText"
            and "第 1 步" in (c.visible_text or "")
            and c.at > step_two.at
        )
    )
    await informant.click(step, "rf:cat:security")
    await informant.click(step, "rf:sev:serious")
    await fake_telegram.wait_for(
        lambda c: c.method == "editMessageText" and "第 3 步" in (c.visible_text or "")
    )
    await informant.send_photo(PNG)  # a photo where text is expected is refused politely
    assert "文字" in ((await fake_telegram.next_message(informant.id)).visible_text or "")
    await informant.send("宿舍楼下有陌生人反复拉门")
    assert "第 4 步" in ((await fake_telegram.next_message(informant.id)).visible_text or "")
    photos_step = fake_telegram.sent_messages(informant.id)[-1]
    await informant.send_photo(PNG)
    assert "第 1 张" in ((await fake_telegram.next_message(informant.id)).visible_text or "")
    await informant.send_photo(PNG + b"second")
    assert "第 2 张" in ((await fake_telegram.next_message(informant.id)).visible_text or "")
    await informant.send_location(30.5, 114.3)
    assert "位置" in ((await fake_telegram.next_message(informant.id)).visible_text or "")
    await informant.click(photos_step, "rf:done")
    await fake_telegram.wait_for(
        lambda c: c.method == "editMessageText" and "第 5 步" in (c.visible_text or "")
    )
    await informant.click(photos_step, "rf:anon:0")
    confirm = await fake_telegram.wait_for(
        lambda c: c.method == "editMessageText" and "请确认" in (c.visible_text or "")
    )
    assert "照片：2 张" in (confirm.visible_text or "")
    await informant.click(photos_step, "rf:confirm")
    filed = await fake_telegram.wait_for(
        lambda c: c.method == "sendMessage" and "R-0001" in (c.visible_text or "")
    )
    assert filed.chat_id == informant.id

    card = await fake_telegram.next_message(duty.id)
    while "R-0001" not in (card.visible_text or ""):
        card = await fake_telegram.next_message(duty.id)
    assert card.method == "sendPhoto"
    assert "陌生人" in (card.visible_text or "")
    assert "小林" in (card.visible_text or "")

    # An informant in the group cannot acknowledge; a forged button changes nothing.
    await informant.click(card, card.button_data("确认"))
    refused = await fake_telegram.wait_for(
        lambda c: c.method == "answerCallbackQuery" and "权限" in str(c.params.get("text"))
    )
    await officer.click(card, "rpt:ack:999")
    await fake_telegram.wait_for(
        lambda c: (
            c.method == "answerCallbackQuery"
            and "R-0999" in str(c.params.get("text"))
            and c.at > refused.at
        )
    )
    rt = runtime_of(app)
    assert (await reports.my_reports(rt, await _actor(rt, informant))).reports[
        0
    ].state is reports.State.OPEN

    await click_and_see(fake_telegram, officer, card, card.button_data("确认"), duty.id, "张警官")
    await fake_telegram.wait_for(
        lambda c: c.chat_id == informant.id and "已被值班员确认" in (c.visible_text or "")
    )
    await officer.click(card, card.button_data("确认"))  # a second press: the current state
    await fake_telegram.wait_for(
        lambda c: c.method == "answerCallbackQuery" and "处理中" in str(c.params.get("text"))
    )

    detail = await say(fake_telegram, officer, "/report R-0001")
    await click_and_see(
        fake_telegram, officer, detail, detail.button_data("提问"), officer.id, "问题"
    )
    await say(fake_telegram, officer, "是哪栋宿舍？", expect="转给报告人")
    question = await fake_telegram.wait_for(
        lambda c: c.chat_id == informant.id and "是哪栋宿舍" in (c.visible_text or "")
    )
    await click_and_see(
        fake_telegram, informant, question, question.button_data("回答"), informant.id, "回答"
    )
    await say(fake_telegram, informant, "7号楼", expect="转给值班员")
    answer = await fake_telegram.wait_for(
        lambda c: c.chat_id == officer.id and "7号楼" in (c.visible_text or "")
    )
    assert "是哪栋宿舍" in (answer.visible_text or "")

    await click_and_see(
        fake_telegram, officer, card, card.button_data("办结"), officer.id, "处理结果"
    )
    await say(fake_telegram, officer, "已劝离，加强巡查", expect="已办结")
    resolved = await fake_telegram.wait_for(
        lambda c: c.chat_id == informant.id and "已办结" in (c.visible_text or "")
    )
    assert "加强巡查" in (resolved.visible_text or "")

    history = (
        await say(fake_telegram, officer, "/report R-0001", expect="经过")
    ).visible_text or ""
    for step_name in (
        "提交报告",
        "张警官：确认",
        "提问：是哪栋宿舍？",
        "回答：7号楼",
        "办结：已劝离",
    ):
        assert step_name in history, history
    mine = (await say(fake_telegram, informant, "/myreports", expect="我的报告")).visible_text or ""
    assert "R-0001" in mine
    assert "已办结" in mine


async def test_quick_report_cancel_and_wrong_chat(
    app: AnyApp, fake_telegram: FakeBotAPI, school: dict[str, Any]
) -> None:
    informant: FakeUser = school["informant"]
    filed = await say(fake_telegram, informant, "/report 食堂门口地面湿滑")
    assert "R-0001" in (filed.visible_text or "")
    await informant.send_photo(PNG, caption="/report 围墙有缺口")
    with_photo = await fake_telegram.next_message(informant.id)
    assert "R-0002" in (with_photo.visible_text or "")
    started = await say(fake_telegram, informant, "/report")
    assert "第 1 步" in (started.visible_text or "")
    assert "取消" in ((await say(fake_telegram, informant, "/cancel")).visible_text or "")
    assert "没有需要取消" in ((await say(fake_telegram, informant, "/cancel")).visible_text or "")
    group = fake_telegram.group(-950, "计科2201班群")
    await fake_telegram.add_bot_to_group(group, school["boss"])
    await fake_telegram.next_message(group.id)
    in_group = await say(fake_telegram, informant, "/report 有情况", group)
    assert "私聊" in (in_group.visible_text or "")
    assert "start=report" in str(in_group.params.get("text"))
    stranger = fake_telegram.user(999, "路人")
    assert "没有加入" in ((await say(fake_telegram, stranger, "/report")).visible_text or "")
    rt = runtime_of(app)
    mine = await reports.my_reports(rt, await _actor(rt, informant))
    assert mine.total == 2
    photographed = mine.reports[0]
    assert photographed.description == "围墙有缺口"
    assert len(photographed.photos) == 1
    stored = rt.settings.data_dir / (photographed.photos[0].path or "")
    assert stored.read_bytes() == PNG  # downloaded, kept by content hash


async def _actor(rt: Any, user: FakeUser) -> Any:
    from bot.services import org
    from bot.services.models import Profile

    return await org.identify(
        rt,
        Profile(
            telegram_id=user.id,
            username=user.username,
            full_name=user.first_name,
            language_code=user.language_code,
        ),
        private=True,
    )


async def test_an_abandoned_report_times_out_politely_and_big_photos_are_kept_by_id(
    tmp_path: Path, fake_telegram: FakeBotAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    import handlers.flows
    import handlers.reports as flow

    # Our own knobs, turned down so the test does not wait 15 minutes or send 20 MB.
    monkeypatch.setattr(handlers.flows, "TIMEOUT", timedelta(seconds=0.5))
    monkeypatch.setattr(flow, "DOWNLOAD_LIMIT", 10)
    async with running_bot(bot_settings(tmp_path / "b", fake_telegram)) as application:
        boss = fake_telegram.user(SUPERADMIN_ID, "处长", username="boss")
        await say(fake_telegram, boss, "/start")
        started = await say(fake_telegram, boss, "/report")
        assert "第 1 步" in (started.visible_text or "")
        timeout = await fake_telegram.next_message(boss.id, timeout=5)
        assert "超时" in (timeout.visible_text or "")

        await boss.send_photo(PNG, caption="/report 配电箱门坏了")
        filed = await fake_telegram.next_message(boss.id)
        assert "R-0001" in (filed.visible_text or "")
        rt = runtime_of(application)
        report = (await reports.my_reports(rt, await _actor(rt, boss))).reports[0]
        (photo,) = report.photos
        assert photo.path is None
        assert photo.file_id
        assert photo.note
        assert not any(c.method == "getFile" for c in fake_telegram.calls)


async def test_a_long_history_is_shown_in_parts(
    app: AnyApp, fake_telegram: FakeBotAPI, school: dict[str, Any]
) -> None:
    informant: FakeUser = school["informant"]
    officer: FakeUser = school["officer"]
    await say(fake_telegram, informant, "/report " + "很长的描述。" * 300, expect="R-0001")
    rt = runtime_of(app)
    actor = await _actor(rt, officer)
    for n in range(4):
        await reports.add_note(rt, actor, 1, f"第{n}条备注：" + "细节" * 400)
    since = len(fake_telegram.calls)
    await officer.send("/report R-0001")
    last = await fake_telegram.wait_for(
        lambda c: (
            fake_telegram.calls.index(c) >= since and c.ok and "第3条备注" in (c.visible_text or "")
        )
    )
    parts = [
        c
        for c in fake_telegram.calls[since:]
        if c.method == "sendMessage" and c.chat_id == officer.id
    ]
    assert len(parts) >= 2
    assert all(c.ok for c in parts)
    assert last.buttons  # the handling buttons come with the last part


async def test_another_command_drops_a_pending_prompt(
    app: AnyApp, fake_telegram: FakeBotAPI, school: dict[str, Any]
) -> None:
    informant: FakeUser = school["informant"]
    officer: FakeUser = school["officer"]
    await say(fake_telegram, informant, "/report 路灯不亮", expect="R-0001")
    detail = await say(fake_telegram, officer, "/report R-0001", expect="经过")
    await click_and_see(
        fake_telegram, officer, detail, detail.button_data("办结"), officer.id, "处理结果"
    )
    await say(fake_telegram, officer, "/help", expect="帮助")
    await say(fake_telegram, officer, "随便说说", expect="/help")  # stray text, not an outcome
    rt = runtime_of(app)
    view = await reports.view(rt, await _actor(rt, officer), 1)
    assert view.report.state is reports.State.OPEN


async def test_a_flow_left_open_does_not_catch_the_next_flows_messages(
    app: AnyApp, fake_telegram: FakeBotAPI, school: dict[str, Any]
) -> None:
    informant: FakeUser = school["informant"]
    await say(fake_telegram, informant, "/hazard", expect="")  # started, then left open
    started = await say(fake_telegram, informant, "/report", expect="第 1 步")
    await informant.click(started, "rf:cat:security")
    await informant.click(started, "rf:sev:routine")
    await fake_telegram.wait_for(
        lambda c: c.method == "editMessageText" and "第 3 步" in (c.visible_text or "")
    )
    await say(fake_telegram, informant, "操场有人受伤", expect="第 4 步")  # the report got it
    await say(fake_telegram, informant, "/cancel", expect="取消")
    await say(fake_telegram, informant, "随便说说", expect="/help")  # no flow catches it now


async def test_a_strangers_hazard_photo_is_refused_before_it_is_downloaded(
    app: AnyApp, fake_telegram: FakeBotAPI, school: dict[str, Any]
) -> None:
    stranger = fake_telegram.user(998, "路人")
    await stranger.send_photo(PNG, caption="#隐患 这里有问题")
    refused = await fake_telegram.next_message(stranger.id)
    assert "权限" in (refused.visible_text or "")
    assert not any(c.method in ("getFile", "downloadFile") for c in fake_telegram.calls)
