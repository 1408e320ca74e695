"""A fake Telegram Bot API HTTP server for the test suite.

Point a real ``telegram.ext.Application`` at it::

    server = FakeBotAPI()
    await server.start()
    app = (
        ApplicationBuilder()
        .token(FakeBotAPI.TOKEN)
        .base_url(server.base_url)
        .base_file_url(server.file_base_url)
        .build()
    )

then act as Telegram users (``server.user(...)``, ``server.group(...)``) and assert on what the
bot sent (``server.next_message(chat_id)``, ``server.calls``, ``server.wait_for(...)``).

The wire format follows python-telegram-bot's ``HTTPXRequest``: the bot POSTs to
``{base_url}{token}/{method}`` with form-urlencoded fields (nested objects are JSON strings) or
``multipart/form-data`` when uploading; downloads are ``GET {file_base_url}{token}/{file_path}``.

Realism the bot under test can rely on (and trip over, as it would in production):

* HTML ``parse_mode`` is parsed like Telegram does it: unsupported/unclosed tags answer 400
  "Bad Request: can't parse entities: ..."; the returned message holds the plain text and entities.
* Text longer than 4096 characters (captions: 1024), empty text, callback data longer than 64
  bytes, invalid bot command names and "message is not modified" edits answer 400.
* Sending to an unknown chat answers 400 "chat not found"; to a known user who never wrote to the
  bot in private, 403 "bot can't initiate conversation with a user"; to a group the bot was
  removed from, 403 "bot was kicked from the group chat".
* Privacy mode (``server.privacy_mode``, on by default like Telegram's): in groups where the bot is
  not an administrator, the bot only receives commands, replies to its own messages and service
  messages. User actions still return the update dict when it is not delivered.
"""

from __future__ import annotations

import asyncio
import copy
import html
import itertools
import json
import logging
import math
import re
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from aiohttp import web

JSON = dict[str, Any]

__all__ = ["Call", "FakeBotAPI", "FakeChat", "FakeUser"]

#: Methods that put a message into a chat; they are what ``sent_messages`` and ``next_message``
#: return and what ``enforce_limits`` counts.
SEND_METHODS = frozenset({"sendMessage", "sendPhoto", "sendDocument", "sendLocation"})
_EDIT_METHODS = frozenset({"editMessageText", "editMessageCaption", "editMessageReplyMarkup"})
#: Methods refused with 403 for blocked users and groups the bot is not in.
_WRITE_METHODS = SEND_METHODS | _EDIT_METHODS | {"sendChatAction", "deleteMessage"}
#: Methods that ``fail(None)`` leaves alone so the Application keeps polling.
_NEVER_FAILED = frozenset({"getUpdates", "getMe"})

#: Parameters that are plain strings on the wire (everything else is JSON-decoded).
_STRING_PARAMS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "callback_query_id",
        "file_id",
        "action",
        "language_code",
        "url",
        "photo",
        "document",
        "video",
        "audio",
        "voice",
        "animation",
        "sticker",
        "thumbnail",
        "emoji",
        "title",
        "description",
        "short_description",
        "name",
        "address",
        "foursquare_id",
        "foursquare_type",
        "google_place_id",
        "google_place_type",
        "business_connection_id",
        "inline_message_id",
        "message_effect_id",
        "custom_title",
        "secret_token",
        "ip_address",
    }
)

_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)

_BUTTON_ACTIONS = frozenset(
    {
        "url",
        "callback_data",
        "web_app",
        "login_url",
        "switch_inline_query",
        "switch_inline_query_current_chat",
        "switch_inline_query_chosen_chat",
        "copy_text",
        "callback_game",
        "pay",
    }
)

_DEFAULT_ALLOWED_UPDATES = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "inline_query",
        "chosen_inline_result",
        "callback_query",
        "shipping_query",
        "pre_checkout_query",
        "purchased_paid_media",
        "poll",
        "poll_answer",
        "my_chat_member",
        "chat_join_request",
        "chat_boost",
        "removed_chat_boost",
    }
)

_SERVICE_KEYS = frozenset(
    {
        "new_chat_members",
        "left_chat_member",
        "new_chat_title",
        "new_chat_photo",
        "delete_chat_photo",
        "group_chat_created",
        "supergroup_chat_created",
        "migrate_to_chat_id",
        "migrate_from_chat_id",
        "pinned_message",
    }
)

_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")
_GROUP_ANONYMOUS_BOT: JSON = {
    "id": 1087968824,
    "is_bot": True,
    "first_name": "Group",
    "username": "GroupAnonymousBot",
}


