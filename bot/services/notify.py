"""Render a template for a recipient and queue it in the outbox, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from bot.outbox import Button, OutgoingMessage, enqueue, enqueue_many
from bot.runtime import Runtime
from bot.services.models import Group, Person


async def notify_person(
    conn: AsyncConnection,
    rt: Runtime,
    to: Person,
    template: str,
    *,
    topic: str,
    buttons: list[list[Button]] | None = None,
    photo: str | None = None,
    **context: Any,
) -> int:
    """Queue ``template`` for person ``to`` in their language (with ``photo``, a path under
    DATA_DIR, if given); returns the outbox id."""
    text = rt.renderer.render(to.language(rt.settings.locale), template, **context)
    message = OutgoingMessage(text=text, buttons=buttons or [], photo=photo)
    return await enqueue(conn, to.recipient, message, topic=topic, now=rt.now())


async def notify_group(
    conn: AsyncConnection,
    rt: Runtime,
    to: Group,
    template: str,
    *,
    topic: str,
    buttons: list[list[Button]] | None = None,
    photo: str | None = None,
    **context: Any,
) -> int:
    """Queue ``template`` for group ``to`` in the school's default language."""
    text = rt.renderer.render(rt.settings.locale, template, **context)
    message = OutgoingMessage(text=text, buttons=buttons or [], photo=photo)
    return await enqueue(conn, to.recipient, message, topic=topic, now=rt.now())


async def notify_groups(
    conn: AsyncConnection,
    rt: Runtime,
    to: Sequence[Group],
    template: str,
    *,
    topic: str,
    buttons: list[list[Button]] | None = None,
    photo: str | None = None,
    **context: Any,
) -> int:
    """Queue ``template`` for every group in ``to`` (a broadcast): rendered once, in the
    school's default language, and written in one statement. Returns how many."""
    text = rt.renderer.render(rt.settings.locale, template, **context)
    message = OutgoingMessage(text=text, buttons=buttons or [], photo=photo)
    recipients = [group.recipient for group in to]
    return await enqueue_many(conn, recipients, message, topic=topic, now=rt.now())
