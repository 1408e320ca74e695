"""The Telegram transport: turns an OutgoingMessage into Bot API calls and the answer into a
Delivery. Pacing and retries are the sender's job (bot.outbox.sender), so this Bot has no
rate limiter and never retries on its own."""

from __future__ import annotations

import asyncio
import logging
import warnings
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, Message
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    RetryAfter,
    TelegramError,
)
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from bot.logs import log_event
from bot.outbox.queue import Button, OutgoingMessage, Recipient
from bot.outbox.sender import (
    Delivered,
    Delivery,
    Moved,
    RetryLater,
    SenderPolicy,
    Undeliverable,
)
from bot.settings import Settings

logger = logging.getLogger(__name__)

CHANNEL = "telegram"
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
# Parts of one long message go to the same chat: keep them a private chat's interval apart.
PART_INTERVAL = 1.05
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


def telegram_length(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units). Counted on the HTML source, which is
    never shorter than the text Telegram measures after parsing the tags, so it errs safe."""
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Cut ``text`` into parts of at most ``limit`` at line breaks (so HTML tags, which the
    templates never spread over lines, stay whole). A single longer line is cut at a space."""
    lines: list[str] = []
    for line in text.split("\n"):
        while telegram_length(line) > limit:
            head, line = _cut_line(line, limit)
            lines.append(head)
        lines.append(line)
    parts: list[str] = []
    current: str | None = None
    for line in lines:
        joined = line if current is None else f"{current}\n{line}"
        if current is None or telegram_length(joined) <= limit:
            current = joined
        else:
            parts.append(current)
            current = line
    if current is not None:
        parts.append(current)
    return [part for part in parts if part.strip()]


def _cut_line(line: str, limit: int) -> tuple[str, str]:
    end = len(line)
    while end > 1 and telegram_length(line[:end]) > limit:
        end -= max(1, (telegram_length(line[:end]) - limit) // 2)
    space = line.rfind(" ", 0, end)
    if space > end // 2:
        end = space
    return line[:end], line[end:].lstrip(" ")


def inline_keyboard(buttons: list[list[Button]]) -> InlineKeyboardMarkup | None:
    """Telegram's inline keyboard for rendered buttons (None when there are none)."""
    if not buttons:
        return None
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(button.text, url=button.url)
                if button.url
                else InlineKeyboardButton(button.text, callback_data=button.action)
                for button in row
            ]
            for row in buttons
        ]
    )


@dataclass(frozen=True)
class _Part:
    """One Bot API call of a message: a photo (with or without caption) or a text."""

    text: str
    photo: Path | None = None