class _ApiError(Exception):
    """An error answer: ``{"ok": false, "error_code": status, "description": ...}``."""

    def __init__(self, status: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def _bad_request(description: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {description}")


# --------------------------------------------------------------------------------------------
# Recorded calls


@dataclass(eq=False)
class Call:
    """One request the bot made, with the fake's answer.

    ``params`` are JSON-decoded (``reply_markup`` is a dict, ``chat_id`` an int); uploaded files
    are in ``files`` (multipart field name → bytes) with their names in ``file_names``.
    ``result`` is the ``result`` of a successful answer (for sends: the Message dict as Telegram
    would return it, a snapshot taken at send time); for errors it is ``None`` and ``description``
    / ``parameters`` hold the error.
    """

    method: str
    params: dict[str, Any]
    at: float
    status: int
    result: Any
    files: dict[str, bytes] = field(default_factory=dict)
    file_names: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    parameters: JSON | None = None

    @property
    def ok(self) -> bool:
        """Whether the fake answered with success."""
        return 200 <= self.status <= 299

    @property
    def chat_id(self) -> int | str | None:
        """The ``chat_id`` parameter (an int for numeric ids)."""
        value = self.params.get("chat_id")
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            return int(value)
        return value

    @property
    def text(self) -> str | None:
        """The ``text`` (or ``caption``) the bot sent, as sent (HTML tags included)."""
        value = self.params.get("text", self.params.get("caption"))
        return None if value is None else str(value)

    @property
    def visible_text(self) -> str | None:
        """The text (or caption) as users see it: markup parsed away, entities unescaped."""
        message = self.message
        if message is not None:
            return message.get("text", message.get("caption"))
        return self.text

    @property
    def message(self) -> JSON | None:
        """The Message dict returned by a successful send or edit, else ``None``."""
        if isinstance(self.result, dict) and "message_id" in self.result:
            return self.result
        return None

    @property
    def message_id(self) -> int | None:
        """The id of the message sent or edited."""
        if self.message is not None:
            return int(self.message["message_id"])
        value = self.params.get("message_id")
        return int(value) if value is not None else None

    @property
    def reply_markup(self) -> JSON | None:
        """The ``reply_markup`` parameter as a dict."""
        markup = self.params.get("reply_markup")
        return markup if isinstance(markup, dict) else None

    @property
    def buttons(self) -> list[JSON]:
        """All inline keyboard buttons, row by row, flattened."""
        markup = self.reply_markup or {}
        return [button for row in markup.get("inline_keyboard", []) for button in row]

    @property
    def callback_data(self) -> list[str]:
        """The ``callback_data`` of every inline button, in order."""
        return [b["callback_data"] for b in self.buttons if "callback_data" in b]

    def button_data(self, label: str) -> str:
        """The ``callback_data`` of the one inline button whose text contains ``label``."""
        matches = [b for b in self.buttons if label in b.get("text", "")]
        if len(matches) != 1:
            labels = [b.get("text") for b in self.buttons]
            raise LookupError(f"{len(matches)} buttons match {label!r}; buttons: {labels}")
        return str(matches[0]["callback_data"])

    def summary(self) -> str:
        """A one-line description for error messages."""
        parts = [f"{self.method} -> {self.status}"]
        if self.chat_id is not None:
            parts.append(f"chat={self.chat_id}")
        if self.text is not None:
            text = self.text if len(self.text) <= 80 else self.text[:77] + "..."
            parts.append(repr(text))
        if self.description:
            parts.append(f"({self.description})")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"<Call {self.summary()}>"


# --------------------------------------------------------------------------------------------
# Chats and users


@dataclass(eq=False)
class FakeChat:
    """A chat the fake knows: a private chat with a user, a group or a supergroup.

    ``bot_status`` is the bot's membership (``None``: never added explicitly, treated as a
    member); ``members`` maps user ids to their ChatMember status.
    """

    id: int
    type: str
    title: str | None = None
    username: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    bot_status: str | None = field(default=None, repr=False)
    members: dict[int, str] = field(default_factory=dict, repr=False)
    migrated_to: int | None = field(default=None, repr=False)

    def to_dict(self) -> JSON:
        """The Chat object as it appears inside Messages and Updates."""
        data: JSON = {"id": self.id, "type": self.type}
        for key in ("title", "username", "first_name", "last_name"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        return data

    @property
    def is_group(self) -> bool:
        """Whether this is a group or supergroup."""
        return self.type in ("group", "supergroup")

    @property
    def bot_present(self) -> bool:
        """Whether the bot is (or is assumed to be) in this chat."""
        return self.bot_status not in ("left", "kicked")


class FakeUser:
    """Acts as a Telegram user. Every action enqueues an Update for getUpdates and returns the
    update dict (also when Telegram would not deliver it, e.g. due to privacy mode)."""

    def __init__(
        self,
        server: FakeBotAPI,
        user_id: int,
        first_name: str,
        *,
        username: str | None = None,
        language_code: str | None = "zh-hans",
        last_name: str | None = None,
    ) -> None:
        if user_id <= 0:
            raise ValueError("user ids are positive")
        self._server = server
        self.id = user_id
        self.first_name = first_name
        self.username = username
        self.language_code = language_code
        self.last_name = last_name
        self.private_chat = FakeChat(
            id=user_id,
            type="private",
            username=username,
            first_name=first_name,
            last_name=last_name,
        )

    def __repr__(self) -> str:
        return f"<FakeUser {self.id} {self.first_name!r}>"

    def to_dict(self) -> JSON:
        """The User object as it appears in Updates."""
        data: JSON = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name is not None:
            data["last_name"] = self.last_name
        if self.username is not None:
            data["username"] = self.username
        if self.language_code is not None:
            data["language_code"] = self.language_code
        return data

    async def send(
        self,
        text: str,
        chat: FakeChat | None = None,
        *,
        reply_to: Call | JSON | None = None,
    ) -> JSON:
        """Send a text message (to the private chat with the bot unless ``chat`` is given; a
        reply defaults to the replied message's chat). Commands get ``bot_command`` entities."""
        reply = _message_of(reply_to) if reply_to is not None else None
        if chat is None and reply is not None:
            chat = self._server.chat(reply["chat"]["id"])
        target = self._server._chat_for_user(self, chat)
        fields: JSON = {"text": text}
        entities = _detect_entities(text)
        if entities:
            fields["entities"] = entities
        if reply is not None:
            current = self._server.message(reply["chat"]["id"], reply["message_id"])
            fields["reply_to_message"] = _strip_reply(current or reply)
        return self._server._user_message(self, target, fields)

    async def send_photo(
        self, data: bytes, *, caption: str | None = None, chat: FakeChat | None = None
    ) -> JSON:
        """Send a photo; the bot can ``get_file`` and download any of its sizes."""
        target = self._server._chat_for_user(self, chat)
        fields: JSON = {"photo": self._server._register_photo(data)}
        fields.update(_caption_fields(caption))
        return self._server._user_message(self, target, fields)

    async def send_document(
        self,
        data: bytes,
        file_name: str,
        *,
        mime_type: str = "text/csv",
        caption: str | None = None,
        chat: FakeChat | None = None,
    ) -> JSON:
        """Send a document (a file); the bot can ``get_file`` and download it."""
        target = self._server._chat_for_user(self, chat)
        stored = self._server._register_file(data, _document_path(file_name))
        document: JSON = {
            "file_name": file_name,
            "mime_type": mime_type,
            "file_id": stored.file_id,
            "file_unique_id": stored.unique_id,
            "file_size": len(data),
        }
        fields: JSON = {"document": document}
        fields.update(_caption_fields(caption))
        return self._server._user_message(self, target, fields)

    async def send_location(
        self,
        latitude: float,
        longitude: float,
        *,
        chat: FakeChat | None = None,
        live_period: int | None = None,
        horizontal_accuracy: float | None = None,
    ) -> JSON:
        """Send a location (a live location when ``live_period`` is given)."""
        target = self._server._chat_for_user(self, chat)
        location: JSON = {"latitude": latitude, "longitude": longitude}
        if horizontal_accuracy is not None:
            location["horizontal_accuracy"] = horizontal_accuracy
        if live_period is not None:
            location["live_period"] = live_period
        return self._server._user_message(self, target, {"location": location})

    async def update_location(
        self,
        message: Call | JSON,
        latitude: float,
        longitude: float,
        *,
        horizontal_accuracy: float | None = None,
    ) -> JSON:
        """Move a live location sent earlier (``message``: the update or message dict returned by
        ``send_location``); delivers an ``edited_message`` update."""
        return self._server._user_moves(self, message, latitude, longitude, horizontal_accuracy)

    async def edit(self, message: Call | JSON, text: str) -> JSON:
        """Edit a text message this user sent earlier (the update or message dict returned by
        ``send``); delivers an ``edited_message`` update, as Telegram does."""
        return self._server._user_edits(self, message, text)

    async def click(self, message: Call | JSON, data: str) -> JSON:
        """Press an inline button with callback ``data`` on a message the bot sent (the Call from
        ``next_message`` or a message dict). The button's existence is not checked."""
        return self._server._user_clicks(self, _message_of(message), data)


def _message_of(value: Call | JSON) -> JSON:
    """The Message dict inside a Call, an Update dict or a Message dict."""
    if isinstance(value, Call):
        if value.message is None:
            raise ValueError(f"{value!r} holds no message")
        return value.message
    for key in ("message", "edited_message"):
        inner = value.get(key)
        if isinstance(inner, dict) and "message_id" in inner:
            return inner
    if "message_id" not in value or "chat" not in value:
        raise ValueError(f"not a message: {value!r}")
    return value


def _strip_reply(message: JSON) -> JSON:
    """A replied-to message as Telegram nests it (without its own reply_to_message)."""
    nested = copy.deepcopy(message)
    nested.pop("reply_to_message", None)
    return nested


def _caption_fields(caption: str | None) -> JSON:
    if caption is None:
        return {}
    fields: JSON = {"caption": caption}
    entities = _detect_entities(caption)
    if entities:
        fields["caption_entities"] = entities
    return fields


def _document_path(file_name: str) -> str:
    suffix = re.sub(r"[^A-Za-z0-9]", "", file_name.rsplit(".", 1)[-1]) if "." in file_name else ""
    return "documents/file_{n}" + (f".{suffix.lower()}" if suffix else "")


# --------------------------------------------------------------------------------------------
# Text: entities and Telegram's HTML


def _u16(text: str) -> int:
    """Length in UTF-16 code units, which is what Telegram's entity offsets count."""
    return len(text.encode("utf-16-le")) // 2


_AUTO_ENTITIES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("bot_command", re.compile(r"(?:^|(?<=\s))/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?")),
    ("mention", re.compile(r"(?:^|(?<=[^\w@/]))@[A-Za-z][A-Za-z0-9_]{3,31}\b")),
    ("url", re.compile(r"https?://[^\s<>\"]+")),
    ("hashtag", re.compile(r"(?:^|(?<=\s))#\w+")),
)


def _detect_entities(text: str) -> list[JSON]:
    """Entities Telegram detects on its own: commands, mentions, URLs, hashtags."""
    entities: list[JSON] = []
    for kind, pattern in _AUTO_ENTITIES:
        for match in pattern.finditer(text):
            entities.append(
                {
                    "offset": _u16(text[: match.start()]),
                    "length": _u16(match.group()),
                    "type": kind,
                }
            )
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return entities


_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_TAG = re.compile(
    r"<(/?)([A-Za-z][A-Za-z0-9-]*)"
    r"((?:\s+[A-Za-z-]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s>\"']+))?)*)\s*>"
)
_ATTRIBUTE = re.compile(r"([A-Za-z-]+)(?:\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s>\"']+))?")
_HTML_ENTITY = re.compile(r"&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|lt|gt|amp|quot);")


def parse_html(source: str) -> tuple[str, list[JSON]]:
    """Parse Telegram-flavoured HTML into (plain text, entities) like the Bot API does.

    Raises ValueError with Telegram's wording for unsupported or unbalanced tags.
    """
    out: list[str] = []
    position = 0  # in UTF-16 units of the plain text
    stack: list[tuple[str, int, JSON | None, dict[str, str]]] = []
    entities: list[JSON] = []
    index = 0

    def byte_offset(at: int) -> int:
        return len(source[:at].encode())

    while index < len(source):
        char = source[index]
        if char == "<":
            match = _TAG.match(source, index)
            if match is None:
                raise ValueError(f'Unsupported start tag "" at byte offset {byte_offset(index)}')
            closing, raw_name, raw_attributes = match.groups()
            name = raw_name.lower()
            if closing:
                if not stack:
                    raise ValueError(f"Unexpected end tag at byte offset {byte_offset(index)}")
                open_name, start, entity, attributes = stack.pop()
                if open_name != name:
                    raise ValueError(
                        f"Unmatched end tag at byte offset {byte_offset(index)}, "
                        f'expected "</{open_name}>", found "</{name}>"'
                    )
                language = attributes.get("class", "")
                if name == "code" and stack and stack[-1][0] == "pre" and language:
                    parent = stack[-1][2]
                    if parent is not None and language.startswith("language-"):
                        parent["language"] = language.removeprefix("language-")
                    entity = None
                if entity is not None and position > start:
                    entities.append({"offset": start, "length": position - start, **entity})
            else:
                if name not in _HTML_TAGS:
                    raise ValueError(
                        f'Unsupported start tag "{name}" at byte offset {byte_offset(index)}'
                    )
                attributes = {
                    key.lower(): html.unescape(value.strip("\"'"))
                    for key, value in _ATTRIBUTE.findall(raw_attributes)
                }
                stack.append((name, position, _html_entity(name, attributes), attributes))
            index = match.end()
            continue
        if char == "&":
            match = _HTML_ENTITY.match(source, index)
            if match is not None:
                char = html.unescape(match.group())
                index = match.end()
            else:
                index += 1
        else:
            index += 1
        out.append(char)
        position += _u16(char)
    if stack:
        raise ValueError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _html_entity(name: str, attributes: dict[str, str]) -> JSON | None:
    kind = _HTML_TAGS[name]
    if name == "span":
        if attributes.get("class") != "tg-spoiler":
            raise ValueError('Tag "span" must have class "tg-spoiler"')
        return {"type": "spoiler"}
    if name == "a":
        href = attributes.get("href")
        if not href:
            return None
        user = re.fullmatch(r"tg://user\?id=(\d+)", href)
        if user:
            return {"type": "text_mention", "user": {"id": int(user.group(1))}}
        return {"type": "text_link", "url": href}
    if name == "blockquote" and "expandable" in attributes:
        return {"type": "expandable_blockquote"}
    if name == "tg-emoji":
        emoji_id = attributes.get("emoji-id")
        if not emoji_id:
            raise ValueError('Tag "tg-emoji" must have attribute "emoji-id"')
        return {"type": "custom_emoji", "custom_emoji_id": emoji_id}
    return {"type": kind}


def _trim(text: str, entities: list[JSON]) -> tuple[str, list[JSON]]:
    """Strip surrounding whitespace like Telegram does, shifting and clipping entities."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    lead = _u16(text[: len(text) - len(text.lstrip())])
    size = _u16(stripped)
    kept: list[JSON] = []
    for entity in entities:
        start = max(entity["offset"] - lead, 0)
        end = min(entity["offset"] + entity["length"] - lead, size)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return stripped, kept


def _image_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG (others: a plausible default)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    return 1280, 960


def _looks_like_image(data: bytes) -> bool:
    return data.startswith(
        (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
    ) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


@dataclass
class _StoredFile:
    file_id: str
    unique_id: str
    data: bytes
    path: str


@dataclass
class _Limits:
    global_per_second: int
    group_per_minute: int
    private_per_second: int


# --------------------------------------------------------------------------------------------
# The server


class FakeBotAPI:
    """An in-process fake of the Telegram Bot API (api.telegram.org) on 127.0.0.1."""

    TOKEN = "123456:TEST-TOKEN"
    BOT_ID = 123456
    BOT_USERNAME = "safecampus_test_bot"
    BOT_FIRST_NAME = "SafeCampus Test"

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.rate_limited = 0
        #: Telegram server time, used for every ``date`` (set it to control the dates).
        self.clock: Callable[[], float] = time.time
        #: Like BotFather's privacy mode (on by default): see the module docstring.
        self.privacy_mode = True
        self.base_url = ""
        self.file_base_url = ""
        self._runner: web.AppRunner | None = None
        self._stopping = False
        self._changed = asyncio.Event()
        self._users: dict[int, FakeUser] = {}
        self._chats: dict[int, FakeChat] = {}
        self._started_private: set[int] = set()
        self._forbidden: dict[int, str] = {}
        self._messages: dict[tuple[int, int], JSON] = {}
        self._deleted: dict[tuple[int, int], JSON] = {}
        self._last_message_id: dict[int, int] = {}
        self._updates: deque[JSON] = deque()
        self._update_ids = itertools.count(700_000_001)
        self._confirmed_below = 0
        self._allowed_updates: frozenset[str] = _DEFAULT_ALLOWED_UPDATES
        self._poll_generation = 0
        self._callback_ids = itertools.count(4_000_000_000_000_000_001)
        self._callback_queries: dict[str, bool] = {}
        self._files: dict[str, _StoredFile] = {}
        self._paths: dict[str, _StoredFile] = {}
        self._file_numbers = itertools.count(1)
        self._commands: dict[tuple[tuple[tuple[str, Any], ...], str], list[JSON]] = {}
        self._menu_buttons: dict[int | None, JSON] = {}
        self._profile: dict[tuple[str, str], str] = {}
        self._failures: list[list[Any]] = []  # [method | None, status, remaining | None]
        self._rate_limits: list[list[Any]] = []  # [method, retry_after, remaining]
        self._limits: _Limits | None = None
        self._sends_all: deque[float] = deque()
        self._sends_by_chat: dict[int, deque[float]] = {}
        self._returned: dict[int, set[Call]] = {}  # per chat: calls next_message returned
        #: Exceptions the fake itself raised while answering (answered as 500); should stay empty.
        self.errors: list[BaseException] = []
        handlers: dict[str, Callable[[JSON, dict[str, tuple[bytes, str, str]]], Any]] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "close": lambda p, f: True,
            "logOut": lambda p, f: True,
            "sendMessage": self._send_message,
            "sendPhoto": self._send_photo,
            "sendDocument": self._send_document,
            "sendLocation": self._send_location,
            "sendChatAction": self._send_chat_action,
            "editMessageText": self._edit_message_text,
            "editMessageCaption": self._edit_message_caption,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "setChatMenuButton": self._set_chat_menu_button,
            "getChatMenuButton": self._get_chat_menu_button,
            "setMyName": self._profile_setter("name"),
            "getMyName": self._profile_getter("name"),
            "setMyDescription": self._profile_setter("description"),
            "getMyDescription": self._profile_getter("description"),
            "setMyShortDescription": self._profile_setter("short_description"),
            "getMyShortDescription": self._profile_getter("short_description"),
            "getChat": self._get_chat,
            "getChatMember": self._get_chat_member,
            "getChatAdministrators": self._get_chat_administrators,
            "getChatMemberCount": self._get_chat_member_count,
            "leaveChat": self._leave_chat,
            "getFile": self._get_file,
        }
        #: lower-cased method name → (canonical name, handler); Telegram ignores the case.
        self._methods = {name.lower(): (name, handler) for name, handler in handlers.items()}

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Listen on 127.0.0.1 on a free port; sets ``base_url`` and ``file_base_url``."""
        if self._runner is not None:
            raise RuntimeError("already started")
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self._stopping = False
        port = runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/bot"
        self.file_base_url = f"http://127.0.0.1:{port}/file/bot"

    async def stop(self) -> None:
        """Answer pending long polls immediately and stop listening."""
        if self._runner is None:
            return
        self._stopping = True
        self._notify()
        runner, self._runner = self._runner, None
        await runner.cleanup()

    async def __aenter__(self) -> FakeBotAPI:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def now(self) -> int:
        """Telegram server time as a Unix timestamp (from ``clock``)."""
        return int(self.clock())

    # ---------------------------------------------------------------- world

    def user(
        self,
        user_id: int,
        first_name: str,
        *,
        username: str | None = None,
        language_code: str | None = "zh-hans",
        last_name: str | None = None,
    ) -> FakeUser:
        """A Telegram user the test acts as (its private chat with the bot has id ``user_id``).

        The bot can message the user only after the user wrote to it in private (like Telegram).
        """
        fake = FakeUser(
            self,
            user_id,
            first_name,
            username=username,
            language_code=language_code,
            last_name=last_name,
        )
        self._users[user_id] = fake
        self._chats[user_id] = fake.private_chat
        return fake

    def group(self, chat_id: int, title: str, *, type: str = "group") -> FakeChat:
        """A group (``type="supergroup"`` for a supergroup; ids are negative)."""
        if chat_id >= 0:
            raise ValueError("group chat ids are negative")
        if type not in ("group", "supergroup"):
            raise ValueError(f"not a group type: {type!r}")
        chat = FakeChat(id=chat_id, type=type, title=title)
        self._chats[chat_id] = chat
        return chat

    def chat(self, chat_id: int) -> FakeChat:
        """The known chat with that id."""
        try:
            return self._chats[chat_id]
        except KeyError:
            raise KeyError(f"unknown chat {chat_id}") from None

    def set_member(self, chat: FakeChat, user: FakeUser, status: str) -> None:
        """Set a user's status in a group: creator, administrator, member, restricted, left or
        kicked (what getChatMember / getChatAdministrators answer)."""
        if status not in ("creator", "administrator", "member", "restricted", "left", "kicked"):
            raise ValueError(f"not a chat member status: {status!r}")
        chat.members[user.id] = status

    def bot_user(self) -> JSON:
        """The bot's User object as it appears in messages."""
        return {
            "id": self.BOT_ID,
            "is_bot": True,
            "first_name": self.BOT_FIRST_NAME,
            "username": self.BOT_USERNAME,
        }

    async def add_bot_to_group(
        self, group: FakeChat, by: FakeUser, *, as_admin: bool = False
    ) -> None:
        """``by`` adds the bot: a my_chat_member update (left → member, or administrator) and a
        message with ``new_chat_members=[bot]``."""
        if group.bot_status in ("member", "administrator"):
            raise ValueError(f"the bot is already in {group!r}")
        old = group.bot_status if group.bot_status in ("left", "kicked") else "left"
        group.members.setdefault(by.id, "member")
        new_status = "administrator" if as_admin else "member"
        self._bot_membership(group, by.to_dict(), old, new_status)
        message = self._new_message(group, by.to_dict(), new_chat_members=[self.bot_user()])
        self._push("message", message)

    async def remove_bot_from_group(self, group: FakeChat, by: FakeUser) -> None:
        """``by`` removes the bot: a my_chat_member update (→ left in groups, kicked in
        supergroups) and a message with ``left_chat_member=bot``; later sends answer 403."""
        if not group.bot_present:
            raise ValueError(f"the bot is not in {group!r}")
        old = group.bot_status or "member"
        new = "kicked" if group.type == "supergroup" else "left"
        message = self._new_message(group, by.to_dict(), left_chat_member=self.bot_user())
        self._push("message", message)
        self._bot_membership(group, by.to_dict(), old, new)

    async def migrate_group(
        self, group: FakeChat, new_chat_id: int, *, by: FakeUser | None = None
    ) -> FakeChat:
        """Upgrade a group to a supergroup: a message with ``migrate_to_chat_id`` in the old chat,
        one with ``migrate_from_chat_id`` in the new one. Afterwards anything addressed to the old
        id answers 400 with ``parameters.migrate_to_chat_id`` (PTB raises ChatMigrated)."""
        if group.type != "group":
            raise ValueError("only basic groups migrate")
        if new_chat_id >= 0 or new_chat_id in self._chats:
            raise ValueError(f"bad new chat id {new_chat_id}")
        supergroup = FakeChat(id=new_chat_id, type="supergroup", title=group.title)
        supergroup.members = dict(group.members)
        supergroup.bot_status = group.bot_status
        self._chats[new_chat_id] = supergroup
        sender = by.to_dict() if by is not None else self._some_member(group)
        self._push("message", self._new_message(group, sender, migrate_to_chat_id=new_chat_id))
        group.migrated_to = new_chat_id
        self._push(
            "message",
            self._new_message(
                supergroup,
                dict(_GROUP_ANONYMOUS_BOT),
                sender_chat=supergroup.to_dict(),
                migrate_from_chat_id=group.id,
            ),
        )
        return supergroup

    def message(self, chat_id: int, message_id: int) -> JSON | None:
        """The current state of a message (after edits), ``None`` if unknown or deleted."""
        stored = self._messages.get((chat_id, message_id))
        return copy.deepcopy(stored) if stored is not None else None

    def commands(
        self,
        scope_type: str,
        language_code: str | None = None,
        *,
        chat_id: int | None = None,
        user_id: int | None = None,
    ) -> list[JSON]:
        """The commands set with setMyCommands for a scope type (and language). For chat scopes
        pass ``chat_id`` (and ``user_id``) when several chats have commands."""
        language = language_code or ""
        found: list[list[JSON]] = []
        for (scope, lang), commands in self._commands.items():
            fields = dict(scope)
            if fields["type"] != scope_type or lang != language:
                continue
            if chat_id is not None and fields.get("chat_id") != chat_id:
                continue
            if user_id is not None and fields.get("user_id") != user_id:
                continue
            found.append(commands)
        if len(found) > 1:
            raise LookupError(f"several {scope_type!r} scopes have commands; pass chat_id")
        return copy.deepcopy(found[0]) if found else []

    def menu_button(self, chat_id: int | None = None) -> JSON:
        """The menu button set with setChatMenuButton for a chat (``None``: the default)."""
        return copy.deepcopy(self._menu_buttons.get(chat_id, {"type": "default"}))

    # ---------------------------------------------------------------- recording

    def sent_messages(self, chat_id: int | None = None) -> list[Call]:
        """Successful sendMessage/sendPhoto/sendDocument/sendLocation calls (to one chat)."""
        return [call for call in self.calls if self._is_send(call, chat_id)]

    async def wait_for(self, predicate: Callable[[Call], bool], timeout: float = 5.0) -> Call:  # noqa: ASYNC109
        """The first call (already recorded or future) matching ``predicate``."""
        index = 0
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            changed = self._changed
            while index < len(self.calls):
                call = self.calls[index]
                index += 1
                if predicate(call):
                    return call
            if not await self._wait_changed(changed, deadline):
                raise TimeoutError(
                    f"no matching call within {timeout}s; recent calls:\n{self._recent_calls()}"
                )

    async def next_message(self, chat_id: int, timeout: float = 5.0) -> Call:  # noqa: ASYNC109
        """The next successful send to ``chat_id`` not yet returned by ``next_message``."""
        deadline = asyncio.get_running_loop().time() + timeout
        returned = self._returned.setdefault(chat_id, set())
        while True:
            changed = self._changed
            for call in self._unreturned(chat_id):
                returned.add(call)
                return call
            if not await self._wait_changed(changed, deadline):
                raise TimeoutError(
                    f"no new message to chat {chat_id} within {timeout}s; recent calls:\n"
                    f"{self._recent_calls()}"
                )

    async def no_message(self, chat_id: int, within: float = 0.3) -> None:
        """Assert the bot sends nothing to ``chat_id`` (beyond what ``next_message`` returned)
        within ``within`` seconds."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            changed = self._changed
            unexpected = self._unreturned(chat_id)
            if unexpected:
                listing = "\n".join(f"  {call.summary()}" for call in unexpected)
                raise AssertionError(f"unexpected message(s) to chat {chat_id}:\n{listing}")
            if not await self._wait_changed(changed, deadline):
                return

    async def wait_until(
        self,
        condition: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109
        *,
        what: str = "condition",
    ) -> None:
        """Wait until ``condition()`` (e.g. state a handler changes) is true: re-checked after
        every request the bot makes and every 10 ms; TimeoutError listing recent calls."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(
                    f"{what} not met within {timeout}s; recent calls:\n{self._recent_calls()}"
                )
            await self._wait_changed(self._changed, min(deadline, _now() + 0.01))

    async def wait_delivered(self, update: JSON, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until the bot fetched ``update`` and confirmed it with a later offset (it is in
        the Application's update queue; a handler may still be running)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._confirmed_below <= update["update_id"]:
            if not await self._wait_changed(self._changed, deadline):
                raise TimeoutError(f"update {update['update_id']} not fetched within {timeout}s")

    def pending_updates(self) -> list[JSON]:
        """Updates queued for getUpdates but not yet confirmed by the bot (with a later offset)."""
        return list(self._updates)

    def _unreturned(self, chat_id: int) -> list[Call]:
        returned = self._returned.get(chat_id, set())
        return [c for c in self.calls if c not in returned and self._is_send(c, chat_id)]

    def _is_send(self, call: Call, chat_id: int | None) -> bool:
        if call.method not in SEND_METHODS or not call.ok:
            return False
        if chat_id is None:
            return True
        return call.message is not None and call.message["chat"]["id"] == chat_id

    def _recent_calls(self, count: int = 20) -> str:
        recent = [call for call in self.calls if call.method != "getUpdates"][-count:]
        if not recent:
            return "  (none besides getUpdates)"
        return "\n".join(f"  {call.summary()}" for call in recent)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_changed(self, changed: asyncio.Event, deadline: float) -> bool:
        """Wait for ``changed`` until ``deadline``; False on timeout."""
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return False
        try:
            async with asyncio.timeout(remaining):
                await changed.wait()
        except TimeoutError:
            return False
        return True

    # ---------------------------------------------------------------- failure injection

    def fail(self, method: str | None, status: int = 502, times: int | None = None) -> None:
        """Answer ``method`` (``None``: every method except getUpdates/getMe) with an error
        ``status``, ``times`` times or until ``heal()``."""
        self._failures.append([method, status, times])

    def heal(self) -> None:
        """Forget every ``fail`` and ``rate_limit`` injection."""
        self._failures.clear()
        self._rate_limits.clear()

    def rate_limit(self, method: str, retry_after: int, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with 429 and ``retry_after``."""
        self._rate_limits.append([method, retry_after, times])

    def forbid(
        self, chat_id: int, description: str = "Forbidden: bot was blocked by the user"
    ) -> None:
        """Answer 403 to sends, edits, deletions and chat actions addressed to ``chat_id``."""
        self._forbidden[chat_id] = description

    def unforbid(self, chat_id: int) -> None:
        """Undo ``forbid`` (the user unblocked the bot)."""
        self._forbidden.pop(chat_id, None)

    def enforce_limits(
        self,
        *,
        global_per_second: int = 30,
        group_per_minute: int = 20,
        private_per_second: int = 1,
    ) -> None:
        """Apply Telegram's flood limits to send* methods: sliding windows over the server's
        receive times of accepted sends; over the limit → 429 with the seconds until the window
        has room (at least 1)."""
        self._limits = _Limits(global_per_second, group_per_minute, private_per_second)

    def _injected(self, method: str) -> None:
        for rule in self._failures:
            target, status, remaining = rule
            if target == method or (target is None and method not in _NEVER_FAILED):
                if remaining is not None:
                    rule[2] -= 1
                    if rule[2] <= 0:
                        self._failures.remove(rule)
                raise _ApiError(status, _phrase(status))
        for rule in self._rate_limits:
            target, retry_after, _ = rule
            if target == method:
                rule[2] -= 1
                if rule[2] <= 0:
                    self._rate_limits.remove(rule)
                raise _too_many(retry_after)

    def _check_flood(self, chat_id: int, received: float) -> None:
        limits = self._limits
        if limits is None:
            return
        waits: list[float] = []
        everything = _window(self._sends_all, received, 1.0)
        if len(everything) >= limits.global_per_second:
            waits.append(everything[-limits.global_per_second] + 1.0 - received)
        window, limit = (
            (60.0, limits.group_per_minute) if chat_id < 0 else (1.0, limits.private_per_second)
        )
        in_chat = _window(self._sends_by_chat.get(chat_id, deque()), received, window)
        if len(in_chat) >= limit:
            waits.append(in_chat[-limit] + window - received)
        if waits:
            raise _too_many(max(1, math.ceil(max(waits))))

    def _count_send(self, chat_id: int, received: float) -> None:
        self._sends_all.append(received)
        self._sends_by_chat.setdefault(chat_id, deque()).append(received)

    # ---------------------------------------------------------------- HTTP

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        received = time.monotonic()
        path = request.path
        if request.method == "GET" and path.startswith("/file/bot"):
            return self._download(path.removeprefix("/file/bot"), received)
        match = re.fullmatch(r"/bot([^/]*)/([A-Za-z]+)", path)
        params, files = await _read_params(request)
        method = match.group(2) if match else path
        method, handler = self._methods.get(method.lower(), (method, None))
        status, result, error = 200, None, None
        try:
            if match is None:
                raise _ApiError(404, "Not Found")
            if match.group(1) != self.TOKEN:
                raise _ApiError(401, "Unauthorized")
            if handler is None:
                raise _ApiError(404, "Not Found")
            self._injected(method)
            chat = self._check_chat(method, params)
            if method in SEND_METHODS and chat is not None:
                self._check_flood(chat.id, received)
            result = handler(params, files)
            if asyncio.iscoroutine(result):
                result = await result
            if method in SEND_METHODS and chat is not None:
                self._count_send(chat.id, received)
            body: JSON = {"ok": True, "result": result}
        except _ApiError as exc:
            error = exc
            status = exc.status
            body = {"ok": False, "error_code": exc.status, "description": exc.description}
            if exc.parameters:
                body["parameters"] = exc.parameters
            if status == 429:
                self.rate_limited += 1
        except Exception as exc:  # a bug in the fake: answer 500 and keep it for the test
            self.errors.append(exc)
            logging.getLogger(__name__).exception("fake Bot API failed on %s", method)
            error = _ApiError(500, f"Internal Server Error (fake Bot API: {exc!r})")
            status = 500
            body = {"ok": False, "error_code": 500, "description": error.description}
        transport = request.transport
        if method == "getUpdates" and (transport is None or transport.is_closing()):
            # A long poll the client gave up on (e.g. the Updater stopping): nobody gets it.
            return web.json_response(body, status=status)
        self._record(
            Call(
                method=method,
                params=params,
                at=received,
                status=status,
                result=copy.deepcopy(result) if error is None else None,
                files={name: data for name, (data, _, _) in files.items()},
                file_names={name: file_name for name, (_, file_name, _) in files.items()},
                description=error.description if error else None,
                parameters=error.parameters if error else None,
            )
        )
        return web.json_response(body, status=status)

    def _download(self, rest: str, received: float) -> web.StreamResponse:
        token, _, file_path = rest.partition("/")
        stored = self._paths.get(file_path) if token == self.TOKEN else None
        status = 200 if stored is not None else 404
        self._record(
            Call(
                method="downloadFile",
                params={"file_path": file_path},
                at=received,
                status=status,
                result=None,
                description=None if stored else "Not Found",
            )
        )
        if stored is None:
            body = {"ok": False, "error_code": 404, "description": "Not Found"}
            return web.json_response(body, status=404)
        return web.Response(body=stored.data, content_type="application/octet-stream")

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        self._notify()

    # ---------------------------------------------------------------- chats and checks

    def _check_chat(self, method: str, params: JSON) -> FakeChat | None:
        """Resolve ``chat_id`` and apply migration, block and membership rules."""
        if "chat_id" not in params or method in ("setChatMenuButton", "getChatMenuButton"):
            return None
        chat = self._resolve_chat(params["chat_id"])
        if chat.migrated_to is not None:
            raise _ApiError(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": chat.migrated_to},
            )
        if method not in _WRITE_METHODS:
            return chat
        if chat.id in self._forbidden:
            raise _ApiError(403, self._forbidden[chat.id])
        if chat.is_group and not chat.bot_present:
            raise _ApiError(403, f"Forbidden: bot was kicked from the {chat.type} chat")
        if chat.type == "private" and chat.id not in self._started_private:
            raise _ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        return chat

    def _resolve_chat(self, chat_id: Any) -> FakeChat:
        if chat_id is None or chat_id == "":
            raise _bad_request("chat_id is empty")
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            for chat in self._chats.values():
                if chat.username and chat.username.lower() == chat_id[1:].lower():
                    return chat
            raise _bad_request("chat not found")
        try:
            return self._chats[int(chat_id)]
        except (KeyError, TypeError, ValueError):
            raise _bad_request("chat not found") from None

    def _chat_for_user(self, user: FakeUser, chat: FakeChat | None) -> FakeChat:
        target = chat or user.private_chat
        if target.type == "private" and target.id != user.id:
            raise ValueError(f"{user!r} cannot write in another user's private chat")
        if target.migrated_to is not None:
            raise ValueError(f"{target!r} was migrated to {target.migrated_to}")
        if target.is_group:
            target.members.setdefault(user.id, "member")
        else:
            self._started_private.add(user.id)
        return target

    def _some_member(self, chat: FakeChat) -> JSON:
        for preferred in ("creator", "administrator", "member"):
            for user_id, status in chat.members.items():
                if status == preferred and user_id in self._users:
                    return self._users[user_id].to_dict()
        return dict(_GROUP_ANONYMOUS_BOT)

    def _user_dict(self, user_id: int) -> JSON:
        if user_id == self.BOT_ID:
            return self.bot_user()
        if user_id not in self._users:
            raise _bad_request("user not found")
        return self._users[user_id].to_dict()

    # ---------------------------------------------------------------- messages and updates

    def _new_message(self, chat: FakeChat, sender: JSON, **fields: Any) -> JSON:
        message_id = self._last_message_id.get(chat.id, 0) + 1
        self._last_message_id[chat.id] = message_id
        message: JSON = {
            "message_id": message_id,
            "from": sender,
            "chat": chat.to_dict(),
            "date": self.now(),
            **fields,
        }
        self._messages[(chat.id, message_id)] = message
        return message

    def _push(self, kind: str, payload: JSON, *, deliver: bool = True) -> JSON:
        update = {"update_id": next(self._update_ids), kind: copy.deepcopy(payload)}
        if deliver and kind in self._allowed_updates:
            self._updates.append(update)
            self._notify()
        return update

    def _user_message(self, user: FakeUser, chat: FakeChat, fields: JSON) -> JSON:
        message = self._new_message(chat, user.to_dict(), **fields)
        return self._push("message", message, deliver=self._delivered(chat, message))

    def _delivered(self, chat: FakeChat, message: JSON) -> bool:
        """Whether Telegram would give this message to the bot."""
        if chat.type == "private":
            return True
        if not chat.bot_present:
            return False
        if not self.privacy_mode or chat.bot_status == "administrator":
            return True
        if _SERVICE_KEYS & message.keys():
            return True
        replied = message.get("reply_to_message")
        if replied is not None and replied.get("from", {}).get("id") == self.BOT_ID:
            return True
        text = message.get("text", message.get("caption", ""))
        entities = message.get("entities", message.get("caption_entities", []))
        for entity in entities:
            if entity["type"] == "bot_command" and entity["offset"] == 0:
                command = text[: entity["length"]]
                _, _, addressee = command.partition("@")
                return not addressee or addressee.lower() == self.BOT_USERNAME.lower()
        return False

    def _user_clicks(self, user: FakeUser, message: JSON, data: str) -> JSON:
        chat = self.chat(message["chat"]["id"])
        self._chat_for_user(user, chat)
        stored = self._messages.get((chat.id, message["message_id"]))
        shown: JSON
        if stored is not None:
            shown = stored
        else:
            shown = {"chat": chat.to_dict(), "message_id": message["message_id"], "date": 0}
        query_id = str(next(self._callback_ids))
        self._callback_queries[query_id] = False
        query = {
            "id": query_id,
            "from": user.to_dict(),
            "message": shown,
            "chat_instance": str(abs(chat.id) * 7919 + 104729),
            "data": data,
        }
        return self._push("callback_query", query, deliver=chat.bot_present)

    def _user_moves(
        self,
        user: FakeUser,
        message: Call | JSON,
        latitude: float,
        longitude: float,
        horizontal_accuracy: float | None,
    ) -> JSON:
        original = _message_of(message)
        key = (original["chat"]["id"], original["message_id"])
        stored = self._messages.get(key)
        if stored is None or "location" not in stored or stored["from"]["id"] != user.id:
            raise ValueError("not a live location sent by this user")
        stored["location"].update({"latitude": latitude, "longitude": longitude})
        if horizontal_accuracy is not None:
            stored["location"]["horizontal_accuracy"] = horizontal_accuracy
        stored["edit_date"] = self.now()
        chat = self.chat(key[0])
        return self._push("edited_message", stored, deliver=self._delivered(chat, stored))

    def _user_edits(self, user: FakeUser, message: Call | JSON, text: str) -> JSON:
        original = _message_of(message)
        key = (original["chat"]["id"], original["message_id"])
        stored = self._messages.get(key)
        if stored is None or "text" not in stored or stored["from"]["id"] != user.id:
            raise ValueError("not a text message sent by this user")
        stored["text"] = text
        entities = _detect_entities(text)
        if entities:
            stored["entities"] = entities
        else:
            stored.pop("entities", None)
        stored["edit_date"] = self.now()
        chat = self.chat(key[0])
        return self._push("edited_message", stored, deliver=self._delivered(chat, stored))

    def _bot_membership(self, group: FakeChat, by: JSON, old: str, new: str) -> None:
        group.bot_status = new
        update = {
            "chat": group.to_dict(),
            "from": by,
            "date": self.now(),
            "old_chat_member": self._member_dict(self.bot_user(), old),
            "new_chat_member": self._member_dict(self.bot_user(), new),
        }
        self._push("my_chat_member", update)

    def _member_dict(self, user: JSON, status: str) -> JSON:
        member: JSON = {"status": status, "user": user}
        if status == "creator":
            member["is_anonymous"] = False
        elif status == "administrator":
            member.update(
                can_be_edited=False,
                is_anonymous=False,
                can_manage_chat=True,
                can_delete_messages=True,
                can_manage_video_chats=True,
                can_restrict_members=True,
                can_promote_members=False,
                can_change_info=True,
                can_invite_users=True,
                can_post_stories=False,
                can_edit_stories=False,
                can_delete_stories=False,
                can_pin_messages=True,
            )
        elif status == "restricted":
            member.update(
                {
                    key: False
                    for key in (
                        "can_change_info",
                        "can_invite_users",
                        "can_pin_messages",
                        "can_send_messages",
                        "can_send_polls",
                        "can_send_other_messages",
                        "can_add_web_page_previews",
                        "can_manage_topics",
                        "can_send_audios",
                        "can_send_documents",
                        "can_send_photos",
                        "can_send_videos",
                        "can_send_video_notes",
                        "can_send_voice_notes",
                        "can_edit_tag",
                    )
                },
                is_member=True,
                until_date=0,
            )
        elif status == "kicked":
            member["until_date"] = 0
        return member

    # ---------------------------------------------------------------- files

    def _register_file(self, data: bytes, path_pattern: str, prefix: str = "BQAC") -> _StoredFile:
        number = next(self._file_numbers)
        stored = _StoredFile(
            file_id=f"{prefix}AgIAAxkBAAI{number:06d}",
            unique_id=f"AgAD{number:06d}",
            data=data,
            path=path_pattern.format(n=number),
        )
        self._files[stored.file_id] = stored
        self._paths[stored.path] = stored
        return stored

    def _register_photo(self, data: bytes) -> list[JSON]:
        width, height = _image_size(data)
        scale = min(1.0, 90 / max(width, height, 1))
        sizes = []
        for w, h in (
            (max(1, round(width * scale)), max(1, round(height * scale))),
            (width, height),
        ):
            stored = self._register_file(data, "photos/file_{n}.jpg", prefix="AgAC")
            sizes.append(
                {
                    "file_id": stored.file_id,
                    "file_unique_id": stored.unique_id,
                    "file_size": len(data),
                    "width": w,
                    "height": h,
                }
            )
        return sizes

    def _input_file(
        self, params: JSON, files: dict[str, tuple[bytes, str, str]], name: str
    ) -> tuple[bytes, str, str] | _StoredFile | None:
        """An uploaded file (bytes, file name, mime type) or a known file for a file_id."""
        if name in files:
            return files[name]
        value = params.get(name)
        if value is None:
            raise _bad_request(f"there is no {name} in the request")
        value = str(value)
        if value.startswith("attach://"):
            attached = files.get(value.removeprefix("attach://"))
            if attached is None:
                raise _bad_request(f"file {value} not found")
            return attached
        if value.startswith(("http://", "https://")):
            return None
        stored = self._files.get(value)
        if stored is None:
            raise _bad_request("wrong file identifier/HTTP URL specified")
        return stored

    # ---------------------------------------------------------------- text and markup

    def _render(self, text: str, parse_mode: Any, entities: Any) -> tuple[str, list[JSON]]:
        if isinstance(parse_mode, str) and parse_mode.lower() == "html":
            try:
                plain, parsed = parse_html(text)
            except ValueError as exc:
                raise _bad_request(f"can't parse entities: {exc}") from None
        else:
            plain, parsed = text, list(entities) if isinstance(entities, list) else []
        blocking = [e for e in parsed if e["type"] in ("code", "pre", "text_link")]
        for entity in _detect_entities(plain):
            end = entity["offset"] + entity["length"]
            if not any(
                e["offset"] < end and entity["offset"] < e["offset"] + e["length"] for e in blocking
            ):
                parsed.append(entity)
        parsed.sort(key=lambda e: (e["offset"], -e["length"]))
        return _trim(plain, parsed)

    def _text_fields(self, params: JSON) -> JSON:
        text = params.get("text")
        if text is None or str(text) == "":
            raise _bad_request("message text is empty")
        plain, entities = self._render(str(text), params.get("parse_mode"), params.get("entities"))
        if not plain.strip():
            raise _bad_request("message text is empty")
        if len(plain) > 4096:
            raise _bad_request("message is too long")
        fields: JSON = {"text": plain}
        if entities:
            fields["entities"] = entities
        return fields

    def _caption_fields(self, params: JSON) -> JSON:
        caption = params.get("caption")
        if caption is None or str(caption) == "":
            return {}
        plain, entities = self._render(
            str(caption), params.get("parse_mode"), params.get("caption_entities")
        )
        if len(plain) > 1024:
            raise _bad_request("message caption is too long")
        fields: JSON = {"caption": plain}
        if entities:
            fields["caption_entities"] = entities
        return fields

    def _inline_markup(self, params: JSON) -> JSON | None:
        """Validate ``reply_markup``; return it if it is an inline keyboard (the only kind
        Telegram echoes in the Message)."""
        markup = params.get("reply_markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" not in markup:
            return None
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise _bad_request(
                'field "inline_keyboard" of the InlineKeyboardMarkup must be an Array'
            )
        for row in rows:
            for button in row:
                actions = _BUTTON_ACTIONS & button.keys()
                if not button.get("text") or not actions:
                    raise _bad_request("text buttons are unallowed in the inline keyboard")
                if len(actions) > 1:
                    raise _bad_request(
                        "can't parse inline keyboard button: exactly one field must be set"
                    )
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= 64:
                    raise _bad_request("BUTTON_DATA_INVALID")
        return markup

    def _bot_message(self, chat: FakeChat, params: JSON, fields: JSON) -> JSON:
        reply = self._reply_target(chat, params)
        markup = self._inline_markup(params)
        if reply is not None:
            fields["reply_to_message"] = _strip_reply(reply)
        if markup is not None:
            fields["reply_markup"] = markup
        return self._new_message(chat, self.bot_user(), **fields)

    def _reply_target(self, chat: FakeChat, params: JSON) -> JSON | None:
        reply = params.get("reply_parameters")
        if isinstance(reply, dict):
            message_id = reply.get("message_id")
            allow = bool(reply.get("allow_sending_without_reply"))
            if reply.get("chat_id") is not None:
                chat = self._resolve_chat(reply["chat_id"])
        elif params.get("reply_to_message_id") is not None:
            message_id = params["reply_to_message_id"]
            allow = bool(params.get("allow_sending_without_reply"))
        else:
            return None
        target = self._messages.get((chat.id, int(message_id)))
        if target is None and not allow:
            raise _bad_request("message to be replied not found")
        return target

    # ---------------------------------------------------------------- method handlers

    def _get_me(self, params: JSON, files: Any) -> JSON:
        return {
            **self.bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": not self.privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _delete_webhook(self, params: JSON, files: Any) -> bool:
        if params.get("drop_pending_updates") is True:
            if self._updates:
                self._confirmed_below = self._updates[-1]["update_id"] + 1
            self._updates.clear()
            self._notify()
        return True

    def _get_webhook_info(self, params: JSON, files: Any) -> JSON:
        return {
            "url": "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }

    async def _get_updates(self, params: JSON, files: Any) -> list[JSON]:
        offset = params.get("offset")
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        timeout = float(params.get("timeout") or 0)
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(allowed) if allowed else _DEFAULT_ALLOWED_UPDATES
        if offset is not None:
            self._confirm(int(offset))
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify()  # wakes an older long poll, which then answers 409
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            changed = self._changed
            if generation != self._poll_generation:
                raise _ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one "
                    "bot instance is running",
                )
            if self._updates or self._stopping:
                return [copy.deepcopy(update) for update in itertools.islice(self._updates, limit)]
            if not await self._wait_changed(changed, deadline):
                return []

    def _confirm(self, offset: int) -> None:
        if offset < 0:
            while len(self._updates) > -offset:
                self._confirmed_below = self._updates.popleft()["update_id"] + 1
        else:
            while self._updates and self._updates[0]["update_id"] < offset:
                self._updates.popleft()
            self._confirmed_below = max(self._confirmed_below, offset)
        self._notify()

    def _send_message(self, params: JSON, files: Any) -> JSON:
        chat = self._resolve_chat(params.get("chat_id"))
        return self._bot_message(chat, params, self._text_fields(params))

    def _send_photo(self, params: JSON, files: dict[str, tuple[bytes, str, str]]) -> JSON:
        chat = self._resolve_chat(params.get("chat_id"))
        source = self._input_file(params, files, "photo")
        fields: JSON = {}
        if isinstance(source, _StoredFile):
            data = source.data
        elif source is None:
            data = b"\x89PNG\r\n\x1a\n"
        else:
            data = source[0]
            if not data:
                raise _bad_request("file must be non-empty")
            if not _looks_like_image(data):
                raise _bad_request("IMAGE_PROCESS_FAILED")
        fields["photo"] = self._register_photo(data)
        fields.update(self._caption_fields(params))
        return self._bot_message(chat, params, fields)

    def _send_document(self, params: JSON, files: dict[str, tuple[bytes, str, str]]) -> JSON:
        chat = self._resolve_chat(params.get("chat_id"))
        source = self._input_file(params, files, "document")
        if isinstance(source, _StoredFile):
            document: JSON = {"file_id": source.file_id, "file_unique_id": source.unique_id}
            document["file_size"] = len(source.data)
        else:
            data, file_name, mime_type = source or (b"", "file", "application/octet-stream")
            if source is not None and not data:
                raise _bad_request("file must be non-empty")
            stored = self._register_file(data, _document_path(file_name))
            document = {
                "file_name": file_name,
                "mime_type": mime_type,
                "file_id": stored.file_id,
                "file_unique_id": stored.unique_id,
                "file_size": len(data),
            }
        fields: JSON = {"document": document}
        fields.update(self._caption_fields(params))
        return self._bot_message(chat, params, fields)

    def _send_location(self, params: JSON, files: Any) -> JSON:
        chat = self._resolve_chat(params.get("chat_id"))
        try:
            latitude = float(params["latitude"])
            longitude = float(params["longitude"])
        except (KeyError, TypeError, ValueError):
            raise _bad_request("wrong latitude or longitude") from None
        if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
            raise _bad_request("wrong latitude or longitude")
        location: JSON = {"latitude": latitude, "longitude": longitude}
        for key in ("horizontal_accuracy", "live_period", "heading", "proximity_alert_radius"):
            if params.get(key) is not None:
                location[key] = params[key]
        return self._bot_message(chat, params, {"location": location})

    def _send_chat_action(self, params: JSON, files: Any) -> bool:
        self._resolve_chat(params.get("chat_id"))
        if params.get("action") not in _CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        return True

    def _editable(self, params: JSON) -> JSON | None:
        """The stored bot message an edit targets (``None`` for inline messages)."""
        if params.get("inline_message_id"):
            return None
        chat = self._resolve_chat(params.get("chat_id"))
        stored = self._messages.get((chat.id, int(params.get("message_id") or 0)))
        if stored is None:
            raise _bad_request("message to edit not found")
        if stored["from"]["id"] != self.BOT_ID:
            raise _bad_request("message can't be edited")
        return stored

    def _apply_edit(self, stored: JSON, fields: JSON, drop: Iterable[str]) -> JSON:
        before = copy.deepcopy(stored)
        for key in drop:
            stored.pop(key, None)
        stored.update(fields)
        if {k: v for k, v in stored.items() if k != "edit_date"} == {
            k: v for k, v in before.items() if k != "edit_date"
        }:
            stored.clear()
            stored.update(before)
            raise _bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        stored["edit_date"] = self.now()
        return stored

    def _edit_message_text(self, params: JSON, files: Any) -> JSON | bool:
        stored = self._editable(params)
        fields = self._text_fields(params)
        markup = self._inline_markup(params)
        if stored is None:
            return True
        if "text" not in stored:
            raise _bad_request("there is no text in the message to edit")
        if markup is not None:
            fields["reply_markup"] = markup
        return self._apply_edit(stored, fields, ("entities", "reply_markup"))

    def _edit_message_caption(self, params: JSON, files: Any) -> JSON | bool:
        stored = self._editable(params)
        fields = self._caption_fields(params)
        markup = self._inline_markup(params)
        if stored is None:
            return True
        if not {"photo", "document"} & stored.keys():
            raise _bad_request("there is no caption in the message to edit")
        if markup is not None:
            fields["reply_markup"] = markup
        return self._apply_edit(stored, fields, ("caption", "caption_entities", "reply_markup"))

    def _edit_message_reply_markup(self, params: JSON, files: Any) -> JSON | bool:
        stored = self._editable(params)
        markup = self._inline_markup(params)
        if stored is None:
            return True
        fields = {"reply_markup": markup} if markup is not None else {}
        return self._apply_edit(stored, fields, ("reply_markup",))

    def _delete_message(self, params: JSON, files: Any) -> bool:
        chat = self._resolve_chat(params.get("chat_id"))
        key = (chat.id, int(params.get("message_id") or 0))
        stored = self._messages.get(key)
        if stored is None:
            raise _bad_request("message to delete not found")
        own = stored["from"]["id"] == self.BOT_ID
        if not own and chat.is_group and chat.bot_status != "administrator":
            raise _bad_request("message can't be deleted")
        self._deleted[key] = self._messages.pop(key)
        return True

    def _answer_callback_query(self, params: JSON, files: Any) -> bool:
        query_id = str(params.get("callback_query_id"))
        if query_id not in self._callback_queries:
            raise _bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        self._callback_queries[query_id] = True
        return True

    def _scope_key(self, params: JSON) -> tuple[tuple[tuple[str, Any], ...], str]:
        scope = params.get("scope") or {"type": "default"}
        if not isinstance(scope, dict) or "type" not in scope:
            raise _bad_request("can't parse BotCommandScope JSON object")
        fields = {"type": scope["type"]}
        for key in ("chat_id", "user_id"):
            if scope.get(key) is not None:
                fields[key] = (
                    int(scope[key]) if str(scope[key]).lstrip("-").isdigit() else scope[key]
                )
        if "chat_id" in fields:
            chat = self._resolve_chat(fields["chat_id"])
            fields["chat_id"] = chat.id
        return tuple(sorted(fields.items())), str(params.get("language_code") or "")

    def _set_my_commands(self, params: JSON, files: Any) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad_request("can't parse commands JSON object")
        for command in commands:
            if not _COMMAND_NAME.fullmatch(str(command.get("command", ""))):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", "")).strip()) <= 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        key = self._scope_key(params)
        if commands:
            self._commands[key] = [
                {"command": c["command"], "description": c["description"]} for c in commands
            ]
        else:
            self._commands.pop(key, None)
        return True

    def _get_my_commands(self, params: JSON, files: Any) -> list[JSON]:
        return copy.deepcopy(self._commands.get(self._scope_key(params), []))

    def _delete_my_commands(self, params: JSON, files: Any) -> bool:
        self._commands.pop(self._scope_key(params), None)
        return True

    def _set_chat_menu_button(self, params: JSON, files: Any) -> bool:
        chat_id = params.get("chat_id")
        key = self._resolve_chat(chat_id).id if chat_id is not None else None
        self._menu_buttons[key] = params.get("menu_button") or {"type": "default"}
        return True

    def _get_chat_menu_button(self, params: JSON, files: Any) -> JSON:
        chat_id = params.get("chat_id")
        return self.menu_button(self._resolve_chat(chat_id).id if chat_id is not None else None)

    def _profile_setter(self, what: str) -> Callable[[JSON, Any], bool]:
        def handler(params: JSON, files: Any) -> bool:
            language = str(params.get("language_code") or "")
            value = params.get(what)
            if value:
                self._profile[(what, language)] = str(value)
            else:
                self._profile.pop((what, language), None)
            return True

        return handler

    def _profile_getter(self, what: str) -> Callable[[JSON, Any], JSON]:
        def handler(params: JSON, files: Any) -> JSON:
            language = str(params.get("language_code") or "")
            default = self.BOT_FIRST_NAME if what == "name" else ""
            return {what: self._profile.get((what, language), default)}

        return handler

    def _get_chat(self, params: JSON, files: Any) -> JSON:
        chat = self._resolve_chat(params.get("chat_id"))
        return {
            **chat.to_dict(),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    def _member_status(self, chat: FakeChat, user_id: int) -> str:
        if user_id == self.BOT_ID:
            return chat.bot_status or "member"
        if chat.type == "private":
            return "member" if user_id == chat.id else "left"
        return chat.members.get(user_id, "left")

    def _get_chat_member(self, params: JSON, files: Any) -> JSON:
        chat = self._resolve_chat(params.get("chat_id"))
        user_id = int(params.get("user_id") or 0)
        return self._member_dict(self._user_dict(user_id), self._member_status(chat, user_id))

    def _get_chat_administrators(self, params: JSON, files: Any) -> list[JSON]:
        chat = self._resolve_chat(params.get("chat_id"))
        if not chat.is_group:
            raise _bad_request("there are no administrators in the private chat")
        admins = [
            self._member_dict(self._user_dict(user_id), status)
            for user_id, status in chat.members.items()
            if status in ("creator", "administrator") and user_id in self._users
        ]
        if chat.bot_status == "administrator":
            admins.append(self._member_dict(self.bot_user(), "administrator"))
        return admins

    def _get_chat_member_count(self, params: JSON, files: Any) -> int:
        chat = self._resolve_chat(params.get("chat_id"))
        if chat.type == "private":
            return 2
        present = [s for s in chat.members.values() if s not in ("left", "kicked")]
        return len(present) + (1 if chat.bot_present else 0)

    def _leave_chat(self, params: JSON, files: Any) -> bool:
        chat = self._resolve_chat(params.get("chat_id"))
        if not chat.is_group:
            raise _bad_request("chat member status can't be changed in private chats")
        if not chat.bot_present:
            raise _ApiError(403, f"Forbidden: bot is not a member of the {chat.type} chat")
        self._bot_membership(chat, self.bot_user(), chat.bot_status or "member", "left")
        return True

    def _get_file(self, params: JSON, files: Any) -> JSON:
        stored = self._files.get(str(params.get("file_id")))
        if stored is None:
            raise _bad_request("invalid file_id")
        if len(stored.data) > 20 * 1024 * 1024:
            raise _bad_request("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.unique_id,
            "file_size": len(stored.data),
            "file_path": stored.path,
        }


def _now() -> float:
    return asyncio.get_running_loop().time()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _too_many(retry_after: int) -> _ApiError:
    return _ApiError(
        429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after}
    )


def _window(times: deque[float], now: float, seconds: float) -> deque[float]:
    """Drop entries older than the window and return the deque."""
    while times and times[0] <= now - seconds:
        times.popleft()
    return times


def _decode_param(name: str, value: str) -> Any:
    if name in _STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


async def _read_params(
    request: web.Request,
) -> tuple[JSON, dict[str, tuple[bytes, str, str]]]:
    """JSON-decoded parameters (query string and body) and uploads (data, file name, mime)."""
    params: JSON = {key: _decode_param(key, value) for key, value in request.query.items()}
    files: dict[str, tuple[bytes, str, str]] = {}
    if request.method != "POST" or not request.can_read_body:
        return params, files
    if request.content_type == "application/json":
        body = await request.json()
        if isinstance(body, dict):
            params.update(body)
        return params, files
    form = await request.post()
    for key, value in form.items():
        if isinstance(value, web.FileField):
            files[key] = (
                value.file.read(),
                value.filename,
                value.content_type or "application/octet-stream",
            )
        else:
            params[key] = _decode_param(key, str(value))
    return params, files
