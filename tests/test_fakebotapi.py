"""The fake Bot API works with a real python-telegram-bot Application."""

from __future__ import annotations

import datetime as dtm
import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from telegram import (
    BotCommand,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeChat,
    ChatMemberUpdated,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Update,
)
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
)
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.fakebotapi import FakeBotAPI
from tests.harness import polling

# A 1×1 PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d4944415478da63f8ffff3f0005fe02fea7d6a4280000000049454e44ae426082"
)

Context = ContextTypes.DEFAULT_TYPE
App = Application[Any, Any, Any, Any, Any, Any]


async def start(update: Update, context: Context) -> None:
    assert update.message is not None
    assert update.effective_user is not None
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Yes", callback_data="answer:yes")]])
    await update.message.reply_html(
        f"Welcome, <b>{update.effective_user.first_name}</b>!", reply_markup=keyboard
    )


async def ping(update: Update, context: Context) -> None:
    assert update.message is not None
    await update.message.reply_text("pong")


async def button(update: Update, context: Context) -> None:
    query = update.callback_query
    assert query is not None
    await query.answer("got it")
    await query.edit_message_text(f"You chose {query.data}")


async def photo(update: Update, context: Context) -> None:
    assert update.message is not None
    largest = update.message.photo[-1]
    data = bytes(await (await largest.get_file()).download_as_bytearray())
    context.bot_data["photo"] = data
    await update.message.reply_text(f"got {len(data)} bytes {hashlib.sha256(data).hexdigest()}")


async def my_chat_member(update: Update, context: Context) -> None:
    change = update.my_chat_member
    assert change is not None
    context.bot_data.setdefault("my_chat_member", []).append(change)
    if change.new_chat_member.status == "member":
        await context.bot.send_message(change.chat.id, "Hello, group!")


async def migrated(update: Update, context: Context) -> None:
    assert update.message is not None
    message = update.message
    context.bot_data.setdefault("migrations", []).append(
        (message.chat.id, message.migrate_to_chat_id, message.migrate_from_chat_id)
    )


@pytest.fixture
async def app(fake_telegram: FakeBotAPI) -> AsyncIterator[App]:
    """A polling Application with a few handlers, talking to the fake."""
    application = (
        ApplicationBuilder()
        .token(FakeBotAPI.TOKEN)
        .base_url(fake_telegram.base_url)
        .base_file_url(fake_telegram.file_base_url)
        .build()
    )
    application.add_handler(CommandHandler("start", start))
    application.add_handler(CommandHandler("ping", ping))
    application.add_handler(CallbackQueryHandler(button))
    application.add_handler(MessageHandler(filters.PHOTO, photo))
    application.add_handler(ChatMemberHandler(my_chat_member, ChatMemberHandler.MY_CHAT_MEMBER))
    application.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, migrated))
    async with polling(application):
        yield application


def seconds(value: int | dtm.timedelta) -> float:
    """RetryAfter.retry_after is an int or a timedelta depending on PTB's settings."""
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


async def test_start_in_private_gets_a_reply(fake_telegram: FakeBotAPI, app: App) -> None:
    alice = fake_telegram.user(1001, "Alice", username="alice")

    update = await alice.send("/start")

    reply = await fake_telegram.next_message(alice.id)
    assert update["message"]["entities"] == [{"offset": 0, "length": 6, "type": "bot_command"}]
    assert reply.text == "Welcome, <b>Alice</b>!"
    assert reply.visible_text == "Welcome, Alice!"
    assert reply.params["parse_mode"] == "HTML"
    assert reply.callback_data == ["answer:yes"]
    assert reply.message is not None
    assert reply.message["from"]["id"] == FakeBotAPI.BOT_ID
    assert "reply_to_message" not in reply.message  # PTB quotes only in groups
    assert reply.message["entities"] == [{"offset": 9, "length": 5, "type": "bold"}]
    await fake_telegram.no_message(alice.id, within=0.1)
    await fake_telegram.wait_delivered(update)
    assert fake_telegram.sent_messages(alice.id) == [reply]
    getme = await fake_telegram.wait_for(lambda call: call.method == "getMe")
    assert getme.result["username"] == FakeBotAPI.BOT_USERNAME


async def test_command_in_group(fake_telegram: FakeBotAPI, app: App) -> None:
    bob = fake_telegram.user(1002, "Bob")
    group = fake_telegram.group(-2001, "Class 3")

    await bob.send("hello everyone", chat=group)  # privacy mode: not for the bot
    command = await bob.send("/ping@safecampus_test_bot", chat=group)

    reply = await fake_telegram.next_message(group.id)
    assert reply.visible_text == "pong"
    assert reply.message is not None
    assert reply.message["chat"] == {"id": -2001, "type": "group", "title": "Class 3"}
    assert reply.message["reply_to_message"]["message_id"] == command["message"]["message_id"]
    await fake_telegram.no_message(group.id, within=0.1)
    assert fake_telegram.sent_messages(bob.id) == []


