"""Inspection checklists through the real Application and the fake Telegram server: an admin
sends a checklist file (a bad one is refused with the reason), a guard walks it with one failed
item and a photo (one hazard linked, one inspection record); and `safecampus checklist import`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from telegram.ext import Application

from bot.app import runtime_of
from bot.runtime import Runtime
from bot.services import hazards, inspections
from bot.services.models import Actor
from bot.store.tables import checklist_templates
from bot.store.tables import hazards as hazard_table
from bot.store.tables import inspections as inspection_table
from tests.fakebotapi import Call, FakeBotAPI, FakeUser
from tests.harness import bot_settings, running_bot
from tests.support import SUPERADMIN_ID, FakeClock, make_settings, open_runtime, profile

AnyApp = Application[Any, Any, Any, Any, Any, Any]
ROOT = Path(__file__).resolve().parent.parent
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)
GOOD = "name: 宿舍消防检查\nitems: [疏散通道畅通, 灭火器在有效期, 无违章电器]\n"
BAD = "name: 宿舍消防检查\nitems:\n  - 疏散通道畅通\n  - 疏散通道畅通\n"


@pytest.fixture
async def app(tmp_path: Path, fake_telegram: FakeBotAPI) -> AsyncIterator[AnyApp]:
    async with running_bot(bot_settings(tmp_path, fake_telegram)) as application:
        yield application


async def expect(telegram: FakeBotAPI, chat_id: int, since: int, words: str) -> Call:
    """The first message (sent or edited) to ``chat_id`` since call ``since`` with ``words``."""
    return await telegram.wait_for(
        lambda c: (
            telegram.calls.index(c) >= since
            and c.ok
            and c.chat_id == chat_id
            and words in (c.visible_text or "")
        )
    )


async def say(telegram: FakeBotAPI, user: FakeUser, text: str, words: str) -> Call:
    since = len(telegram.calls)
    await user.send(text)
    return await expect(telegram, user.id, since, words)


async def send_file(
    telegram: FakeBotAPI, user: FakeUser, data: bytes, name: str, words: str
) -> Call:
    since = len(telegram.calls)
    await user.send_document(data, name, mime_type="application/x-yaml")
    return await expect(telegram, user.id, since, words)


async def press(telegram: FakeBotAPI, user: FakeUser, card: Call, action: str, words: str) -> Call:
    """Press the button of ``card`` whose data ends with ``:action``."""
    (data,) = [d for d in card.callback_data if d.endswith(f":{action}")]
    since = len(telegram.calls)
    await user.click(card, data)
    return await expect(telegram, user.id, since, words)


async def join_as_guard(telegram: FakeBotAPI, boss: FakeUser, user: FakeUser) -> None:
    invitation = await say(telegram, boss, "/invite guard", "?start=")
    payload = (invitation.visible_text or "").split("?start=")[1].split()[0]
    await say(telegram, user, f"/start {payload}", "")
    await telegram.wait_for(lambda c: c.chat_id == boss.id and "小张" in (c.visible_text or ""))


async def stored(rt: Runtime, table: Any) -> int:
    async with rt.db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar_one()


async def test_an_admin_defines_a_checklist_and_a_guard_walks_it_with_one_fail(
    app: AnyApp, fake_telegram: FakeBotAPI
) -> None:
    rt = runtime_of(app)
    boss = fake_telegram.user(SUPERADMIN_ID, "王处长", username="boss")
    await say(fake_telegram, boss, "/start", "")
    guard = fake_telegram.user(301, "小张", username="xiaozhang")
    await join_as_guard(fake_telegram, boss, guard)

    refused = await send_file(fake_telegram, boss, BAD.encode(), "dorm.yaml", "没有导入")
    assert "第 4 行：检查项「疏散通道畅通」重复了（第 3 行）" in (refused.visible_text or "")
    assert await stored(rt, checklist_templates) == 0
    broken = await send_file(fake_telegram, boss, b"name: [x\n", "x.yml", "没有导入")
    assert "YAML 格式错误" in (broken.visible_text or "")
    refused_guard = await send_file(fake_telegram, guard, GOOD.encode(), "dorm.yaml", "权限")
    assert "管理员" in (refused_guard.visible_text or "")

    await send_file(fake_telegram, boss, GOOD.encode(), "dorm.yaml", "检查表已导入")
    assert await stored(rt, checklist_templates) == 1
    listed = await say(fake_telegram, guard, "/checklists", "检查表")
    assert "1. 宿舍消防检查（3 项）" in (listed.visible_text or "")
    unknown = await say(fake_telegram, guard, "/inspect 食堂检查", "没有名为")
    assert "宿舍消防检查" in (unknown.visible_text or "")

    card = await say(fake_telegram, guard, "/inspect 宿舍消防检查 3号楼", "第 1/3 项")
    assert "疏散通道畅通" in (card.visible_text or "")
    await press(fake_telegram, guard, card, "pass", "通过")
    card = await expect(fake_telegram, guard.id, 0, "第 2/3 项")
    await press(fake_telegram, guard, card, "fail", "请发送一张现场照片")
    since = len(fake_telegram.calls)
    await guard.send("A text where a photo is expected is kept as the note")
    await expect(fake_telegram, guard.id, since, "备注已记下")
    since = len(fake_telegram.calls)
    await guard.send_photo(PNG)
    registered = await expect(fake_telegram, guard.id, since, "已登记隐患")
    assert "H-0001" in (registered.visible_text or "")
    card = await expect(fake_telegram, guard.id, since, "第 3/3 项")
    summary = await press(fake_telegram, guard, card, "na", "检查完成")
    text = summary.visible_text or ""
    assert "通过 1 项，不通过 1 项（隐患 H-0001），不适用 1 项" in text

    assert await stored(rt, hazard_table) == 1
    assert await stored(rt, inspection_table) == 1
    hazard = await hazards.get(rt, 1)
    assert hazard.inspection_id is not None
    inspection = await inspections.get(rt, hazard.inspection_id)
    assert inspection.state is inspections.State.DONE
    assert inspection.place == "3号楼"
    assert inspection.hazard_refs == ["H-0001"]
    assert len(hazard.photos) == 1
    assert hazard.photos[0].path
    assert (rt.settings.data_dir / hazard.photos[0].path).read_bytes() == PNG

    # A button from the finished walk changes nothing.
    await guard.click(card, card.callback_data[0])
    await fake_telegram.wait_for(
        lambda c: c.method == "answerCallbackQuery" and "按钮" in str(c.params.get("text"))
    )
    assert await stored(rt, inspection_table) == 1


async def test_a_cancelled_walk_is_recorded_as_abandoned(
    app: AnyApp, fake_telegram: FakeBotAPI
) -> None:
    rt = runtime_of(app)
    boss = fake_telegram.user(SUPERADMIN_ID, "王处长", username="boss")
    await say(fake_telegram, boss, "/start", "")
    await send_file(fake_telegram, boss, b"Lab check\n- Hood works\n", "lab.txt", "已导入")
    card = await say(fake_telegram, boss, "/inspect 1", "第 1/1 项")
    await press(fake_telegram, boss, card, "cancel", "检查已取消")
    inspection = await inspections.get(rt, 1)
    assert inspection.state is inspections.State.ABANDONED
    assert await stored(rt, hazard_table) == 0


# --- the command line ------------------------------------------------------------------------


def safecampus(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFECAMPUS_")}
    env["PYTHONPATH"] = str(ROOT)
    env["SAFECAMPUS_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'safecampus.db'}"
    env["SAFECAMPUS_DATA_DIR"] = str(tmp_path / "data")
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def _admin(rt: Runtime) -> Actor:
    from bot.services import org

    return await org.identify(rt, profile(SUPERADMIN_ID, "王处长", "boss"), private=True)


async def test_checklist_import_on_the_command_line(tmp_path: Path, clock: FakeClock) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD + "- name: x\n", encoding="utf-8")
    result = safecampus(tmp_path, "checklist", "import", str(bad))
    assert result.returncode == 1
    assert "not imported, nothing stored; 1 problem(s)" in result.stderr
    assert "Line 5: malformed YAML" in result.stderr
    assert "Traceback" not in result.stderr

    good = tmp_path / "good.yaml"
    good.write_text(GOOD + "", encoding="utf-8")
    result = safecampus(tmp_path, "checklist", "import", str(good))
    assert result.returncode == 0, result.stderr
    assert "new checklist: 宿舍消防检查" in result.stdout
    again = safecampus(tmp_path, "checklist", "import", str(good))
    assert "replaced the items of: 宿舍消防检查" in again.stdout

    rt = await open_runtime(make_settings(tmp_path), clock)
    try:
        (checklist,) = await inspections.list_checklists(rt, await _admin(rt))
        assert [item.text for item in checklist.items] == [
            "疏散通道畅通",
            "灭火器在有效期",
            "无违章电器",
        ]
    finally:
        await rt.db.close()
    missing = safecampus(tmp_path, "checklist", "import", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1
    assert "cannot read" in missing.stderr


async def test_a_walk_left_idle_times_out_as_abandoned(
    tmp_path: Path, fake_telegram: FakeBotAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    import handlers.inspections as flow

    monkeypatch.setattr(flow, "TIMEOUT_SECONDS", 0.5)
    async with running_bot(bot_settings(tmp_path / "b", fake_telegram)) as application:
        rt = runtime_of(application)
        boss = fake_telegram.user(SUPERADMIN_ID, "王处长", username="boss")
        await say(fake_telegram, boss, "/start", "")
        await send_file(fake_telegram, boss, b"Lab check\nHood works\n", "lab.txt", "已导入")
        since = len(fake_telegram.calls)
        await say(fake_telegram, boss, "/inspect Lab check 201", "第 1/1 项")
        await expect(fake_telegram, boss.id, since, "超时")
        inspection = await inspections.get(rt, 1)
        assert inspection.state is inspections.State.ABANDONED
        assert inspection.place == "201"
