"""Queue a notification in the same transaction as the change that causes it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from pydantic import BaseModel, Field
from sqlalchemy import delete, insert, update
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


async def readdress(conn: AsyncConnection, old: Recipient, new: Recipient) -> int:
    """Point every pending message for ``old`` at ``new`` (a group that became a supergroup)."""
    result = await conn.execute(
        update(outbox)
        .where(
            outbox.c.channel == old.channel,
            outbox.c.address == old.address,
            outbox.c.status == Status.PENDING,
        )
        .values(channel=new.channel, address=new.address)
    )
    return result.rowcount


async def purge_sent(conn: AsyncConnection, *, before: datetime) -> int:
    """Delete messages delivered before ``before``; returns how many."""
    result = await conn.execute(
        delete(outbox).where(outbox.c.status == Status.SENT, outbox.c.sent_at < before)
    )
    return result.rowcount
