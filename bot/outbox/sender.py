"""Deliver the outbox: one background loop per process sends pending rows through a Transport.

What callers can rely on:

* The table is the queue. In memory the sender keeps only a cache of each chat's oldest pending
  row (its *head*) and the rate-limit windows; a new sender rebuilds the cache from the table,
  so a restart resumes exactly where the last commit left off.
* Per chat, strict FIFO: a chat's next row waits while its head is in flight or waiting for a
  retry, so the notifications about one case arrive in the order they were queued.
* Chats are independent: up to ``max_in_flight`` sends run at once, oldest head first, within
  sliding windows (overall, per group, per private chat) so the messenger never has to refuse.
* Nothing is dropped: network and server errors are retried forever with backoff; only an
  ``Undeliverable`` answer (blocked, chat gone, bad request) closes a row without sending it.

No messenger is imported here: a ``Transport`` (bot.outbox.telegram) does the talking.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import ValidationError
from sqlalchemy import Row, func, select, update

from bot.clock import Clock
from bot.logs import log_event
from bot.outbox.queue import OutgoingMessage, Recipient, Status, readdress
from bot.store.engine import Database
from bot.store.tables import outbox

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivered:
    """The messenger accepted the message; ``message_ref`` is its id there."""

    message_ref: str


@dataclass(frozen=True)
class RetryLater:
    """A temporary failure: try again. ``after`` is a wait the server demanded, in seconds
    (Telegram's 429 ``retry_after``); ``None`` means "use the sender's backoff"."""

    reason: str
    after: float | None = None


@dataclass(frozen=True)
class Undeliverable:
    """A permanent failure (blocked, chat gone, bad request): the row is closed, never retried."""

    reason: str


@dataclass(frozen=True)
class Moved:
    """The chat lives at a new address now (a group became a supergroup): send it there."""

    new_recipient: Recipient


Delivery = Delivered | RetryLater | Undeliverable | Moved


class Transport(Protocol):
    """A messenger adapter. ``send`` answers every delivery problem with a ``Delivery`` value;
    an exception escaping it is treated as ``RetryLater`` (the message is kept)."""

    async def send(self, recipient: Recipient, message: OutgoingMessage) -> Delivery: ...

    def is_group(self, recipient: Recipient) -> bool:
        """Whether ``recipient`` is a group chat (paced per minute) or a private one."""
        ...

    async def close(self) -> None: ...


OnMoved = Callable[[Recipient, Recipient], Awaitable[None]]


@dataclass
class SenderPolicy:
    """Pacing and retry settings. The defaults are Telegram's published limits."""

    global_per_second: int = 30
    group_per_minute: int = 20
    private_per_second: int = 1
    backoff_base: float = 1.0  # seconds before the first retry after a 5xx/network error
    backoff_max: float = 300.0  # the backoff doubles per attempt up to this; retried forever
    idle_poll: float = 1.0  # how often the table is re-read when nothing woke the sender
    max_in_flight: int = 32
    # Added to every window's length: a send is counted when it is dispatched, and the server
    # counts it when it arrives; this margin absorbs the difference in network delay between
    # two sends so the server's own limiter does not see them closer than the limit.
    window_margin: float = 0.05
    # Least time between two sends. Without it a freed window lets all its sends leave in one
    # instant; they then queue up in the HTTP client and on the network, reach the server
    # spread out by that queueing, and the last ones count into the next window. 5 ms spreads
    # a window of 30 over 0.15 s and costs nothing at 30/s.
    send_interval: float = 0.005


class _Window:
    """Sliding window: at most ``limit`` sends in any ``period`` seconds, and at least
    ``spacing`` seconds between two sends (monotonic time)."""

    __slots__ = ("_sent", "limit", "period", "spacing")

    def __init__(self, limit: int, period: float, spacing: float = 0.0) -> None:
        self.limit = limit
        self.period = period
        self.spacing = spacing
        self._sent: deque[float] = deque()

    def free_at(self, now: float) -> float:
        """The earliest time a send may happen (``now`` if a slot is free)."""
        while self._sent and self._sent[0] <= now - self.period:
            self._sent.popleft()
        if not self._sent:
            return now
        spaced = self._sent[-1] + self.spacing
        if len(self._sent) < self.limit:
            return max(now, spaced)
        return max(self._sent[-self.limit] + self.period, spaced)

    def take(self, now: float) -> None:
        self._sent.append(now)

    def idle(self, now: float) -> bool:
        return not self._sent or self._sent[-1] <= now - self.period


@dataclass
class _Head:
    """The oldest pending row of one chat, as cached from the table."""

    id: int
    topic: str
    payload: dict[str, Any]
    attempts: int
    due: float  # monotonic time from which it may be sent (a retry waits until then)
    in_flight: bool = False


_HEAD_COLUMNS = (
    outbox.c.id,
    outbox.c.channel,
    outbox.c.address,
    outbox.c.topic,
    outbox.c.payload,
    outbox.c.attempts,
    outbox.c.next_attempt_at,
)


def _heads_query() -> Any:
    """The head row of every chat with pending rows, found by skipping along ix_outbox_pending.

    A GROUP BY would read every pending row (10,000 queued for one group = 10,000 index
    entries per pass); this recursive query does one index seek per chat instead: from the
    current chat it jumps to the first pending entry of the next (channel, address).
    """
    pending = outbox.c.status == Status.PENDING
    first = (
        select(outbox.c.id, outbox.c.channel, outbox.c.address)
        .where(pending)
        .order_by(outbox.c.channel, outbox.c.address, outbox.c.id)
        .limit(1)
        .subquery()
    )
    chats = select(first).cte("chats", recursive=True)
    same_channel = outbox.alias("same_channel")
    next_channel = outbox.alias("next_channel")
    # Two seeks rather than one row-value comparison: SQLite only uses the index for the first
    # column of `(channel, address) > (?, ?)`, which would scan a whole channel per step.
    next_in_channel = (
        select(same_channel.c.id)
        .where(
            same_channel.c.status == Status.PENDING,
            same_channel.c.channel == chats.c.channel,
            same_channel.c.address > chats.c.address,
        )
        .order_by(same_channel.c.address, same_channel.c.id)
        .limit(1)
        .scalar_subquery()
    )
    first_of_next_channel = (
        select(next_channel.c.id)
        .where(next_channel.c.status == Status.PENDING, next_channel.c.channel > chats.c.channel)
        .order_by(next_channel.c.channel, next_channel.c.address, next_channel.c.id)
        .limit(1)
        .scalar_subquery()
    )
    step = outbox.alias("step")
    chats = chats.union_all(
        select(step.c.id, step.c.channel, step.c.address)
        .select_from(chats)
        .join(step, step.c.id == func.coalesce(next_in_channel, first_of_next_channel))
    )
    return select(*_HEAD_COLUMNS).join(chats, chats.c.id == outbox.c.id)


_HEADS = _heads_query()


def _head_of(recipient: Recipient) -> Any:
    """The oldest pending row of one chat (one seek on ix_outbox_pending)."""
    return (
        select(*_HEAD_COLUMNS)
        .where(
            outbox.c.status == Status.PENDING,
            outbox.c.channel == recipient.channel,
            outbox.c.address == recipient.address,
        )
        .order_by(outbox.c.id)
        .limit(1)
    )


class OutboxSender:
    """The one loop that delivers the outbox (one per process, per database).

    ``start()`` it once the schema exists; ``stop()`` it before closing the database. Rows
    committed with ``enqueue`` are picked up at once (``start`` subscribes ``wake`` to the
    database's outbox commits) and otherwise within ``policy.idle_poll`` seconds.
    ``clock`` stamps what is written to the table; pacing and waiting use the monotonic clock,
    so a test may freeze ``clock`` without freezing delivery.
    """

    def __init__(
        self,
        db: Database,
        transport: Transport,
        *,
        clock: Clock,
        policy: SenderPolicy | None = None,
        on_moved: OnMoved | None = None,
    ) -> None:
        self._db = db
        self._transport = transport
        self._clock = clock
        self._policy = policy or SenderPolicy()
        self._on_moved = on_moved
        self._heads: dict[Recipient, _Head] = {}
        self._global = _Window(
            self._policy.global_per_second,
            1.0 + self._policy.window_margin,
            spacing=self._policy.send_interval,
        )
        self._windows: dict[Recipient, _Window] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Cache updates and the table writes they mirror happen together under this lock, so a
        # re-read of the table never overwrites a newer cache entry with an older snapshot.
        self._lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._dirty = True  # the table may hold rows the cache does not know about
        self._refresh_due = 0.0
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start delivering in a background task, beginning with whatever is pending."""
        if self._loop_task is not None:
            raise RuntimeError("OutboxSender.start() called twice")
        self._db.on_outbox_commit(self.wake)
        self._loop_task = asyncio.create_task(self._run(), name="outbox-sender")

    def wake(self) -> None:
        """Re-read the table now (new rows were committed)."""
        self._dirty = True
        self._idle.clear()
        self._wakeup.set()

    async def stop(self) -> None:
        """Take no new work, let in-flight sends finish and be recorded, close the transport."""
        self._stopping = True
        self._wakeup.set()
        if self._loop_task is not None:
            await self._loop_task
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._transport.close()

    async def wait_until_idle(self, timeout: float) -> None:  # noqa: ASYNC109 (the contract)
        """Return once nothing is in flight and no pending row is due (rows waiting for a retry
        are not due); raise ``TimeoutError`` if that takes longer than ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            await self._idle.wait()

    async def _run(self) -> None:
        while not self._stopping:
            self._wakeup.clear()
            sleep = self._policy.idle_poll
            try:
                if self._dirty or time.monotonic() >= self._refresh_due:
                    await self._refresh()
                if not self._stopping:
                    sleep = self._dispatch()
            except Exception:
                logger.exception("outbox_loop_error")
            self._update_idle()
            # Sleep until the next slot or retry is due, or until a commit or a finished send
            # sets _wakeup; never a fixed tick.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(sleep):
                    await self._wakeup.wait()

    async def _refresh(self) -> None:
        """Re-read every chat's head from the table into the cache."""
        self._dirty = False
        self._refresh_due = time.monotonic() + self._policy.idle_poll
        async with self._lock:
            async with self._db.read() as conn:
                rows = (await conn.execute(_HEADS)).all()
            now, mono = self._clock(), time.monotonic()
            seen: set[Recipient] = set()
            for row in rows:
                recipient = Recipient(row.channel, row.address)
                seen.add(recipient)
                known = self._heads.get(recipient)
                # A known head keeps its monotonic due time: recomputing it from the injected
                # clock would never let a retry fall due under a frozen test clock.
                if known is None or not (
                    known.in_flight or (known.id == row.id and known.attempts == row.attempts)
                ):
                    self._heads[recipient] = self._head_from(row, now, mono)
            for recipient in [r for r, head in self._heads.items() if r not in seen]:
                if not self._heads[recipient].in_flight:
                    del self._heads[recipient]
            self._windows = {r: w for r, w in self._windows.items() if not w.idle(mono)}

    @staticmethod
    def _head_from(row: Row[Any], now: datetime, mono: float) -> _Head:
        wait = max(0.0, (row.next_attempt_at - now).total_seconds())
        return _Head(row.id, row.topic, row.payload, row.attempts, due=mono + wait)

    def _dispatch(self) -> float:
        """Start every send that is due and has a free slot; return seconds until the next
        one could start (a finished send or a commit wakes the loop earlier)."""
        now = time.monotonic()
        wake_at = self._refresh_due
        free = self._policy.max_in_flight - len(self._tasks)
        if free <= 0:
            return max(0.0, wake_at - now)
        for recipient, head in sorted(self._heads.items(), key=lambda item: item[1].id):
            if head.in_flight:
                continue
            window = self._windows.get(recipient)
            ready_at = max(head.due, window.free_at(now) if window else now)
            if ready_at > now:
                wake_at = min(wake_at, ready_at)
                continue
            global_at = self._global.free_at(now)
            if global_at > now:
                wake_at = min(wake_at, global_at)
                break
            self._start_send(recipient, head, now)
            free -= 1
            if free == 0:
                break
        return max(0.0, wake_at - now)

    def _window_of(self, recipient: Recipient) -> _Window:
        window = self._windows.get(recipient)
        if window is None:
            margin = self._policy.window_margin
            if self._transport.is_group(recipient):
                window = _Window(self._policy.group_per_minute, 60.0 + margin)
            else:
                window = _Window(self._policy.private_per_second, 1.0 + margin)
            self._windows[recipient] = window
        return window

    def _start_send(self, recipient: Recipient, head: _Head, now: float) -> None:
        head.in_flight = True
        self._global.take(now)
        self._window_of(recipient).take(now)
        task = asyncio.create_task(self._deliver(recipient, head), name=f"outbox-{head.id}")
        self._tasks.add(task)
        task.add_done_callback(self._send_finished)

    def _send_finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("outbox_task_failed", exc_info=task.exception())
        self._wakeup.set()

    def _update_idle(self) -> None:
        now = time.monotonic()
        busy = (
            self._dirty
            or bool(self._tasks)
            or any(head.due <= now for head in self._heads.values())
        )
        if busy:
            self._idle.clear()
        else:
            self._idle.set()

    async def _deliver(self, recipient: Recipient, head: _Head) -> None:
        try:
            message = OutgoingMessage.model_validate(head.payload)
        except ValidationError as exc:
            outcome: Delivery = Undeliverable(f"invalid payload: {exc}")
        else:
            try:
                outcome = await self._transport.send(recipient, message)
            except Exception as exc:
                # A transport bug must not lose the message: keep it and retry with backoff.
                logger.exception("outbox_transport_error", extra={"outbox_id": head.id})
                outcome = RetryLater(f"transport error: {exc!r}")
        # AT-LEAST-ONCE WINDOW: from the moment the request left for the messenger until the
        # commit in _record below, the row is still `pending` in the table. If the process dies
        # in between, the restarted sender sends this row again. That is the only way this
        # sender repeats a message (an answer lost on the way back, e.g. a read timeout after
        # Telegram accepted the request, is the same window: it comes back as RetryLater).
        if isinstance(outcome, Moved) and self._on_moved is not None:
            try:
                await self._on_moved(recipient, outcome.new_recipient)
            except Exception:
                # Bookkeeping must not hold the messages back: they are re-addressed anyway.
                logger.exception("outbox_on_moved_failed")
        await self._record(recipient, head, outcome)

    async def _record(self, recipient: Recipient, head: _Head, outcome: Delivery) -> None:
        """Write ``outcome`` to the table, retrying until the database takes it: the send
        happened, and forgetting it would mean sending it again."""
        delay = self._policy.backoff_base
        while True:
            try:
                await self._apply(recipient, head, outcome)
                return
            except Exception:
                logger.exception("outbox_record_failed", extra={"outbox_id": head.id})
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._policy.backoff_max)

    def _retry_delay(self, outcome: RetryLater, attempts: int) -> float:
        if outcome.after is not None:
            return max(0.0, outcome.after)
        # Exponential with "equal jitter", so chats that failed together do not retry together.
        ceiling = min(self._policy.backoff_max, self._policy.backoff_base * 2 ** min(attempts, 30))
        return ceiling / 2 * (1 + random.random())

    async def _apply(self, recipient: Recipient, head: _Head, outcome: Delivery) -> None:
        """One transaction that records ``outcome``, then the cache update that mirrors it."""
        row = outbox.c.id == head.id
        attempts = head.attempts + 1
        fields: dict[str, Any] = {
            "outbox_id": head.id,
            "topic": head.topic,
            "channel": recipient.channel,
            "address": recipient.address,
            "attempts": attempts,
        }
        delay = (
            self._retry_delay(outcome, head.attempts) if isinstance(outcome, RetryLater) else 0.0
        )
        async with self._lock:
            now = self._clock()
            following: Row[Any] | None = None
            async with self._db.transaction() as conn:
                values: dict[str, Any]
                match outcome:
                    case Delivered(message_ref=ref):
                        values = {"status": Status.SENT, "sent_at": now, "message_ref": ref}
                    case RetryLater(reason=reason):
                        values = {
                            "last_error": reason,
                            "next_attempt_at": now + timedelta(seconds=delay),
                        }
                    case Undeliverable(reason=reason):
                        values = {"status": Status.UNDELIVERABLE, "last_error": reason}
                    case Moved(new_recipient=new):
                        values = {"last_error": f"moved to {new.channel}:{new.address}"}
                await conn.execute(
                    update(outbox).where(row).values(attempts=outbox.c.attempts + 1, **values)
                )
                if isinstance(outcome, Moved):
                    await readdress(conn, recipient, outcome.new_recipient)
                if not isinstance(outcome, RetryLater | Moved):
                    following = (await conn.execute(_head_of(recipient))).first()
            # Committed: mirror it in the cache, then say so in the log.
            if isinstance(outcome, RetryLater):
                head.attempts = attempts
                head.due = time.monotonic() + delay
                head.in_flight = False
            elif following is not None:
                self._heads[recipient] = self._head_from(following, now, time.monotonic())
            else:
                del self._heads[recipient]
            if isinstance(outcome, Moved):
                # The re-addressed rows belong to another chat now: find its head at once.
                self._dirty = True
        match outcome:
            case Delivered(message_ref=ref):
                log_event(logger, "outbox_sent", message_ref=ref, **fields)
            case RetryLater(reason=reason, after=after):
                log_event(
                    logger,
                    "outbox_retry",
                    logging.WARNING,
                    error=reason,
                    server_wait=after,
                    retry_in=round(delay, 3),
                    **fields,
                )
            case Undeliverable(reason=reason):
                log_event(logger, "outbox_undeliverable", reason=reason, **fields)
            case Moved(new_recipient=new):
                log_event(logger, "outbox_moved", new_address=new.address, **fields)
