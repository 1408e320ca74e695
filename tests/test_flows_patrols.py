"""Patrols through the real Application and the fake Telegram server: checkpoints placed by an
admin, a guard scanning and sharing locations, the staff group's one summary when the round
closes, "round not done" (across a restart too), the QR code's payload, refused scans and
locations, and patrol prompts that a new command leaves behind."""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import zxingcpp
from sqlalchemy import func, select
from telegram.ext import Application

from bot.app import runtime_of
from bot.runtime import Runtime
from bot.services.patrols import STALE_AFTER
from bot.store.tables import checkins, checkpoints, reports
from handlers import patrols as patrol_handlers
from schedules import patrols as patrol_schedule
from tests.fakebotapi import Call, FakeBotAPI, FakeChat, FakeUser
from tests.harness import bot_settings, running_bot
from tests.support import SUPERADMIN_ID, FakeClock

AnyApp = Application[Any, Any, Any, Any, Any, Any]
SHANGHAI = ZoneInfo("Asia/Shanghai")
NINE_AM = datetime(2026, 9, 1, 9, 0, tzinfo=SHANGHAI)
AFTER_WINDOW = datetime(2026, 9, 1, 10, 3, tzinfo=SHANGHAI)  # past the end and the grace
LAT, LON = 30.5, 114.3
METRE = 1 / 111_195  # degrees of latitude per metre


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NINE_AM.astimezone(UTC))


@pytest.fixture
async def app(tmp_path: Path, fake_telegram: FakeBotAPI, clock: FakeClock) -> AsyncIterator[AnyApp]:
    # Telegram's message dates follow the same clock as the bot.
    fake_telegram.clock = lambda: clock.current.timestamp()
    async with running_bot(bot_settings(tmp_path, fake_telegram), clock=clock) as application:
        yield application


@dataclass
class Campus:
    boss: FakeUser
    guard: FakeUser
    staff: FakeChat


async def say(telegram: FakeBotAPI, user: FakeUser, text: str, chat: Any = None) -> str:
    await user.send(text, chat)
    return (await telegram.next_message((chat or user.private_chat).id)).visible_text or ""


async def place(telegram: FakeBotAPI, boss: FakeUser, name: str, lat: float) -> None:
    asked = await boss.send(f"/checkpoint add {name}")
    assert asked
    prompt = await telegram.next_message(boss.id)
    keyboard = prompt.reply_markup or {}
    assert keyboard["keyboard"][0][0]["request_location"] is True
    await boss.send_location(lat, LON)
    assert "位置已设置" in ((await telegram.next_message(boss.id)).visible_text or "")


async def campus(telegram: FakeBotAPI, *, route: bool = True) -> Campus:
    """A guard, a staff group, 东门 and 图书馆 100 m apart, and the route 早巡 08:00–10:00."""
    boss = telegram.user(SUPERADMIN_ID, "王处长", username="boss")
    await say(telegram, boss, "/start")
    guard = telegram.user(301, "张保安", username="zhang")
    await boss.send("/invite guard")
    invite = await telegram.next_message(boss.id)
    payload = (invite.visible_text or "").split("?start=")[1].split()[0]
    await say(telegram, guard, f"/start {payload}")
    await telegram.next_message(boss.id)  # "… joined"
    staff = telegram.group(-800, "保安队群")
    await telegram.add_bot_to_group(staff, boss, as_admin=True)
    await telegram.next_message(staff.id)
    await say(telegram, boss, "/bind staff", staff)
    await place(telegram, boss, "东门", LAT)
    await place(telegram, boss, "图书馆", LAT + 100 * METRE)
    if route:
        saved = await say(telegram, boss, "/route add 早巡 08:00-10:00 东门 图书馆")
        assert "东门、图书馆" in saved
    return Campus(boss=boss, guard=guard, staff=staff)


async def token_of(rt: Runtime, name: str) -> str:
    async with rt.db.read() as conn:
        query = select(checkpoints.c.token).where(checkpoints.c.name == name)
        return str((await conn.execute(query)).scalar_one())


async def stored_checkins(rt: Runtime) -> int:
    async with rt.db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(checkins))).scalar_one()


