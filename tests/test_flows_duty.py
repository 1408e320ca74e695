"""The duty roster through the real Application and the fake Telegram server: an admin sends a
roster CSV (refused whole for one bad row, then accepted), /duty, the shift reminder once across
a restart, /handover seen by the next shift, refusals; and `safecampus duty import`."""

from __future__ import annotations

import os
import subprocess
import sys
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
from bot.services import org
from bot.store.tables import duty_shifts, handovers
from schedules import duty as duty_schedule
from tests.fakebotapi import FakeBotAPI, FakeUser
from tests.harness import bot_settings, running_bot
from tests.support import SUPERADMIN_ID, FakeClock, enrol, make_settings, open_runtime, profile

AnyApp = Application[Any, Any, Any, Any, Any, Any]
SHANGHAI = ZoneInfo("Asia/Shanghai")
EARLY = datetime(2026, 9, 1, 7, 0, tzinfo=SHANGHAI)
ROOT = Path(__file__).resolve().parent.parent

GOOD = (
    "date,shift,role,person\n"
    "2026-09-01,day,leader,@boss\n"
    "2026-09-01,day,guard,@xiaozhang\n"
    "2026-09-01,night,officer,@xiaoli\n"
)
ONE_BAD_ROW = (
    "date,shift,role,person\n"
    "2026-09-01,day,leader,@boss\n"
    "2026-09-01,evening,guard,@xiaozhang\n"
    "2026-09-01,night,officer,@xiaoli\n"
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(EARLY.astimezone(UTC))


@pytest.fixture
async def app(tmp_path: Path, fake_telegram: FakeBotAPI, clock: FakeClock) -> AsyncIterator[AnyApp]:
    async with running_bot(bot_settings(tmp_path, fake_telegram), clock=clock) as application:
        yield application


@dataclass
class Team:
    boss: FakeUser  # superadmin, leader on the day shift
    guard: FakeUser  # @xiaozhang, day shift
    officer: FakeUser  # @xiaoli, night shift


async def say(telegram: FakeBotAPI, user: FakeUser, text: str) -> str:
    """``user`` sends ``text`` in private; the visible text of the bot's next message there."""
    await user.send(text)
    return (await telegram.next_message(user.id)).visible_text or ""


async def send_file(
    telegram: FakeBotAPI, user: FakeUser, data: bytes, name: str, mime: str = "text/csv"
) -> str:
    await user.send_document(data, name, mime_type=mime)
    return (await telegram.next_message(user.id)).visible_text or ""


async def join(telegram: FakeBotAPI, boss: FakeUser, user: FakeUser, role: str) -> None:
    await boss.send(f"/invite {role}")
    photo = await telegram.next_message(boss.id)
    payload = (photo.visible_text or "").split("?start=")[1].split()[0]
    await say(telegram, user, f"/start {payload}")
    await telegram.next_message(boss.id)  # "… joined" notice to the inviter


async def team(telegram: FakeBotAPI) -> Team:
    boss = telegram.user(SUPERADMIN_ID, "王处长", username="boss")
    await say(telegram, boss, "/start")
    guard = telegram.user(301, "小张", username="xiaozhang")
    officer = telegram.user(302, "小李", username="xiaoli")
    await join(telegram, boss, guard, "guard")
    await join(telegram, boss, officer, "officer")
    return Team(boss=boss, guard=guard, officer=officer)


async def stored(rt: Runtime, table: Any) -> int:
    async with rt.db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar_one()


async def test_a_roster_with_one_bad_row_is_refused_whole_then_a_good_one_makes_duty_right(
    app: AnyApp, fake_telegram: FakeBotAPI, clock: FakeClock
) -> None:
    t = await team(fake_telegram)
    rt = runtime_of(app)
    refused = await send_file(fake_telegram, t.boss, ONE_BAD_ROW.encode(), "roster.csv")
    assert "值班表没有导入" in refused
    assert "第 3 行：没有「evening」这个班次（可用：day, night）" in refused
    assert "第 2 行" not in refused
    assert await stored(rt, duty_shifts) == 0

    accepted = await send_file(fake_telegram, t.boss, GOOD.encode(), "roster.csv")
    assert "值班表已导入" in accepted
    assert "3 条安排，3 人，2026-09-01 至 2026-09-01" in accepted
    assert await stored(rt, duty_shifts) == 3

    clock.current = datetime(2026, 9, 1, 9, 0, tzinfo=SHANGHAI).astimezone(UTC)
    board = await say(fake_telegram, t.guard, "/duty")
    now_part, today_part = board.split("今日值班表")
    assert "09-01（周二）白班 08:00–20:00" in now_part
    assert "带班领导：王处长 (@boss)" in now_part
    assert "值班保安：小张 (@xiaozhang)" in now_part
    assert "小李" not in now_part
    assert "夜班 20:00–次日08:00" in today_part
    assert "值班员：小李 (@xiaoli)" in today_part

    again = await send_file(fake_telegram, t.boss, GOOD.encode(), "roster.csv")
    assert "原有的值班安排（3 条）已被本文件替换" in again


async def test_the_shift_reminder_goes_out_once_across_a_restart(
    tmp_path: Path, fake_telegram: FakeBotAPI, clock: FakeClock
) -> None:
    settings = bot_settings(tmp_path, fake_telegram)
    async with running_bot(settings, clock=clock):
        t = await team(fake_telegram)
        await send_file(fake_telegram, t.boss, GOOD.encode(), "roster.csv")

    clock.current = datetime(2026, 9, 1, 8, 0, 30, tzinfo=SHANGHAI).astimezone(UTC)
    async with running_bot(settings, clock=clock) as application:
        # The start-up pass finds the day shift's start.
        reminder = (await fake_telegram.next_message(t.guard.id)).visible_text or ""
        assert "值班提醒" in reminder
        assert "白班（08:00–20:00）开始了，你是本班的值班保安" in reminder
        assert "上一班没有留下交班记录" in reminder
        assert "值班提醒" in ((await fake_telegram.next_message(t.boss.id)).visible_text or "")
        progress = await duty_schedule.run(runtime_of(application))
        assert progress.sent == []
    async with running_bot(settings, clock=clock):
        await fake_telegram.no_message(t.guard.id, within=0.5)
    await fake_telegram.no_message(t.officer.id)


async def test_a_handover_is_seen_by_the_next_shift(
    app: AnyApp, fake_telegram: FakeBotAPI, clock: FakeClock
) -> None:
    t = await team(fake_telegram)
    await send_file(fake_telegram, t.boss, GOOD.encode(), "roster.csv")
    clock.current = datetime(2026, 9, 1, 19, 40, tzinfo=SHANGHAI).astimezone(UTC)
    refused = await say(fake_telegram, t.officer, "/handover 还没上班")
    assert "你现在不在值班" in refused
    usage = await say(fake_telegram, t.guard, "/handover")
    assert "用法：/handover" in usage
    saved = await say(fake_telegram, t.guard, "/handover 东门道闸故障已报修\n夜班请人工放行")
    assert "交班记录已保存（09-01（周二）白班）" in saved
    assert await stored(runtime_of(app), handovers) == 1

    clock.current = datetime(2026, 9, 1, 20, 0, tzinfo=SHANGHAI).astimezone(UTC)
    await duty_schedule.run(runtime_of(app))
    reminder = (await fake_telegram.next_message(t.officer.id)).visible_text or ""
    assert "夜班（20:00–次日08:00）开始了，你是本班的值班员" in reminder
    assert "最新交班（小张 (@xiaozhang)，09-01（周二）白班，09-01 19:40）" in reminder
    assert "东门道闸故障已报修\n夜班请人工放行" in reminder
    board = await say(fake_telegram, t.officer, "/duty")
    assert "东门道闸故障已报修" in board


async def test_files_from_non_admins_and_wrong_files_are_refused(
    app: AnyApp, fake_telegram: FakeBotAPI
) -> None:
    t = await team(fake_telegram)
    rt = runtime_of(app)
    assert "没有权限" in await send_file(fake_telegram, t.guard, GOOD.encode(), "roster.csv")
    not_csv = await send_file(fake_telegram, t.boss, b"%PDF-1.4", "排班.pdf", "application/pdf")
    assert "只接受 CSV" in not_csv
    gbk = GOOD.replace("@boss", "@boss,王处长").encode("gbk") + "处长".encode("gbk")
    assert "不是 UTF-8" in await send_file(fake_telegram, t.boss, gbk, "roster.csv")
    assert await stored(rt, duty_shifts) == 0
    stranger = fake_telegram.user(999, "路人", username="passerby")
    await say(fake_telegram, stranger, "/start")
    assert "没有权限" in await say(fake_telegram, stranger, "/duty")


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


async def test_duty_import_on_the_command_line(tmp_path: Path, clock: FakeClock) -> None:
    rt = await open_runtime(make_settings(tmp_path), clock)
    try:
        boss = await org.identify(rt, profile(SUPERADMIN_ID, "王处长", "boss"), private=True)
        await enrol(rt, boss, 301, "guard")  # @u301
        await org.identify(rt, profile(302, "小李", "xiaoli"), private=False)  # seen in a group
    finally:
        await rt.db.close()
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "date,shift,role,person\n"
        "2026-09-01,day,guard,@u301\n"
        "2026-09-01,day,boss,302\n"
        "2026-09-01,night,guard,@x\n"
    )
    result = safecampus(tmp_path, "duty", "import", str(bad))
    assert result.returncode == 1
    assert "not imported, nothing stored; 2 problem(s)" in result.stderr
    assert "Line 3: “boss” is not a role: use leader, officer or guard" in result.stderr
    assert "Line 4: the bot does not know “@x” yet" in result.stderr
    assert "Traceback" not in result.stderr

    good = tmp_path / "good.csv"
    good.write_text(
        "date,shift,role,person\n2026-09-01,day,guard,@u301\n2026-09-01,night,officer,302\n"
    )
    result = safecampus(tmp_path, "duty", "import", str(good))
    assert result.returncode == 0, result.stderr
    assert "imported 2 assignments for 2 people, 2026-09-01 to 2026-09-01 (1 days)" in result.stdout
    assert "warning: 小李 has never opened the bot" in result.stdout
    rt = await open_runtime(make_settings(tmp_path), clock)
    try:
        assert await stored(rt, duty_shifts) == 2
    finally:
        await rt.db.close()
    missing = safecampus(tmp_path, "duty", "import", str(tmp_path / "nope.csv"))
    assert missing.returncode == 1
    assert "cannot read" in missing.stderr
