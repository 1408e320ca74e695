"""A hazard's whole life through the real Application and the fake Telegram server: a guard's
photo in the staff group, an officer's assignment, the unit head's fix, the verification, the
deadline escalation and the ledger summary; and the refusals (four-eyes, wrong person, bad
input, stale buttons)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from telegram.ext import Application

from bot.app import runtime_of
from bot.services import hazards
from schedules import hazards as hazard_job
from tests.fakebotapi import Call, FakeBotAPI, FakeChat, FakeUser
from tests.harness import bot_settings, click, running_bot, say, shown_after
from tests.support import SUPERADMIN_ID, FakeClock

AnyApp = Application[Any, Any, Any, Any, Any, Any]
LINK = re.compile(r"start=(join-[\w-]+)")
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


@pytest.fixture
async def app(tmp_path: Path, fake_telegram: FakeBotAPI, clock: FakeClock) -> AsyncIterator[AnyApp]:
    fake_telegram.privacy_mode = False  # the bot must see "#隐患" photos in groups
    fake_telegram.clock = lambda: clock.current.timestamp()
    async with running_bot(bot_settings(tmp_path, fake_telegram), clock=clock) as application:
        yield application


async def alert(telegram: FakeBotAPI, user: FakeUser, message: Call, data: str) -> str:
    """Press a button whose answer is a pop-up; returns the pop-up's text."""
    since = len(telegram.calls)
    await user.click(message, data)
    call = await telegram.wait_for(
        lambda c: telegram.calls.index(c) >= since and c.method == "answerCallbackQuery"
    )
    return str(call.params.get("text"))


async def enrol(telegram: FakeBotAPI, boss: FakeUser, user: FakeUser, role_and_unit: str) -> None:
    since = len(telegram.calls)
    await boss.send(f"/invite {role_and_unit}")
    invitation = await shown_after(telegram, boss.id, "join-", since)
    payload = LINK.search(invitation.visible_text or "")
    assert payload
    since = len(telegram.calls)
    await user.send(f"/start {payload.group(1)}")
    await telegram.wait_for(
        lambda c: telegram.calls.index(c) >= since and c.ok and c.chat_id == user.id
    )


@pytest.fixture
async def school(app: AnyApp, fake_telegram: FakeBotAPI) -> dict[str, Any]:
    boss = fake_telegram.user(SUPERADMIN_ID, "处长", username="boss")
    await boss.send("/start")
    await fake_telegram.next_message(boss.id)
    staff = fake_telegram.group(-910, "保安队群")
    await fake_telegram.add_bot_to_group(staff, boss)
    await fake_telegram.next_message(staff.id)
    await boss.send("/bind staff", staff)
    await fake_telegram.next_message(staff.id)
    unit_group = fake_telegram.group(-920, "总务处群")
    await fake_telegram.add_bot_to_group(unit_group, boss)
    await fake_telegram.next_message(unit_group.id)
    await boss.send("/bind unit 总务处", unit_group)
    await fake_telegram.next_message(unit_group.id)
    people = {
        "guard": fake_telegram.user(911, "老王", username="wang"),
        "officer": fake_telegram.user(912, "张警官", username="zhang"),
        "officer2": fake_telegram.user(913, "李警官", username="li"),
        "head": fake_telegram.user(914, "赵处长", username="zhao"),
    }
    await enrol(fake_telegram, boss, people["guard"], "guard")
    await enrol(fake_telegram, boss, people["officer"], "officer")
    await enrol(fake_telegram, boss, people["officer2"], "officer")
    await enrol(fake_telegram, boss, people["head"], "unit_head 总务处")
    return {"boss": boss, "staff": staff, "unit_group": unit_group, **people}


