"""The outbox sender against a real SQLite file and a scripted in-test transport."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from bot.clock import Clock, utc_now
from bot.outbox.queue import OutgoingMessage, Recipient, Status, enqueue
from bot.outbox.sender import (
    Delivered,
    Delivery,
    Moved,
    OutboxSender,
    RetryLater,
    SenderPolicy,
    Undeliverable,
)
from bot.store import Database, open_database, upgrade
from bot.store.tables import outbox

# Fast everything: limits far above what the tests send unless a test is about pacing.
FAST = {
    "global_per_second": 1000,
    "group_per_minute": 1000,
    "private_per_second": 1000,
    "backoff_base": 0.01,
    "backoff_max": 0.05,
    "idle_poll": 0.2,
}


@dataclass
class Send:
    at: float
    recipient: Recipient
    text: str
    outcome: Delivery | None = None


class FakeTransport:
    """Records every send and answers from a script: per address, queued answers first, then
    the address's permanent answer, else Delivered. ``down`` answers every send like a 502."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.down = False
        self.scripts: dict[str, deque[Delivery]] = defaultdict(deque)
        self.always: dict[str, Delivery] = {}
        self.sends: list[Send] = []
        self.active: Counter[str] = Counter()
        self.max_active = 0
        self.max_active_per_chat = 0
        self.closed = False

    async def send(self, recipient: Recipient, message: OutgoingMessage) -> Delivery:
        record = Send(time.monotonic(), recipient, message.text)
        self.sends.append(record)
        self.active[recipient.address] += 1
        self.max_active = max(self.max_active, self.active.total())
        self.max_active_per_chat = max(self.max_active_per_chat, self.active[recipient.address])
        try:
            await asyncio.sleep(self.latency)
            if self.down:
                record.outcome = RetryLater("502 Bad Gateway")
            elif self.scripts[recipient.address]:
                record.outcome = self.scripts[recipient.address].popleft()
            else:
                record.outcome = self.always.get(recipient.address, Delivered(str(len(self.sends))))
            return record.outcome
        finally:
            self.active[recipient.address] -= 1

    def is_group(self, recipient: Recipient) -> bool:
        return recipient.address.startswith("-")

    async def close(self) -> None:
        self.closed = True

    def delivered(self, address: str | None = None) -> list[str]:
        """Texts the chat (or every chat) received, in the order they were sent."""
        return [
            s.text
            for s in self.sends
            if isinstance(s.outcome, Delivered) and address in (None, s.recipient.address)
        ]

    def attempts(self, address: str) -> list[Send]:
        return [s for s in self.sends if s.recipient.address == address]


def chat(address: str) -> Recipient:
    return Recipient("telegram", address)


async def queue(db: Database, address: str, *texts: str, now: datetime | None = None) -> None:
    """Enqueue ``texts`` for ``address``, one committed transaction each (like services do)."""
    for text in texts:
        async with db.transaction() as conn:
            await enqueue(
                conn, chat(address), OutgoingMessage(text=text), topic="test", now=now or utc_now()
            )


async def rows(db: Database) -> dict[str, Any]:
    """Every outbox row, keyed by its text."""
    async with db.read() as conn:
        result = await conn.execute(select(outbox).order_by(outbox.c.id))
        return {row.payload["text"]: row for row in result}


