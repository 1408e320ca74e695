"""Whole flows through the real Application and the fake Telegram server, as several users:
superadmin start, invitations, joining, groups and their binding, help, language, bad input."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from telegram import Update
from telegram.ext import Application, CommandHandler

from bot.app import runtime_of
from bot.outbox import Recipient
from bot.services import invitations, org
from bot.services.models import Purpose, Role
from tests.fakebotapi import Call, FakeBotAPI, FakeUser
from tests.harness import bot_settings, running_bot
from tests.support import SUPERADMIN_ID, FakeClock

AnyApp = Application[Any, Any, Any, Any, Any, Any]
LINK = re.compile(r"https://t\.me/safecampus_test_bot\?start=(join-[\w-]+)")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def app(tmp_path: Path, fake_telegram: FakeBotAPI, clock: FakeClock) -> AsyncIterator[AnyApp]:
    async with running_bot(bot_settings(tmp_path, fake_telegram), clock=clock) as application:
        yield application


@pytest.fixture
def boss(fake_telegram: FakeBotAPI) -> FakeUser:
    return fake_telegram.user(SUPERADMIN_ID, "王处长", username="boss", language_code="zh-hans")


async def say(telegram: FakeBotAPI, user: FakeUser, text: str, chat: Any = None) -> Call:
    """``user`` sends ``text`` and the bot's next message in that chat is returned."""
    await user.send(text, chat)
    return await telegram.next_message((chat or user.private_chat).id)


async def invite(telegram: FakeBotAPI, admin: FakeUser, args: str) -> tuple[Call, str]:
    """An admin's /invite; returns the photo message and the deep-link payload."""
    reply = await say(telegram, admin, f"/invite {args}")
    assert reply.method == "sendPhoto", reply
    match = LINK.search(reply.visible_text or "")
    assert match, reply.visible_text
    return reply, match.group(1)


async def test_superadmin_is_recognised_on_first_start(
    app: AnyApp, fake_telegram: FakeBotAPI, boss: FakeUser
) -> None:
    reply = await say(fake_telegram, boss, "/start")
    assert "超级管理员" in (reply.visible_text or "")
    assert "/invite" in (reply.visible_text or "")
    stranger = fake_telegram.user(55, "路人甲")
    reply = await say(fake_telegram, stranger, "/start")
    assert "邀请" in (reply.visible_text or "")
    assert "/invite" not in (reply.visible_text or "")


@pytest.mark.parametrize(
    ("language", "joined_word", "role_word", "whoami_word"),
    [("zh-hans", "欢迎", "信息员", "信息员"), ("en", "Welcome", "informant", "informant")],
)
async def test_invite_join_whoami(
    app: AnyApp,
    fake_telegram: FakeBotAPI,
    boss: FakeUser,
    language: str,
    joined_word: str,
    role_word: str,
    whoami_word: str,
) -> None:
    await say(fake_telegram, boss, "/start")
    photo, payload = await invite(fake_telegram, boss, "informant 信息学院/计科2201")
    assert photo.files["photo"].startswith(b"\x89PNG")
    assert "计科2201" in (photo.visible_text or "")
    student = fake_telegram.user(77, "小李", username="xiaoli", language_code=language)
    welcome = await say(fake_telegram, student, f"/start {payload}")
    assert joined_word in (welcome.visible_text or "")
    assert role_word in (welcome.visible_text or "")
    assert "/invite" not in (welcome.visible_text or "")
    whoami = await say(fake_telegram, student, "/whoami")
    assert whoami_word in (whoami.visible_text or "")
    assert "信息学院/计科2201" in (whoami.visible_text or "")
    # The inviter hears about it through the outbox.
    notice = await fake_telegram.next_message(boss.id)
    assert "小李" in (notice.visible_text or "")
    assert "计科2201" in (notice.visible_text or "")
    # The student's personal command menu follows their roles and language.
    menu = [c["command"] for c in fake_telegram.commands("chat", chat_id=student.id)]
    assert "whoami" in menu
    assert "invite" not in menu