async def scan(telegram: FakeBotAPI, guard: FakeUser, token: str) -> Call:
    await guard.send(f"/start cp-{token}")
    return await telegram.next_message(guard.id)


async def report_until_photos(telegram: FakeBotAPI, user: FakeUser) -> None:
    """``user`` starts /report and fills it in up to the step taking photos and a location."""
    await user.send("/report")
    step = await telegram.next_message(user.id)
    await user.click(step, step.button_data("治安"))
    await telegram.wait_for(
        lambda c: c.method == "editMessageText" and "第 2 步" in (c.visible_text or "")
    )
    await user.click(step, "rf:sev:serious")
    await telegram.wait_for(
        lambda c: c.method == "editMessageText" and "第 3 步" in (c.visible_text or "")
    )
    assert "第 4 步" in await say(telegram, user, "围墙外有人徘徊")


def png_pixels(png: bytes) -> memoryview:
    """The pixels (0 black, 255 white, a row at a time) of the 1-bit greyscale PNG segno
    writes: zxing-cpp reads raw pixels, and Pillow is not a dependency."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    chunks: dict[bytes, bytes] = {}
    at = 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind = png[at + 4 : at + 8]
        chunks[kind] = chunks.get(kind, b"") + png[at + 8 : at + 8 + length]
        at += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (1, 0)
    raw = zlib.decompress(chunks[b"IDAT"])
    stride = (width + 7) // 8
    above = bytes(stride)
    pixels = bytearray()
    for y in range(height):
        start = y * (stride + 1)
        kind, row = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for x in range(stride):  # undo the row's filter (PNG spec, section 9)
            left, up, corner = (row[x - 1], above[x], above[x - 1]) if x else (0, above[x], 0)
            if kind == 1:
                row[x] = (row[x] + left) & 0xFF
            elif kind == 2:
                row[x] = (row[x] + up) & 0xFF
            elif kind == 3:
                row[x] = (row[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                guess = left + up - corner
                near = min((left, up, corner), key=lambda value: abs(guess - value))
                row[x] = (row[x] + near) & 0xFF
        above = bytes(row)
        pixels.extend(255 if row[x // 8] >> (7 - x % 8) & 1 else 0 for x in range(width))
    return memoryview(bytes(pixels)).cast("B", (height, width))


def decoded(png: bytes) -> str:
    found = zxingcpp.read_barcode(png_pixels(png), formats=zxingcpp.BarcodeFormat.QRCode)
    assert found is not None, "no QR code in the image"
    return str(found.text)


async def test_a_guard_checks_in_and_the_staff_group_hears_once_when_the_round_closes(
    app: AnyApp, fake_telegram: FakeBotAPI, clock: FakeClock
) -> None:
    c = await campus(fake_telegram)
    rt = runtime_of(app)
    asked = await scan(fake_telegram, c.guard, await token_of(rt, "东门"))
    assert "东门" in (asked.visible_text or "")
    keyboard = (asked.reply_markup or {})["keyboard"]
    assert keyboard[0][0]["request_location"] is True
    await c.guard.send_location(LAT + 20 * METRE, LON, live_period=900)
    receipt = await fake_telegram.next_message(c.guard.id)
    assert "已核验" in (receipt.visible_text or "")
    assert "C-0001" in (receipt.visible_text or "")

    await scan(fake_telegram, c.guard, await token_of(rt, "图书馆"))
    await c.guard.send_location(LAT + 400 * METRE, LON)  # 300 m from 图书馆
    far = (await fake_telegram.next_message(c.guard.id)).visible_text or ""
    assert "距离过远（300 米）" in far

    shown = await say(fake_telegram, c.guard, "/round")
    assert "已到位（1/2）：东门" in shown
    assert "未到位：图书馆" in shown

    await fake_telegram.no_message(c.staff.id)
    clock.current = AFTER_WINDOW.astimezone(UTC)
    assert len(await patrol_schedule.run(rt)) == 1
    summary = (await fake_telegram.next_message(c.staff.id)).visible_text or ""
    assert "巡逻有漏巡" in summary
    assert "漏巡：图书馆" in summary
    assert "张保安" in summary
    assert await patrol_schedule.run(rt) == []
    await fake_telegram.no_message(c.staff.id)


async def test_a_window_without_check_ins_is_reported_as_not_done_once_across_a_restart(
    tmp_path: Path, fake_telegram: FakeBotAPI, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bot is down when the window ends; its start-up pass (not waiting 30 s here) catches up.
    monkeypatch.setattr(patrol_schedule, "STARTUP_DELAY", timedelta(seconds=0.2))
    fake_telegram.clock = lambda: clock.current.timestamp()
    settings = bot_settings(tmp_path, fake_telegram)
    async with running_bot(settings, clock=clock):
        c = await campus(fake_telegram)
    clock.current = AFTER_WINDOW.astimezone(UTC)
    async with running_bot(settings, clock=clock) as application:
        summary = (await fake_telegram.next_message(c.staff.id)).visible_text or ""
        assert "巡逻未进行" in summary
        assert "东门、图书馆" in summary
        assert await patrol_schedule.run(runtime_of(application)) == []
        await fake_telegram.no_message(c.staff.id, within=1)


async def test_the_start_up_pass_waits_for_the_backlog(app: AnyApp) -> None:
    assert app.job_queue is not None
    (job,) = app.job_queue.get_jobs_by_name("patrols_startup")
    assert job.next_t is not None
    assert job.next_t - datetime.now(UTC) > patrol_schedule.STARTUP_DELAY - timedelta(seconds=5)


async def test_the_qr_code_encodes_the_deep_link_and_reissuing_kills_the_old_one(
    app: AnyApp, fake_telegram: FakeBotAPI
) -> None:
    c = await campus(fake_telegram, route=False)
    rt = runtime_of(app)
    old = await token_of(rt, "东门")
    await c.boss.send("/checkpoints")
    listing = await fake_telegram.next_message(c.boss.id)
    await c.boss.click(listing, listing.button_data("东门"))
    card = await fake_telegram.wait_for(lambda call: call.method == "editMessageText")
    await c.boss.click(listing, card.button_data("二维码"))
    photo = await fake_telegram.next_message(c.boss.id)
    link = f"https://t.me/{FakeBotAPI.BOT_USERNAME}?start=cp-{old}"
    assert link == f"https://t.me/safecampus_test_bot?start=cp-{old}"
    assert link in (photo.visible_text or "")
    assert "东门" in (photo.visible_text or "")
    assert decoded(photo.files["photo"]) == link

    await c.boss.click(listing, card.button_data("作废并重新生成"))
    reissued = await fake_telegram.next_message(c.boss.id)
    assert "旧二维码立即失效" in (reissued.visible_text or "")
    fresh = await token_of(rt, "东门")
    new_photo = await fake_telegram.next_message(c.boss.id)
    assert decoded(new_photo.files["photo"]) == link.replace(old, fresh)
    refused = await scan(fake_telegram, c.guard, old)
    assert "已失效" in (refused.visible_text or "")
    assert await stored_checkins(rt) == 0


async def test_bad_scans_and_locations_are_refused_and_nothing_is_stored(
    app: AnyApp, fake_telegram: FakeBotAPI
) -> None:
    c = await campus(fake_telegram, route=False)
    rt = runtime_of(app)
    token = await token_of(rt, "东门")
    visitor = fake_telegram.user(399, "访客")
    refused = await scan(fake_telegram, visitor, token)
    assert "只有保安" in (refused.visible_text or "")
    in_group = await say(fake_telegram, c.guard, f"/start cp-{token}", c.staff)
    assert "私聊" in in_group
    await c.guard.send_location(LAT, LON, chat=c.staff)
    assert "群里发送的位置" in ((await fake_telegram.next_message(c.staff.id)).visible_text or "")
    await visitor.send_location(LAT, LON, chat=c.staff)  # not a guard: not a check-in attempt
    await fake_telegram.no_message(c.staff.id)
    await c.guard.send_location(LAT - 500 * METRE, LON)  # unscanned, near nothing
    assert "附近没有巡更点" in ((await fake_telegram.next_message(c.guard.id)).visible_text or "")
    assert await stored_checkins(rt) == 0

    await scan(fake_telegram, c.guard, token)
    await c.guard.send("🚫 不共享位置")
    declined = (await fake_telegram.next_message(c.guard.id)).visible_text or ""
    assert "无位置" in declined
    assert "未共享位置" in declined
    await c.guard.send_location(LAT + 10 * METRE, LON)  # unscanned, inside 东门's radius
    assert "已核验" in ((await fake_telegram.next_message(c.guard.id)).visible_text or "")
    assert await stored_checkins(rt) == 2


async def test_a_placement_left_waiting_does_not_take_a_reports_location(
    app: AnyApp, fake_telegram: FakeBotAPI
) -> None:
    c = await campus(fake_telegram, route=False)
    assert "西门" in await say(fake_telegram, c.boss, "/checkpoint add 西门")
    await report_until_photos(fake_telegram, c.boss)
    await c.boss.send_location(LAT + 500 * METRE, LON)
    assert "已收到位置" in ((await fake_telegram.next_message(c.boss.id)).visible_text or "")
    async with runtime_of(app).db.read() as conn:
        query = select(checkpoints.c.latitude).where(checkpoints.c.name == "西门")
        assert (await conn.execute(query)).scalar_one() is None


async def test_a_scan_does_not_take_a_location_meant_for_a_report(
    app: AnyApp, fake_telegram: FakeBotAPI
) -> None:
    c = await campus(fake_telegram, route=False)
    rt = runtime_of(app)
    token = await token_of(rt, "东门")
    await scan(fake_telegram, c.guard, token)
    await report_until_photos(fake_telegram, c.guard)  # the scan is abandoned
    await c.guard.send_location(LAT, LON)
    assert "已收到位置" in ((await fake_telegram.next_message(c.guard.id)).visible_text or "")
    assert await stored_checkins(rt) == 0
    # Scanning while a report is being filled in is a new command: the guard moved on to the
    # check-in, and the report flow steps aside (handlers/flows.py).
    await scan(fake_telegram, c.guard, token)
    await c.guard.send_location(LAT, LON)
    assert "已核验" in ((await fake_telegram.next_message(c.guard.id)).visible_text or "")
    assert await stored_checkins(rt) == 1


async def test_a_scan_waits_for_a_location_only_while_it_would_verify(
    app: AnyApp, fake_telegram: FakeBotAPI
) -> None:
    c = await campus(fake_telegram, route=False)
    rt = runtime_of(app)
    await scan(fake_telegram, c.guard, await token_of(rt, "东门"))
    # The scan was STALE_AFTER ago (the wait is measured on the monotonic clock).
    held = app.user_data[c.guard.id][patrol_handlers.SCAN]
    stale = held[-1] - STALE_AFTER.total_seconds() - 1
    app.user_data[c.guard.id][patrol_handlers.SCAN] = (*held[:-1], stale)
    await c.guard.send_location(LAT + 400 * METRE, LON)  # now simply a location, near nothing
    assert "附近没有巡更点" in ((await fake_telegram.next_message(c.guard.id)).visible_text or "")
    assert await stored_checkins(rt) == 0


async def test_a_photo_for_a_check_in_does_not_take_a_captioned_report(
    app: AnyApp, fake_telegram: FakeBotAPI
) -> None:
    c = await campus(fake_telegram, route=False)
    rt = runtime_of(app)
    await scan(fake_telegram, c.guard, await token_of(rt, "东门"))
    await c.guard.send_location(LAT, LON)
    receipt = await fake_telegram.next_message(c.guard.id)
    await c.guard.click(receipt, receipt.button_data("添加照片"))
    assert "C-0001" in ((await fake_telegram.next_message(c.guard.id)).visible_text or "")
    await c.guard.send_photo(b"\x89PNG photo of the wall", caption="/report 围墙有缺口")
    filed = (await fake_telegram.next_message(c.guard.id)).visible_text or ""
    assert "R-0001" in filed
    async with rt.db.read() as conn:
        assert (await conn.execute(select(checkins.c.photo_path))).scalar_one() is None
        query = select(func.count()).select_from(reports)
        assert (await conn.execute(query)).scalar_one() == 1
