"""Queue a notification in the same transaction as the change that causes it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from pydantic import BaseModel, Field
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.store.engine import OUTBOX_PENDING
from bot.store.tables import outbox


class Status(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    UNDELIVERABLE = "undeliverable"


class Recipient(NamedTuple):
    """Where a message goes: a messenger (``channel``) and a chat address in it."""

    channel: str
    address: str


class Button(BaseModel):
    """An inline button: ``action`` is the callback data the handlers understand."""

    text: str
    action: str | None = None
    url: str | None = None


class OutgoingMessage(BaseModel):
    """A rendered, messenger-neutral message: HTML text, optional buttons and photo."""

    text: str
    buttons: list[list[Button]] = Field(default_factory=list)
    photo: str | None = None  # a file path under DATA_DIR


async def enqueue(
    conn: AsyncConnection,
    recipient: Recipient,
    message: OutgoingMessage,
    *,
    topic: str,
    now: datetime,
) -> int:
    """Write ``message`` to the outbox inside ``conn``'s transaction; returns its id.

    It is delivered after the transaction commits, and not at all if it rolls back.
    """
    result = await conn.execute(
        insert(outbox).values(
            channel=recipient.channel,
            address=recipient.address,
            topic=topic,
            payload=message.model_dump(mode="json", exclude_defaults=True),
            status=Status.PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )
    conn.info[OUTBOX_PENDING] = True
    return int(result.inserted_primary_key[0])