async def test_expired_used_up_revoked_and_unknown_links_are_explained(
    app: AnyApp, fake_telegram: FakeBotAPI, boss: FakeUser, clock: FakeClock
) -> None:
    await say(fake_telegram, boss, "/start")
    _, once = await invite(fake_telegram, boss, "guard 1 1")
    first, second = fake_telegram.user(81, "甲"), fake_telegram.user(82, "乙")
    assert "保安" in ((await say(fake_telegram, first, f"/start {once}")).visible_text or "")
    await fake_telegram.next_message(boss.id)  # the join notice
    assert "用完" in ((await say(fake_telegram, second, f"/start {once}")).visible_text or "")

    _, short = await invite(fake_telegram, boss, "guard 5 1")
    clock.advance(days=2)
    assert "过期" in ((await say(fake_telegram, second, f"/start {short}")).visible_text or "")

    photo, revocable = await invite(fake_telegram, boss, "guard 5 7")
    await boss.click(photo, photo.button_data("撤销"))
    revoked_reply = await fake_telegram.next_message(boss.id)
    assert "已撤销" in (revoked_reply.visible_text or "")
    assert "撤销" in ((await say(fake_telegram, second, f"/start {revocable}")).visible_text or "")
    # Pressing the stale button again changes nothing and says so.
    await boss.click(photo, photo.button_data("撤销"))
    assert "之前已经撤销" in ((await fake_telegram.next_message(boss.id)).visible_text or "")

    assert "无效" in ((await say(fake_telegram, second, "/start join-nonsense")).visible_text or "")
    actor = await org.identify(runtime_of(app), _profile(second), private=True)
    assert not actor.enrolled


async def test_binding_a_group(app: AnyApp, fake_telegram: FakeBotAPI, boss: FakeUser) -> None:
    group = fake_telegram.group(-500, "计科2201班级群")
    await fake_telegram.add_bot_to_group(group, boss)
    hello = await fake_telegram.next_message(group.id)
    assert "/bind" in (hello.visible_text or "")

    student = fake_telegram.user(90, "同学", username="tongxue")
    refused = await say(fake_telegram, student, "/bind class 信息学院/计科2201", group)
    assert "没有权限" in (refused.visible_text or "")
    rt = runtime_of(app)
    status = await org.group_status(rt, Recipient("telegram", str(group.id)))
    assert status is not None
    assert status.purpose is None

    bound = await say(fake_telegram, boss, "/bind class 信息学院/计科2201", group)
    assert "班级群" in (bound.visible_text or "")
    status = await org.group_status(rt, Recipient("telegram", str(group.id)))
    assert status is not None
    assert status.purpose is Purpose.CLASS
    assert status.unit is not None
    assert status.unit.path == "信息学院/计科2201"

    usage = await say(fake_telegram, boss, "/bind lunch", group)
    assert "用途" in (usage.visible_text or "")

    supergroup = await fake_telegram.migrate_group(group, -1000500)
    moved = await _eventually_group(rt, supergroup.id)
    assert moved.purpose is Purpose.CLASS

    unbound = await say(fake_telegram, boss, "/unbind", supergroup)
    assert "解除" in (unbound.visible_text or "")

    await fake_telegram.remove_bot_from_group(supergroup, boss)
    for _ in range(100):
        status = await org.group_status(rt, Recipient("telegram", str(supergroup.id)))
        if status is not None and not status.active:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("removal from the group was not recorded")


async def test_help_shows_only_what_the_roles_allow(
    app: AnyApp, fake_telegram: FakeBotAPI, boss: FakeUser
) -> None:
    admin_help = (await say(fake_telegram, boss, "/help")).visible_text or ""
    assert "/invite" in admin_help
    assert "/bind" in admin_help
    lines = admin_help.splitlines()
    assert any(line.startswith("/invite — ") for line in lines)  # one command a line
    assert any(line.startswith("/compliance — ") for line in lines)
    guest = fake_telegram.user(99, "Guest", language_code="en")
    guest_help = (await say(fake_telegram, guest, "/help")).visible_text or ""
    assert "/whoami" in guest_help
    assert "/invite" not in guest_help
    assert "/bind" not in guest_help
    assert "help" in guest_help.lower()
    private_zh = [c["command"] for c in fake_telegram.commands("all_private_chats", "zh")]
    private_en = fake_telegram.commands("all_private_chats", "en")
    group_admins = [c["command"] for c in fake_telegram.commands("all_chat_administrators")]
    assert {"start", "help", "whoami"} <= set(private_zh)
    assert "invite" not in private_zh
    assert "bind" in group_admins
    assert any("language" in c["description"].lower() for c in private_en)