async def test_photo_to_verified_close_with_daily_escalation(
    app: AnyApp, fake_telegram: FakeBotAPI, clock: FakeClock, school: dict[str, Any]
) -> None:
    guard: FakeUser = school["guard"]
    officer: FakeUser = school["officer"]
    officer2: FakeUser = school["officer2"]
    head: FakeUser = school["head"]
    staff: FakeChat = school["staff"]
    rt = runtime_of(app)

    # A photo without a caption in the group: no noise.
    await guard.send_photo(PNG + b"plain", chat=staff)
    await fake_telegram.no_message(staff.id)

    since = len(fake_telegram.calls)
    await guard.send_photo(PNG, caption="#隐患 三楼消防通道堵塞", chat=staff)
    registered = await shown_after(fake_telegram, staff.id, "H-0001", since)
    # The guard completes the category and severity with the buttons.
    category = await click(
        fake_telegram, guard, registered, "hz:classify:1", "类别", chat_id=staff.id
    )
    severity = await click(
        fake_telegram, guard, category, "hz:cat:1:fire", "等级", chat_id=staff.id
    )
    await click(fake_telegram, guard, severity, "hz:sev:1:serious", "H-0001", chat_id=staff.id)

    # The officers got the card in private (no command group): the officer assigns.
    card = await fake_telegram.wait_for(
        lambda c: c.ok and c.chat_id == officer.id and "新隐患 H-0001" in (c.visible_text or "")
    )
    assert card.method == "sendPhoto"
    prompt = await click(
        fake_telegram, officer, card, "hz:assign:1", "整改单位", chat_id=officer.id
    )
    assert any("总务处" in b["text"] for b in prompt.buttons)
    since = len(fake_telegram.calls)
    await officer.send("总务处 3")
    await shown_after(fake_telegram, officer.id, "已交 总务处 整改", since)
    notice = await shown_after(fake_telegram, head.id, "隐患整改通知 H-0001", since)
    await shown_after(fake_telegram, school["unit_group"].id, "隐患整改通知 H-0001", since)
    hazard = await hazards.get(rt, 1)
    assert hazard.deadline == clock.current + timedelta(days=3)

    # Past the deadline: one overdue notice a day, however often the job runs, to the
    # officers, the admins and the leader (on duty; with no roster every leader stands in).
    leader = fake_telegram.user(916, "孙校长", username="sun")
    await enrol(fake_telegram, school["boss"], leader, "leader")
    clock.advance(days=3, minutes=1)
    since = len(fake_telegram.calls)
    assert len((await hazard_job.run(rt)).escalated) == 1
    assert not (await hazard_job.run(rt)).escalated
    await shown_after(fake_telegram, officer.id, "逾期未整改", since)
    await shown_after(fake_telegram, SUPERADMIN_ID, "逾期未整改", since)
    await shown_after(fake_telegram, leader.id, "逾期未整改", since)
    clock.advance(days=1)
    assert [h.escalations for h in (await hazard_job.run(rt)).escalated] == [2]

    # The unit head submits the fix with an "after" photo; the officer verifies.
    await click(fake_telegram, head, notice, "hz:fix:1", "整改后的照片", chat_id=head.id)
    since = len(fake_telegram.calls)
    await head.send_photo(PNG + b"after", caption="已清理杂物")
    await shown_after(fake_telegram, head.id, "等待验收", since)
    fixed = await shown_after(fake_telegram, officer2.id, "待验收", since)
    await click(fake_telegram, officer2, fixed, "hz:verify:1", "已验收销号", chat_id=officer2.id)
    # A stale button answers with the current state; nothing changes.
    assert "已销号" in await alert(fake_telegram, officer2, fixed, "hz:verify:1")
    assert not (await hazard_job.run(rt)).escalated

    summary = await say(fake_telegram, officer, "/hazards summary", "隐患台账")
    assert "已整改销号：1" in (summary.visible_text or "")
    assert "整改率：100.0%" in (summary.visible_text or "")
    since = len(fake_telegram.calls)
    await officer.send("/hazards H-0001")
    detail = await shown_after(fake_telegram, officer.id, "经过", since)
    assert "整改前 1 张，整改后 1 张" in (detail.visible_text or "")
    await shown_after(fake_telegram, officer.id, "H-0001 · 整改前", since)
    await shown_after(fake_telegram, officer.id, "H-0001 · 整改后", since)
    closed = await hazards.get(rt, 1)
    for photo in closed.photos:  # both photos kept on disk by content hash
        assert (rt.settings.data_dir / (photo.path or "")).exists()