async def eventually(condition: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def once_each(texts: list[str]) -> bool:
    return all(count == 1 for count in Counter(texts).values())


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = open_database(f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}")
    await upgrade(database)
    yield database
    await database.close()


@pytest.fixture
async def senders() -> AsyncIterator[list[OutboxSender]]:
    """Senders a test started; stopped at the end even if the test failed."""
    started: list[OutboxSender] = []
    yield started
    for sender in started:
        await sender.stop()


async def start(
    senders: list[OutboxSender],
    db: Database,
    transport: FakeTransport,
    *,
    clock: Clock = utc_now,
    on_moved: Callable[[Recipient, Recipient], Any] | None = None,
    **policy: Any,
) -> OutboxSender:
    sender = OutboxSender(
        db, transport, clock=clock, policy=SenderPolicy(**{**FAST, **policy}), on_moved=on_moved
    )
    await sender.start()
    senders.append(sender)
    return sender


async def test_fifo_per_chat_with_chats_in_parallel(
    db: Database, senders: list[OutboxSender]
) -> None:
    transport = FakeTransport(latency=0.03)
    for i in range(5):
        for address in ("1", "2", "-3"):
            await queue(db, address, f"{address}:{i}")
    sender = await start(senders, db, transport)
    await sender.wait_until_idle(5)

    for address in ("1", "2", "-3"):
        assert transport.delivered(address) == [f"{address}:{i}" for i in range(5)]
    assert len(transport.sends) == 15
    assert transport.max_active_per_chat == 1  # a chat's next message waits for its head
    assert transport.max_active == 3  # while different chats go at the same time
    table = await rows(db)
    assert {row.status for row in table.values()} == {Status.SENT}
    assert all(row.attempts == 1 and row.sent_at and row.message_ref for row in table.values())


async def test_server_errors_keep_the_message_until_it_is_delivered_once(
    db: Database, senders: list[OutboxSender]
) -> None:
    transport = FakeTransport()
    transport.down = True
    await queue(db, "1", "a1", "a2")
    await queue(db, "2", "b1")
    await start(senders, db, transport)
    await eventually(lambda: len(transport.attempts("1")) >= 3)

    assert {s.text for s in transport.attempts("1")} == {"a1"}  # a2 waits behind its head
    failing = (await rows(db))["a1"]
    assert failing.status == Status.PENDING
    assert failing.attempts >= 2
    assert failing.last_error == "502 Bad Gateway"

    transport.down = False
    await eventually(lambda: len(transport.delivered()) == 3)
    assert transport.delivered("1") == ["a1", "a2"]
    assert transport.delivered("2") == ["b1"]
    await asyncio.sleep(0.1)  # longer than backoff_max: nothing is sent again
    assert len(transport.delivered()) == 3
    table = await rows(db)
    assert {row.status for row in table.values()} == {Status.SENT}
    assert table["a1"].attempts == len(transport.attempts("1")) - 1


async def test_restart_delivers_what_was_pending_exactly_once(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'restart.db'}"
    first_db = open_database(url)
    await upgrade(first_db)
    first = FakeTransport(latency=0.2)
    first.always["2"] = RetryLater("502 Bad Gateway")  # chat 2's Telegram is failing
    await queue(first_db, "1", "a1", "a2")
    await queue(first_db, "2", "b1", "b2")
    sender = OutboxSender(first_db, first, clock=utc_now, policy=SenderPolicy(**FAST))
    await sender.start()
    await eventually(lambda: first.active["1"] == 1)  # a1 is on its way
    await sender.stop()  # ...and must be recorded before stop() returns

    assert first.closed
    assert first.delivered() == ["a1"]
    attempts_before_stop = len(first.sends)
    await asyncio.sleep(0.1)
    assert len(first.sends) == attempts_before_stop  # a stopped sender sends nothing
    table = await rows(first_db)
    assert table["a1"].status == Status.SENT
    assert {table[t].status for t in ("a2", "b1", "b2")} == {Status.PENDING}
    await first_db.close()

    # The "new process": a new engine on the same file, a new sender, Telegram healthy again.
    second_db = open_database(url)
    second = FakeTransport()
    restarted = OutboxSender(second_db, second, clock=utc_now, policy=SenderPolicy(**FAST))
    await restarted.start()
    try:
        await restarted.wait_until_idle(5)
        await eventually(lambda: len(second.delivered()) == 3)
    finally:
        await restarted.stop()
    assert second.delivered("1") == ["a2"]
    assert second.delivered("2") == ["b1", "b2"]
    everything = first.delivered() + second.delivered()
    assert sorted(everything) == ["a1", "a2", "b1", "b2"]
    assert {row.status for row in (await rows(second_db)).values()} == {Status.SENT}
    await second_db.close()


async def test_retry_after_pauses_the_chat_for_that_long(
    db: Database, senders: list[OutboxSender]
) -> None:
    frozen = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)  # the DB clock does not move at all
    transport = FakeTransport()
    transport.scripts["1"].append(RetryLater("Too Many Requests: retry after 0.4", after=0.4))
    await queue(db, "1", "a1", "a2", now=frozen)
    await queue(db, "2", "b1", now=frozen)
    await start(senders, db, transport, clock=lambda: frozen)
    await eventually(lambda: transport.delivered("2") == ["b1"])  # other chats are not paused

    paused = (await rows(db))["a1"]
    assert paused.status == Status.PENDING
    assert paused.attempts == 1
    assert paused.next_attempt_at == frozen + timedelta(seconds=0.4)
    await eventually(lambda: len(transport.delivered("1")) == 2)
    first_try, retry, second = transport.attempts("1")
    assert (retry.text, second.text) == ("a1", "a2")
    assert 0.4 <= retry.at - first_try.at < 1.5  # generous: CI machines stall
    assert (await rows(db))["a1"].attempts == 2