async def test_button_click_reaches_callback_handler(fake_telegram: FakeBotAPI, app: App) -> None:
    carol = fake_telegram.user(1003, "Carol")
    await carol.send("/start")
    welcome = await fake_telegram.next_message(carol.id)

    click = await carol.click(welcome, welcome.button_data("Yes"))

    answer = await fake_telegram.wait_for(lambda call: call.method == "answerCallbackQuery")
    assert answer.ok
    assert answer.params["callback_query_id"] == click["callback_query"]["id"]
    assert answer.params["text"] == "got it"
    edit = await fake_telegram.wait_for(lambda call: call.method == "editMessageText")
    assert edit.ok
    assert edit.message_id == welcome.message_id
    current = fake_telegram.message(carol.id, welcome.message_id)
    assert current is not None
    assert current["text"] == "You chose answer:yes"
    assert "reply_markup" not in current  # editing without a keyboard removes it


async def test_photo_from_user_can_be_downloaded(fake_telegram: FakeBotAPI, app: App) -> None:
    dave = fake_telegram.user(1004, "Dave")

    update = await dave.send_photo(PNG, caption="hazard in the lab")

    reply = await fake_telegram.next_message(dave.id)
    assert reply.visible_text == f"got {len(PNG)} bytes {hashlib.sha256(PNG).hexdigest()}"
    assert app.bot_data["photo"] == PNG
    sizes = update["message"]["photo"]
    assert [(size["width"], size["height"]) for size in sizes] == [(1, 1), (1, 1)]
    download = await fake_telegram.wait_for(lambda call: call.method == "downloadFile")
    assert download.ok
    assert download.params["file_path"].startswith("photos/")


async def test_bot_uploads_are_recorded(fake_telegram: FakeBotAPI, app: App) -> None:
    erin = fake_telegram.user(1005, "Erin")
    await erin.send("hi")

    sent = await app.bot.send_photo(erin.id, PNG, caption="QR")
    document = await app.bot.send_document(erin.id, b"a,b\n1,2\n", filename="export.csv")

    photo_call = await fake_telegram.next_message(erin.id)
    assert photo_call.files == {"photo": PNG}
    assert sent.photo[-1].file_id == photo_call.message["photo"][-1]["file_id"]  # type: ignore[index]
    document_call = await fake_telegram.next_message(erin.id)
    assert document_call.files["document"] == b"a,b\n1,2\n"
    assert document.document is not None
    assert document.document.file_name == "export.csv"
    again = await app.bot.send_photo(erin.id, sent.photo[-1].file_id)  # resend by file_id
    assert again.photo
    file = await app.bot.get_file(again.photo[-1].file_id)
    assert bytes(await file.download_as_bytearray()) == PNG


async def test_add_bot_to_group_is_a_my_chat_member_update(
    fake_telegram: FakeBotAPI, app: App
) -> None:
    frank = fake_telegram.user(1006, "Frank")
    group = fake_telegram.group(-2002, "Teachers")

    await fake_telegram.add_bot_to_group(group, by=frank)

    hello = await fake_telegram.next_message(group.id)
    assert hello.visible_text == "Hello, group!"
    change: ChatMemberUpdated = app.bot_data["my_chat_member"][0]
    assert change.chat.id == group.id
    assert change.from_user.id == frank.id
    assert (change.old_chat_member.status, change.new_chat_member.status) == ("left", "member")

    await fake_telegram.remove_bot_from_group(group, by=frank)
    await fake_telegram.wait_until(lambda: len(app.bot_data["my_chat_member"]) == 2)
    with pytest.raises(Forbidden, match="kicked"):
        await app.bot.send_message(group.id, "still here?")


async def test_migrate_group(fake_telegram: FakeBotAPI, app: App) -> None:
    grace = fake_telegram.user(1007, "Grace")
    group = fake_telegram.group(-2003, "Staff")
    await fake_telegram.add_bot_to_group(group, by=grace)
    await fake_telegram.next_message(group.id)

    supergroup = await fake_telegram.migrate_group(group, -1002003)

    assert supergroup.type == "supergroup"
    assert supergroup.title == "Staff"
    await fake_telegram.wait_until(lambda: len(app.bot_data.get("migrations", [])) == 2)
    assert app.bot_data["migrations"] == [
        (-2003, -1002003, None),
        (-1002003, None, -2003),
    ]
    with pytest.raises(ChatMigrated) as migrated:
        await app.bot.send_message(group.id, "hello?")
    assert migrated.value.new_chat_id == -1002003
    await app.bot.send_message(supergroup.id, "hello again")
    moved = await fake_telegram.next_message(supergroup.id)
    assert moved.visible_text == "hello again"