async def test_rejection_four_eyes_and_bad_input(
    app: AnyApp, fake_telegram: FakeBotAPI, school: dict[str, Any]
) -> None:
    guard: FakeUser = school["guard"]
    officer: FakeUser = school["officer"]
    officer2: FakeUser = school["officer2"]
    head: FakeUser = school["head"]
    staff: FakeChat = school["staff"]
    # The officer is also a head of 总务处: they may fix, but not verify their own fix.
    await enrol(fake_telegram, school["boss"], officer, "unit_head 总务处")

    since = len(fake_telegram.calls)
    await guard.send_document(PNG, "site.png", mime_type="image/png", caption="#隐患 配电箱未上锁")
    registered = await shown_after(fake_telegram, guard.id, "H-0001", since)
    await guard.send_document(b"a,b", "list.csv", caption="#隐患 看附件", chat=staff)
    await shown_after(fake_telegram, staff.id, "不是图片", since)

    # A guard cannot assign; a non-unit-head cannot submit a fix.
    text = await alert(fake_telegram, guard, registered, "hz:assign:1")
    assert "权限" in text or "值班员" in text
    since = len(fake_telegram.calls)
    await officer.send("/hazards H-0001")
    detail = await shown_after(fake_telegram, officer.id, "经过", since)
    await click(fake_telegram, officer, detail, "hz:classify:1", "类别", chat_id=officer.id)
    await officer.click(detail, "hz:cat:1:electrical")
    await shown_after(fake_telegram, officer.id, "等级", since)
    await officer.click(detail, "hz:sev:1:major")
    await shown_after(fake_telegram, officer.id, "H-0001：已登记", since)
    # A major hazard needs interim measures: the department button asks for them.
    prompt = await click(
        fake_telegram, officer, detail, "hz:assign:1", "整改单位", chat_id=officer.id
    )
    unit_button = next(b["callback_data"] for b in prompt.buttons if "总务处" in b["text"])
    await click(fake_telegram, officer, prompt, unit_button, "临时安全措施", chat_id=officer.id)
    since = len(fake_telegram.calls)
    await officer.send("断电并挂警示牌")
    await shown_after(fake_telegram, officer.id, "已交 总务处 整改", since)
    notice = await shown_after(fake_telegram, head.id, "隐患整改通知 H-0001", since)
    assert "断电并挂警示牌" in (notice.visible_text or "")

    text = await alert(fake_telegram, guard, registered, "hz:fix:1")  # forged data
    assert "部门负责人" in text

    # The head's first fix is rejected with a reason; the deadline stays.
    deadline = (await hazards.get(runtime_of(app), 1)).deadline
    await click(fake_telegram, head, notice, "hz:fix:1", "整改后的照片", chat_id=head.id)
    since = len(fake_telegram.calls)
    await head.send_photo(PNG + b"fix1", caption="已上锁")
    fixed = await shown_after(fake_telegram, officer2.id, "待验收", since)
    await click(fake_telegram, officer2, fixed, "hz:reject:1", "退回", chat_id=officer2.id)
    since = len(fake_telegram.calls)
    await officer2.send("锁是坏的")
    await shown_after(fake_telegram, officer2.id, "已退回整改", since)
    back = await shown_after(fake_telegram, head.id, "未通过验收", since)
    officer_back = await shown_after(fake_telegram, officer.id, "未通过验收", since)
    assert "锁是坏的" in (back.visible_text or "")
    hazard = await hazards.get(runtime_of(app), 1)
    assert hazard.state is hazards.State.RECTIFYING
    assert hazard.deadline == deadline

    # The officer-head fixes it and cannot verify it; the other officer can.
    await click(
        fake_telegram, officer, officer_back, "hz:fix:1", "整改后的照片", chat_id=officer.id
    )
    since = len(fake_telegram.calls)
    await officer.send_photo(PNG + b"fix2", caption="换了新锁")
    fixed = await shown_after(fake_telegram, officer.id, "待验收", since)
    await shown_after(fake_telegram, officer.id, "等待验收", since)
    fixed_for_other = await shown_after(fake_telegram, officer2.id, "待验收", since)
    since = len(fake_telegram.calls)
    await officer.click(fixed, "hz:verify:1")
    await fake_telegram.wait_for(
        lambda c: (
            fake_telegram.calls.index(c) >= since
            and "不能验收自己提交的整改" in str(c.params.get("text", ""))
        )
    )
    assert (await hazards.get(runtime_of(app), 1)).state is hazards.State.AWAITING_VERIFICATION
    await click(
        fake_telegram, officer2, fixed_for_other, "hz:verify:1", "已验收销号", chat_id=officer2.id
    )
    view = await hazards.view(runtime_of(app), await _actor(app, 913), 1)
    assert [e.kind for e in view.events].count("rejected") == 1
    assert len(view.hazard.after_photos) == 2

    # Bad input on the ledger command.
    await say(fake_telegram, officer, "/hazards nonsense", "用法")
    await say(fake_telegram, officer, "/hazards H-0099", "找不到隐患")