async def test_wrong_role_wrong_chat_and_forged_buttons_change_nothing(
    app: AnyApp, fake_telegram: FakeBotAPI, boss: FakeUser
) -> None:
    guest = fake_telegram.user(120, "访客")
    assert "没有权限" in ((await say(fake_telegram, guest, "/invite guard")).visible_text or "")
    assert "没有权限" in ((await say(fake_telegram, guest, "/people")).visible_text or "")
    assert "没有权限" in (
        (await say(fake_telegram, guest, f"/revoke {SUPERADMIN_ID} admin")).visible_text or ""
    )
    group = fake_telegram.group(-600, "闲聊群")
    await fake_telegram.add_bot_to_group(group, boss)
    await fake_telegram.next_message(group.id)
    assert "私聊" in ((await say(fake_telegram, boss, "/invite guard", group)).visible_text or "")
    assert "群里" in ((await say(fake_telegram, boss, "/bind staff")).visible_text or "")
    assert "格式" in ((await say(fake_telegram, boss, "/invite")).visible_text or "")
    assert "单位路径" in ((await say(fake_telegram, boss, "/invite guard a//b")).visible_text or "")
    assert "不认识" in ((await say(fake_telegram, boss, "/fly")).visible_text or "")

    menu = await say(fake_telegram, guest, "/language")
    for forged in ("lang:fr", "inv:revoke:999", "inv:revoke:x", "people:1:abc", "zzz"):
        await guest.click(menu, forged)
        answer = await fake_telegram.wait_for(
            lambda call: (
                (call.method == "answerCallbackQuery" and "失效" in str(call.params.get("text")))
                or (call.method == "answerCallbackQuery" and "权限" in str(call.params.get("text")))
            ),
        )
        fake_telegram.calls.remove(answer)
    rt = runtime_of(app)
    actor = await org.identify(rt, _profile(guest), private=True)
    assert actor.person.locale is None
    assert not actor.enrolled


async def test_language_button_switches_the_conversation(
    app: AnyApp, fake_telegram: FakeBotAPI
) -> None:
    person = fake_telegram.user(130, "小张")
    menu = await say(fake_telegram, person, "/language")
    await person.click(menu, menu.button_data("English"))
    await fake_telegram.wait_for(
        lambda call: call.method == "editMessageText" and "English" in str(call.params.get("text"))
    )
    assert "Telegram id" in ((await say(fake_telegram, person, "/whoami")).visible_text or "")


async def test_people_and_revoke(app: AnyApp, fake_telegram: FakeBotAPI, boss: FakeUser) -> None:
    await say(fake_telegram, boss, "/start")
    _, payload = await invite(fake_telegram, boss, "officer 3")
    officer = fake_telegram.user(140, "值班员甲", username="duty1")
    await say(fake_telegram, officer, f"/start {payload}")
    await fake_telegram.next_message(boss.id)
    listing = (await say(fake_telegram, boss, "/people")).visible_text or ""
    assert "值班员甲" in listing
    assert "值班员" in listing
    done = (await say(fake_telegram, boss, "/revoke @duty1 officer")).visible_text or ""
    assert "已取消" in done
    notice = await fake_telegram.next_message(officer.id)
    assert "取消" in (notice.visible_text or "")
    actor = await org.identify(runtime_of(app), _profile(officer), private=True)
    assert Role.OFFICER not in actor.roles


async def test_a_personal_menu_follows_role_changes(
    app: AnyApp, fake_telegram: FakeBotAPI, boss: FakeUser
) -> None:
    await say(fake_telegram, boss, "/start")
    _, payload = await invite(fake_telegram, boss, "admin 信息学院")
    dean = fake_telegram.user(141, "院长", username="dean")
    await say(fake_telegram, dean, f"/start {payload}")

    def menu() -> list[str]:
        return [c["command"] for c in fake_telegram.commands("chat", chat_id=dean.id)]

    await fake_telegram.wait_until(lambda: "invite" in menu(), what="admin commands in the menu")
    await say(fake_telegram, boss, "/revoke @dean admin")
    await fake_telegram.wait_until(lambda: "invite" not in menu(), what="admin commands gone")
    assert "whoami" in menu()


