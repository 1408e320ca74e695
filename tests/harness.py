"""Run the real SafeCampus Application against the fake Bot API, as `safecampus run` would."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from telegram.ext import Application

from bot.app import build_application
from bot.clock import Clock, utc_now
from bot.outbox.sender import SenderPolicy
from bot.settings import Settings
from tests.fakebotapi import Call, FakeBotAPI, FakeChat, FakeUser
from tests.support import make_settings

# Fast retries so that outage tests take a second, not minutes.
TEST_POLICY = SenderPolicy(backoff_base=0.05, backoff_max=0.2, idle_poll=0.2)


def bot_settings(tmp_path: Path, telegram: FakeBotAPI, **overrides: Any) -> Settings:
    """Settings pointing the bot at the fake Telegram server, storing under ``tmp_path``."""
    return make_settings(
        tmp_path,
        bot_token=FakeBotAPI.TOKEN,
        api_base_url=telegram.base_url,
        api_file_base_url=telegram.file_base_url,
        **overrides,
    )


@asynccontextmanager
async def polling(
    application: Application[Any, Any, Any, Any, Any, Any],
) -> AsyncIterator[Application[Any, Any, Any, Any, Any, Any]]:
    """Initialise, poll and start ``application``; stop it in reverse when the block ends.

    This is what ``run_polling`` does, minus the signal handling."""
    await application.initialize()
    if application.post_init is not None:
        await application.post_init(application)
    assert application.updater is not None
    await application.updater.start_polling(poll_interval=0, timeout=5)
    await application.start()
    try:
        yield application
    finally:
        await application.updater.stop()
        await application.stop()
        await application.shutdown()
        if application.post_shutdown is not None:
            await application.post_shutdown(application)


@asynccontextmanager
async def running_bot(
    settings: Settings, *, clock: Clock = utc_now, policy: SenderPolicy = TEST_POLICY
) -> AsyncIterator[Application[Any, Any, Any, Any, Any, Any]]:
    """The Application polling the fake server; stopped (like Ctrl-C) when the block ends."""
    application = build_application(settings, clock=clock, sender_policy=policy)
    async with polling(application):
        yield application


# --- talking to the bot as users do ------------------------------------------------------------


async def next_reply(telegram: FakeBotAPI, user: FakeUser, text: str, chat: Any = None) -> Call:
    """``user`` sends ``text`` (in ``chat``, else in private); the bot's next message there."""
    await user.send(text, chat)
    return await telegram.next_message((chat or user.private_chat).id)


async def shown_after(telegram: FakeBotAPI, chat_id: int, expect: str, since: int) -> Call:
    """The first message sent or edited in ``chat_id`` after call number ``since`` whose
    visible text contains ``expect``."""
    return await telegram.wait_for(
        lambda c: (
            telegram.calls.index(c) >= since
            and c.ok
            and c.chat_id == chat_id
            and expect in (c.visible_text or "")
        )
    )


async def say(
    telegram: FakeBotAPI, user: FakeUser, text: str, expect: str, chat: FakeChat | None = None
) -> Call:
    """``user`` sends ``text``; the bot's answer there that says ``expect``."""
    since = len(telegram.calls)
    await user.send(text, chat)
    return await shown_after(telegram, (chat or user.private_chat).id, expect, since)


async def click(
    telegram: FakeBotAPI,
    user: FakeUser,
    message: Call,
    data: str,
    expect: str,
    *,
    chat_id: int | None = None,
) -> Call:
    """``user`` presses the button ``data`` on ``message``; the answer that says ``expect`` in
    that chat (often the same message, edited), or in ``chat_id``."""
    since = len(telegram.calls)
    await user.click(message, data)
    where = chat_id or message.chat_id or user.id
    return await shown_after(telegram, int(where), expect, since)


async def alert(telegram: FakeBotAPI, words: str) -> Call:
    """The next button answer shown as a pop-up containing ``words`` (taken off the list, so
    the same words can be waited for again)."""
    call = await telegram.wait_for(
        lambda c: c.method == "answerCallbackQuery" and words in str(c.params.get("text"))
    )
    telegram.calls.remove(call)
    return call


async def bound_group(
    telegram: FakeBotAPI, boss: FakeUser, chat_id: int, title: str, how: str
) -> FakeChat:
    """A group ``title`` the bot was added to by ``boss`` and bound with ``/bind <how>``."""
    group = telegram.group(chat_id, title)
    await telegram.add_bot_to_group(group, boss)
    await telegram.next_message(group.id)  # the bot's hello
    await next_reply(telegram, boss, f"/bind {how}", group)
    return group


async def invited(telegram: FakeBotAPI, boss: FakeUser, user: FakeUser, invite: str) -> None:
    """``boss`` sends ``/invite <invite>`` and ``user`` opens the link: enrolled as invited."""
    invitation = await say(telegram, boss, f"/invite {invite}", "join-")
    payload = re.search(r"start=(join-[\w-]+)", invitation.visible_text or "")
    assert payload, invitation.visible_text
    await say(telegram, user, f"/start {payload.group(1)}", "")