def _retry_seconds(error: RetryAfter) -> float:
    with warnings.catch_warnings():
        # PTB 22 warns that retry_after becomes a timedelta; both forms are handled here.
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class TelegramTransport:
    """Sends outbox messages with the Bot API (HTML, no link previews, inline buttons, photos).

    Every answer becomes a Delivery: 429 → RetryLater(after=retry_after); group migrated →
    Moved; 403 and 400 → Undeliverable(the server's description); timeouts, network errors and
    5xx → RetryLater(after=None). A message too long for one Bot API call goes out as several
    (text cut at line breaks, buttons on the last part); if a later part fails, the retry
    resumes after the parts already sent instead of repeating them.
    """

    def __init__(self, bot: Bot, request: HTTPXRequest, data_dir: Path) -> None:
        self._bot = bot
        self._request = request
        self._data_dir = data_dir.resolve()
        # Parts already delivered of a message that failed half-way: (chat id, message) → count
        # and the last message id. In memory only: after a restart the whole message is sent
        # again, which is the sender's at-least-once window.
        self._progress: dict[tuple[int, str], tuple[int, int]] = {}

    @classmethod
    def create(cls, settings: Settings, *, connections: int | None = None) -> TelegramTransport:
        """A transport for ``settings`` (token, API URLs, data_dir for photos) with a connection
        pool for ``connections`` concurrent sends (the sender's max_in_flight by default)."""
        if settings.bot_token is None:
            raise ValueError("TelegramTransport needs settings.bot_token")
        pool = connections or SenderPolicy().max_in_flight
        # A generous read timeout (PTB's default is 5 s): a timed-out send is retried, and if
        # Telegram had accepted it the chat sees it twice, so wait for a slow answer instead.
        request = HTTPXRequest(
            connection_pool_size=pool,
            connect_timeout=10.0,
            read_timeout=15.0,
            write_timeout=20.0,
            pool_timeout=10.0,
        )
        bot = Bot(
            settings.bot_token.get_secret_value(),
            base_url=settings.api_base_url,
            base_file_url=settings.api_file_base_url,
            request=request,
            get_updates_request=request,
        )
        return cls(bot, request, settings.data_dir)

    def is_group(self, recipient: Recipient) -> bool:
        """Telegram group and supergroup ids are negative, private chats positive."""
        return recipient.address.startswith("-")

    async def close(self) -> None:
        """Close the HTTP connections (this transport built them, the Bot did not)."""
        await self._request.shutdown()

    async def send(self, recipient: Recipient, message: OutgoingMessage) -> Delivery:
        """Deliver ``message``; never raises for a Telegram or network problem."""
        if recipient.channel != CHANNEL or not recipient.address.lstrip("-").isdigit():
            return Undeliverable(f"not a Telegram chat: {recipient.channel}:{recipient.address}")
        parts = self._parts(message)
        if not parts:
            return Undeliverable("empty message")
        chat_id = int(recipient.address)
        key = (chat_id, message.model_dump_json())
        try:
            message_id = await self._send_parts(chat_id, key, parts, message.buttons)
        except RetryAfter as exc:
            return RetryLater(exc.message, after=_retry_seconds(exc))
        except ChatMigrated as exc:
            self._progress.pop(key, None)
            return Moved(Recipient(CHANNEL, str(exc.new_chat_id)))
        except (Forbidden, BadRequest) as exc:
            self._progress.pop(key, None)
            return Undeliverable(exc.message)
        except TelegramError as exc:
            # NetworkError, TimedOut and 5xx; also InvalidToken and Conflict, which need an
            # operator: the messages wait for the fix rather than being thrown away.
            return RetryLater(exc.message)
        self._progress.pop(key, None)
        return Delivered(str(message_id))

    def _parts(self, message: OutgoingMessage) -> list[_Part]:
        photo = self._photo_path(message.photo) if message.photo else None
        if photo is None:
            return [_Part(text) for text in split_text(message.text)]
        if telegram_length(message.text) <= CAPTION_LIMIT:
            return [_Part(message.text, photo)]
        return [_Part("", photo), *(_Part(text) for text in split_text(message.text))]

    def _photo_path(self, name: str) -> Path | None:
        path = (self._data_dir / name).resolve()
        if path.is_relative_to(self._data_dir) and path.is_file():
            return path
        # The text still matters (a hazard report without its picture is still a report).
        log_event(logger, "outbox_photo_missing", logging.WARNING, photo=name)
        return None

    async def _send_parts(
        self, chat_id: int, key: tuple[int, str], parts: list[_Part], buttons: list[list[Button]]
    ) -> int:
        done, message_id = self._progress.get(key, (0, 0))
        markup = inline_keyboard(buttons)
        for index in range(done, len(parts)):
            if index > 0:
                await asyncio.sleep(PART_INTERVAL)
            last = index == len(parts) - 1
            sent = await self._send_part(chat_id, parts[index], markup if last else None)
            message_id = sent.message_id
            self._progress[key] = (index + 1, message_id)
        return message_id

    async def _send_part(
        self, chat_id: int, part: _Part, markup: InlineKeyboardMarkup | None
    ) -> Message:
        if part.photo is not None:
            photo = await asyncio.to_thread(part.photo.read_bytes)
            return await self._bot.send_photo(
                chat_id,
                photo,
                caption=part.text or None,
                parse_mode=ParseMode.HTML,
                reply_markup=markup,
                filename=part.photo.name,
            )
        return await self._bot.send_message(
            chat_id,
            part.text,
            parse_mode=ParseMode.HTML,
            reply_markup=markup,
            link_preview_options=_NO_PREVIEW,
        )