async def test_an_unexpected_failure_gives_an_incident_code_not_a_traceback(
    app: AnyApp, fake_telegram: FakeBotAPI, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(update: Update, context: Any) -> None:
        raise RuntimeError("disk on fire")

    app.add_handler(CommandHandler("boom", broken), group=-5)
    person = fake_telegram.user(150, "Tester", language_code="en")
    reply = (await say(fake_telegram, person, "/boom")).visible_text or ""
    code = re.search(r"incident code ([0-9A-F]{6})", reply)
    assert code, reply
    assert "Traceback" not in reply
    assert "disk on fire" not in reply
    assert any(
        code.group(1) in record.getMessage() or getattr(record, "incident", None) == code.group(1)
        for record in caplog.records
    )


def _profile(user: FakeUser) -> org.Profile:
    return org.Profile(
        telegram_id=user.id,
        username=user.username,
        full_name=user.first_name,
        language_code=user.language_code,
    )


async def _eventually_group(rt: Any, chat_id: int) -> Any:
    for _ in range(100):
        status = await org.group_status(rt, Recipient("telegram", str(chat_id)))
        if status is not None:
            return status
        await asyncio.sleep(0.02)
    raise AssertionError(f"group {chat_id} never appeared")


async def test_editing_an_old_command_does_not_run_it_again(
    app: AnyApp, fake_telegram: FakeBotAPI, boss: FakeUser
) -> None:
    sent = await boss.send("/invite guard 30 14")
    await fake_telegram.next_message(boss.id)
    await boss.edit(sent, "/invite guard 30 15")
    await fake_telegram.no_message(boss.id, within=0.5)
    rt = runtime_of(app)
    actor = await org.identify(rt, _profile(boss), private=True)
    assert len(await invitations.open_invitations(rt, actor)) == 1


async def test_a_scoped_admin_learns_nothing_outside_their_unit(
    app: AnyApp, fake_telegram: FakeBotAPI, boss: FakeUser
) -> None:
    await say(fake_telegram, boss, "/start")
    _, dean_link = await invite(fake_telegram, boss, "admin 信息学院")
    _, other_link = await invite(fake_telegram, boss, "informant 外语学院/英语2201")
    dean = fake_telegram.user(160, "信息学院院长", username="dean")
    student = fake_telegram.user(161, "外语学生", username="waiyu")
    await say(fake_telegram, dean, f"/start {dean_link}")
    await say(fake_telegram, student, f"/start {other_link}")
    refusal = (await say(fake_telegram, dean, "/revoke @waiyu informant")).visible_text or ""
    assert "外语学生" not in refusal
    assert "@waiyu" in refusal  # only what the dean typed
    rt = runtime_of(app)
    async with rt.db.read() as conn:
        other = await org.find_unit(conn, "外语学院/英语2201", rt.now())
    menu = await say(fake_telegram, dean, "/language")
    await dean.click(menu, f"people:{other.id}:0")
    answer = await fake_telegram.wait_for(
        lambda call: call.method == "answerCallbackQuery" and "权限" in str(call.params.get("text"))
    )
    assert "外语学院" not in str(answer.params.get("text"))
    still = await org.identify(rt, _profile(student), private=True)
    assert still.enrolled


async def test_an_english_speaking_admin_binds_and_unbinds_in_english(
    app: AnyApp, fake_telegram: FakeBotAPI
) -> None:
    chief = fake_telegram.user(SUPERADMIN_ID, "Chief", username="chief", language_code="en")
    group = fake_telegram.group(-700, "Guard team")
    await fake_telegram.add_bot_to_group(group, chief)
    await fake_telegram.next_message(group.id)  # the greeting, in the school's language
    bound = (await say(fake_telegram, chief, "/bind staff", group)).visible_text or ""
    assert "guard team group" in bound
    assert "the whole school" in bound
    usage = (await say(fake_telegram, chief, "/bind", group)).visible_text or ""
    assert "Usage" in usage
    unbound = (await say(fake_telegram, chief, "/unbind", group)).visible_text or ""
    assert "no longer" in unbound
    stranger = fake_telegram.user(171, "Visitor", language_code="en")
    refused = (await say(fake_telegram, stranger, "/bind staff", group)).visible_text or ""
    assert "not allowed" in refused