async def test_undeliverable_is_recorded_and_never_retried(
    db: Database, senders: list[OutboxSender]
) -> None:
    reason = "Forbidden: bot was blocked by the user"
    transport = FakeTransport()
    transport.always["5"] = Undeliverable(reason)
    await queue(db, "5", "x1", "x2")
    await queue(db, "6", "y1")
    sender = await start(senders, db, transport)
    await sender.wait_until_idle(5)
    await asyncio.sleep(0.1)  # longer than backoff_max

    assert [s.text for s in transport.attempts("5")] == ["x1", "x2"]
    assert transport.delivered() == ["y1"]
    table = await rows(db)
    for text in ("x1", "x2"):
        assert table[text].status == Status.UNDELIVERABLE
        assert table[text].last_error == reason
        assert table[text].attempts == 1
        assert table[text].sent_at is None


async def test_moved_group_readdresses_pending_rows_and_calls_on_moved(
    db: Database, senders: list[OutboxSender]
) -> None:
    old, new = chat("-1"), chat("-1009")
    transport = FakeTransport()
    transport.always[old.address] = Moved(new)
    moves: list[tuple[Recipient, Recipient]] = []

    async def on_moved(before: Recipient, after: Recipient) -> None:
        moves.append((before, after))

    await queue(db, old.address, "g1", "g2", "g3")
    sender = await start(senders, db, transport, on_moved=on_moved)
    await sender.wait_until_idle(5)

    assert moves == [(old, new)]
    assert [s.text for s in transport.attempts(old.address)] == ["g1"]
    assert transport.delivered(new.address) == ["g1", "g2", "g3"]
    table = await rows(db)
    assert {row.address for row in table.values()} == {new.address}
    assert {row.status for row in table.values()} == {Status.SENT}
    assert table["g1"].attempts == 2


async def test_private_chat_pacing(db: Database, senders: list[OutboxSender]) -> None:
    transport = FakeTransport()
    await queue(db, "7", *(f"p{i}" for i in range(8)))
    sender = await start(senders, db, transport, private_per_second=5)
    await sender.wait_until_idle(5)

    times = [s.at for s in transport.sends]
    assert len(times) == 8
    assert times[4] - times[0] < 0.6  # a burst of five is allowed (paced, it takes 0.8 s)...
    for earlier, later in zip(times, times[5:], strict=False):
        assert later - earlier >= 1.0  # ...but never six within a second
    assert times[5] - times[0] < 1.6  # and the sixth goes as soon as the window allows


async def test_global_pacing(db: Database, senders: list[OutboxSender]) -> None:
    transport = FakeTransport()
    for i in range(13):
        await queue(db, str(100 + i), f"m{i}")
    sender = await start(senders, db, transport, global_per_second=10)
    await sender.wait_until_idle(5)

    times = sorted(s.at for s in transport.sends)
    assert len(times) == 13
    assert times[9] - times[0] < 0.6  # paced one by one it would take 0.9 s
    assert all(later - earlier >= 1.0 for earlier, later in zip(times, times[10:], strict=False))
    assert times[10] - times[0] < 1.6


async def test_group_pacing_holds_back_a_deep_queue_without_rescanning_it(
    db: Database, senders: list[OutboxSender]
) -> None:
    group = chat("-42")
    async with db.transaction() as conn:
        for i in range(1000):
            await enqueue(conn, group, OutgoingMessage(text=f"g{i}"), topic="test", now=utc_now())
    transport = FakeTransport()
    await start(senders, db, transport, group_per_minute=3)
    await eventually(lambda: len(transport.sends) == 3)
    await queue(db, "9", "private while the group waits")
    await eventually(lambda: transport.delivered("9") == ["private while the group waits"])

    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        await asyncio.sleep(0.6)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    assert transport.delivered("-42") == ["g0", "g1", "g2"]  # 3 a minute, the rest wait
    # Waiting for the group's window means sleeping: about one look at the table per
    # idle_poll (0.2 s), not a busy loop and not a query per queued row.
    assert len(statements) <= 10


async def test_rolled_back_message_is_never_sent(db: Database, senders: list[OutboxSender]) -> None:
    transport = FakeTransport()
    sender = await start(senders, db, transport)

    async def failing_change() -> None:
        async with db.transaction() as conn:
            await enqueue(conn, chat("1"), OutgoingMessage(text="lost"), topic="t", now=utc_now())
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        await failing_change()
    await queue(db, "1", "committed")
    await sender.wait_until_idle(5)
    await asyncio.sleep(0.3)  # longer than idle_poll: a re-read of the table finds nothing else

    assert transport.delivered() == ["committed"]
    assert list(await rows(db)) == ["committed"]


async def test_commit_wakes_the_sender(db: Database, senders: list[OutboxSender]) -> None:
    transport = FakeTransport()
    sender = await start(senders, db, transport, idle_poll=10.0)
    await sender.wait_until_idle(5)
    committed = time.monotonic()
    await queue(db, "1", "prompt")
    await eventually(lambda: transport.delivered() == ["prompt"], within=2.0)

    assert transport.sends[0].at - committed < 0.5  # not the 10 s idle poll