async def _actor(app: AnyApp, telegram_id: int) -> Any:
    from bot.services import org
    from tests.support import profile

    return await org.identify(
        runtime_of(app), profile(telegram_id, "x", f"u{telegram_id}"), private=True
    )


async def test_guided_hazard_flow(
    app: AnyApp, fake_telegram: FakeBotAPI, school: dict[str, Any]
) -> None:
    guard: FakeUser = school["guard"]
    step = await say(fake_telegram, guard, "/hazard", "第 1 步")
    since = len(fake_telegram.calls)
    await guard.send("没有照片")
    await shown_after(fake_telegram, guard.id, "请发送照片", since)
    await guard.send_photo(PNG)
    await shown_after(fake_telegram, guard.id, "第 1 张照片", since)
    await guard.click(step, "hf:done")
    await fake_telegram.wait_for(lambda c: "第 2 步" in (c.visible_text or ""))
    await guard.click(step, "hf:cat:electrical")
    await fake_telegram.wait_for(lambda c: "第 3 步" in (c.visible_text or ""))
    await guard.click(step, "hf:back")
    await fake_telegram.wait_for(
        lambda c: "第 2 步" in (c.visible_text or "") and fake_telegram.calls.index(c) > since + 4
    )
    await guard.click(step, "hf:cat:electrical")
    await guard.click(step, "hf:sev:routine")
    await fake_telegram.wait_for(lambda c: "第 4 步" in (c.visible_text or ""))
    since = len(fake_telegram.calls)
    await guard.send("学生宿舍 5 号楼 302")
    await shown_after(fake_telegram, guard.id, "第 5 步", since)
    await guard.send("宿舍使用大功率电器")
    confirm = await shown_after(fake_telegram, guard.id, "请确认", since)
    assert "学生宿舍 5 号楼 302" in (confirm.visible_text or "")
    await click(fake_telegram, guard, confirm, "hf:confirm", "H-0001", chat_id=guard.id)
    hazard = await hazards.get(runtime_of(app), 1)
    assert hazard.category is hazards.Category.ELECTRICAL
    assert hazard.place == "学生宿舍 5 号楼 302"
    assert len(hazard.photos) == 1
    # /cancel leaves nothing behind.
    await say(fake_telegram, guard, "/hazard", "第 1 步")
    await say(fake_telegram, guard, "/cancel", "已取消")


async def test_an_informants_photo_waits_for_an_officer(
    app: AnyApp, fake_telegram: FakeBotAPI, school: dict[str, Any]
) -> None:
    informant = fake_telegram.user(915, "小林", username="lin")
    officer: FakeUser = school["officer"]
    await enrol(fake_telegram, school["boss"], informant, "informant 信息学院/计科2201")
    since = len(fake_telegram.calls)
    await informant.send_photo(PNG, caption="/hazard 实验室门口堆放纸箱")
    await shown_after(fake_telegram, informant.id, "待值班员核实", since)
    card = await shown_after(fake_telegram, officer.id, "待核实的隐患 H-0001", since)
    since = len(fake_telegram.calls)
    await officer.click(card, "hz:confirm:1")
    await shown_after(fake_telegram, officer.id, "H-0001 已核实登记", since)
    await shown_after(fake_telegram, informant.id, "已核实登记", since)
    assert "已登记" in await alert(fake_telegram, officer, card, "hz:confirm:1")  # stale


async def _state(app: AnyApp, telegram: FakeBotAPI, user: FakeUser, ref: str) -> Any:
    """The hazard once every earlier update of ``user`` was handled (updates are handled in
    order, so the answer to /hazards comes after theirs)."""
    await say(telegram, user, f"/hazards {ref}", "经过")
    return await hazards.get(runtime_of(app), hazards.parse_reference(ref))


