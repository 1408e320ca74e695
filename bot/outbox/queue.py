"""Queue a notification in the same transaction as the change that causes it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

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


def _row(
    recipient: Recipient, payload: dict[str, Any], topic: str, now: datetime
) -> dict[str, Any]:
    return {
        "channel": recipient.channel,
        "address": recipient.address,
        "topic": topic,
        "payload": payload,
        "status": Status.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


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
    payload = message.model_dump(mode="json", exclude_defaults=True)
    result = await conn.execute(insert(outbox).values(**_row(recipient, payload, topic, now)))
    conn.info[OUTBOX_PENDING] = True
    return int(result.inserted_primary_key[0])


async def enqueue_many(
    conn: AsyncConnection,
    recipients: Sequence[Recipient],
    message: OutgoingMessage,
    *,
    topic: str,
    now: datetime,
) -> int:
    """The same ``message`` to each of ``recipients`` (a broadcast), written in one
    executemany inside ``conn``'s transaction; returns how many. Delivered as ``enqueue``."""
    if not recipients:
        return 0
    payload = message.model_dump(mode="json", exclude_defaults=True)
    await conn.execute(insert(outbox), [_row(r, payload, topic, now) for r in recipients])
    conn.info[OUTBOX_PENDING] = True
    return len(recipients)


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