async def test_fail_and_heal(fake_telegram: FakeBotAPI, app: App) -> None:
    henry = fake_telegram.user(1008, "Henry")
    await henry.send("hi")

    fake_telegram.fail("sendMessage")
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await app.bot.send_message(henry.id, "one")
    with pytest.raises(NetworkError):
        await app.bot.send_message(henry.id, "two")
    fake_telegram.heal()
    await app.bot.send_message(henry.id, "three")

    fake_telegram.fail(None, status=500, times=1)
    with pytest.raises(NetworkError, match="Internal Server Error"):
        await app.bot.send_chat_action(henry.id, "typing")
    await app.bot.send_message(henry.id, "four")

    assert [call.visible_text for call in fake_telegram.sent_messages(henry.id)] == [
        "three",
        "four",
    ]
    failed = [call.status for call in fake_telegram.calls if not call.ok]
    assert failed == [502, 502, 500]


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_rate_limit_and_forbid(fake_telegram: FakeBotAPI, app: App) -> None:
    iris = fake_telegram.user(1009, "Iris")
    await iris.send("hi")

    fake_telegram.rate_limit("sendMessage", retry_after=7)
    with pytest.raises(RetryAfter) as limited:
        await app.bot.send_message(iris.id, "one")
    assert seconds(limited.value.retry_after) == 7
    assert fake_telegram.rate_limited == 1
    await app.bot.send_message(iris.id, "two")

    fake_telegram.forbid(iris.id)
    with pytest.raises(Forbidden, match="blocked by the user"):
        await app.bot.send_message(iris.id, "three")
    fake_telegram.unforbid(iris.id)
    await app.bot.send_message(iris.id, "four")


async def test_telegram_like_errors(fake_telegram: FakeBotAPI, app: App) -> None:
    jack = fake_telegram.user(1010, "Jack")
    stranger = fake_telegram.user(1011, "Stranger")
    await jack.send("hi")

    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await app.bot.send_message(424242, "who?")
    with pytest.raises(Forbidden, match="can't initiate conversation"):
        await app.bot.send_message(stranger.id, "hello")
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await app.bot.send_message(jack.id, "a <br> b", parse_mode="HTML")
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="x" * 65)]])
    with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):
        await app.bot.send_message(jack.id, "long data", reply_markup=markup)
    sent = await app.bot.send_message(jack.id, "same")
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await sent.edit_text("same")
    with pytest.raises(TimeoutError, match="sendMessage -> 400"):
        await fake_telegram.wait_for(lambda call: call.method == "sendPoll", timeout=0.05)


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_enforce_limits_private_chat(fake_telegram: FakeBotAPI, app: App) -> None:
    kate = fake_telegram.user(1012, "Kate")
    await kate.send("hi")
    fake_telegram.enforce_limits()

    await app.bot.send_message(kate.id, "first")
    with pytest.raises(RetryAfter) as limited:
        await app.bot.send_message(kate.id, "second")

    assert seconds(limited.value.retry_after) == 1
    assert fake_telegram.rate_limited == 1
    first, second = (c for c in fake_telegram.calls if c.method == "sendMessage")
    assert (first.status, second.status) == (200, 429)
    assert second.at - first.at < 1


async def test_set_my_commands_with_scope(fake_telegram: FakeBotAPI, app: App) -> None:
    group = fake_telegram.group(-2004, "Guards", type="supergroup")
    private = [BotCommand("start", "开始"), BotCommand("report", "上报隐患")]

    await app.bot.set_my_commands(
        private, scope=BotCommandScopeAllPrivateChats(), language_code="zh"
    )
    await app.bot.set_my_commands([BotCommand("ping", "Ping")], scope=BotCommandScopeChat(group.id))

    assert fake_telegram.commands("all_private_chats", "zh") == [
        {"command": "start", "description": "开始"},
        {"command": "report", "description": "上报隐患"},
    ]
    assert fake_telegram.commands("all_private_chats") == []
    assert fake_telegram.commands("chat", chat_id=group.id) == [
        {"command": "ping", "description": "Ping"}
    ]
    fetched = await app.bot.get_my_commands(
        scope=BotCommandScopeAllPrivateChats(), language_code="zh"
    )
    assert [command.command for command in fetched] == ["start", "report"]
    await app.bot.delete_my_commands(scope=BotCommandScopeChat(group.id))
    assert fake_telegram.commands("chat") == []
    with pytest.raises(BadRequest, match=r"(?i)bot_command_invalid"):
        await app.bot.set_my_commands([BotCommand("Bad-Name", "x")])


async def test_dates_follow_the_server_clock(fake_telegram: FakeBotAPI, app: App) -> None:
    fake_telegram.clock = lambda: 1_700_000_000.5
    leo = fake_telegram.user(1013, "Leo")

    update = await leo.send("/start")
    reply = await fake_telegram.next_message(leo.id)

    assert update["message"]["date"] == 1_700_000_000
    assert reply.message is not None
    assert reply.message["date"] == 1_700_000_000
    assert reply.at <= time.monotonic()