async def test_a_pending_fix_takes_only_its_own_photo(
    app: AnyApp, fake_telegram: FakeBotAPI, school: dict[str, Any]
) -> None:
    officer: FakeUser = school["officer"]
    head: FakeUser = school["head"]
    rt = runtime_of(app)
    guard_actor, officer_actor = await _actor(app, 911), await _actor(app, 912)
    since = len(fake_telegram.calls)
    for text in ("三楼消防通道堵塞", "配电箱未上锁"):
        draft = hazards.HazardDraft(description=text, severity=hazards.Severity.ROUTINE)
        found = await hazards.register(rt, guard_actor, draft)
        await hazards.assign(rt, officer_actor, found.id, "总务处")
    notice = await shown_after(fake_telegram, head.id, "隐患整改通知 H-0001", since)

    # A photo captioned with a command is that command's, and the person moved on.
    await click(fake_telegram, head, notice, "hz:fix:1", "整改后的照片", chat_id=head.id)
    await head.send_photo(PNG + b"fight", caption="/report 门口有人打架")
    assert (await _state(app, fake_telegram, head, "H-0001")).state is hazards.State.RECTIFYING
    await head.send_photo(PNG + b"late", caption="已清理")
    hazard = await _state(app, fake_telegram, head, "H-0001")
    assert hazard.state is hazards.State.RECTIFYING
    assert hazard.after_photos == []

    # Another hazard's button drops the pending fix too.
    await click(fake_telegram, head, notice, "hz:fix:1", "整改后的照片", chat_id=head.id)
    await click(fake_telegram, head, notice, "hz:view:2", "配电箱未上锁", chat_id=head.id)
    await head.send_photo(PNG + b"which", caption="已清理")
    for ref in ("H-0001", "H-0002"):
        hazard = await _state(app, fake_telegram, head, ref)
        assert hazard.state is hazards.State.RECTIFYING

    # So does a typed prompt started after "Submit fix" (an officer who also heads 总务处).
    await enrol(fake_telegram, school["boss"], officer, "unit_head 总务处")
    detail = await say(fake_telegram, officer, "/hazards H-0001", "经过")
    await click(fake_telegram, officer, detail, "hz:fix:1", "整改后的照片", chat_id=officer.id)
    await click(fake_telegram, officer, detail, "hz:extend:1", "新的期限", chat_id=officer.id)
    await officer.send_photo(PNG + b"extend", caption="已清理")
    hazard = await _state(app, fake_telegram, officer, "H-0001")
    assert hazard.state is hazards.State.RECTIFYING

    # The fix itself still works.
    await click(fake_telegram, head, notice, "hz:fix:1", "整改后的照片", chat_id=head.id)
    since = len(fake_telegram.calls)
    await head.send_photo(PNG + b"fixed", caption="已清理杂物")
    await shown_after(fake_telegram, head.id, "等待验收", since)
    assert (await hazards.get(rt, 1)).state is hazards.State.AWAITING_VERIFICATION


async def test_a_head_of_another_unit_is_refused(
    app: AnyApp, fake_telegram: FakeBotAPI, school: dict[str, Any]
) -> None:
    other = fake_telegram.user(917, "钱处长", username="qian")
    await enrol(fake_telegram, school["boss"], other, "unit_head 设备处")
    rt = runtime_of(app)
    draft = hazards.HazardDraft(description="三楼消防通道堵塞", severity=hazards.Severity.ROUTINE)
    found = await hazards.register(rt, await _actor(app, 911), draft)
    await hazards.assign(rt, await _actor(app, 912), found.id, "总务处")
    refused = await say(fake_telegram, other, "/hazards H-0001", "找不到隐患")
    text = await alert(fake_telegram, other, refused, "hz:fix:1")
    assert "部门负责人" in text
    since = len(fake_telegram.calls)
    await other.send_photo(PNG + b"fake", caption="修好了")
    await say(fake_telegram, other, "/hazards H-0001", "找不到隐患")
    assert not [c for c in fake_telegram.calls[since:] if "等待验收" in (c.visible_text or "")]
    hazard = await hazards.get(rt, 1)
    assert hazard.state is hazards.State.RECTIFYING
    assert hazard.photos == []
    assert hazard.fixed_by is None
    view = await hazards.view(rt, await _actor(app, 912), 1)
    assert [e.kind for e in view.events] == ["registered", "assigned"]
