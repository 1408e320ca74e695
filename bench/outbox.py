"""Benchmark: how close the outbox sender gets to Telegram's flood limits, and that it neither
loses nor repeats a message on the way.

    python bench/outbox.py [--messages N] [--groups M] [--privates P] [--per-group K]

Queues N notifications (K to each of M groups, the rest spread over P private chats, all
interleaved in queue order), then runs TelegramTransport + OutboxSender with the default
SenderPolicy against the fake Bot API (tests/fakebotapi.py) enforcing Telegram's limits:
30 messages/s overall, 20/minute per group, 1/s per private chat. It prints the achieved rate
next to the best rate those limits allow for this mix. The defaults make every limit matter:
1800 messages need a minute at 30/s, and 21 messages per group is one more than a group may
get in a minute, so each group's last message waits a minute for its window.

The exit status is 1 only if a message was lost or duplicated, never because of timing.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

# Run as a script from anywhere: make the repository importable (bot, tests.fakebotapi).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from sqlalchemy import func, select

from bot.clock import utc_now
from bot.logs import configure_logging
from bot.outbox.queue import OutgoingMessage, Recipient, Status, enqueue
from bot.outbox.sender import OutboxSender, SenderPolicy
from bot.outbox.telegram import TelegramTransport
from bot.settings import Settings
from bot.store import Database, open_database, upgrade
from bot.store.tables import outbox
from tests.fakebotapi import FakeBotAPI

# Telegram's limits as (messages, per seconds): what FakeBotAPI.enforce_limits() applies.
OVERALL = (30, 1.0)
GROUP = (20, 60.0)
PRIVATE = (1, 1.0)
MARKER = re.compile(r"#(\d+)\b")


def time_needed(count: int, limit: tuple[int, float]) -> float:
    """The shortest time from the first to the last of ``count`` sends under a sliding window
    of ``limit``: every ``messages``-th send has to wait a whole window after the first."""
    messages, seconds = limit
    return (count - 1) // messages * seconds if count else 0.0


def plan(messages: int, groups: int, privates: int, per_group: int) -> list[Recipient]:
    """The recipient of each message, in queue order: group messages evenly among the rest."""
    group_ids = [str(-100_000 - g) for g in range(groups)]
    private_ids = [str(10_000 + p) for p in range(privates)]
    group_total = min(messages, groups * per_group) if groups else 0
    if not private_ids:
        group_total = messages
    order: list[Recipient] = []
    sent_to_groups = 0
    for i in range(messages):
        # Message i goes to a group when the group share crosses a whole number here.
        if (i + 1) * group_total // messages > i * group_total // messages:
            order.append(Recipient("telegram", group_ids[sent_to_groups % groups]))
            sent_to_groups += 1
        else:
            order.append(Recipient("telegram", private_ids[(i - sent_to_groups) % privates]))
    return order


async def queue_all(db: Database, order: list[Recipient]) -> None:
    async with db.transaction() as conn:
        for i, recipient in enumerate(order):
            text = f"Notice #{i} — fire drill at <b>15:00</b>, gather at the east gate."
            await enqueue(conn, recipient, OutgoingMessage(text=text), topic="bench", now=utc_now())


async def pending(db: Database) -> int:
    async with db.read() as conn:
        query = select(func.count()).where(outbox.c.status == Status.PENDING)
        return int((await conn.execute(query)).scalar_one())


async def deliver(server: FakeBotAPI, order: list[Recipient], data_dir: Path) -> float:
    """Queue ``order``, run the sender until nothing is pending; the seconds that took."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        bot_token=FakeBotAPI.TOKEN,
        api_base_url=server.base_url,
        api_file_base_url=server.file_base_url,
        database_url=f"sqlite+aiosqlite:///{data_dir}/bench.db",
        data_dir=data_dir,
    )
    db = open_database(settings.database_url)
    try:
        await upgrade(db)
        await queue_all(db, order)
        sender = OutboxSender(db, TelegramTransport.create(settings), clock=utc_now)
        started = time.monotonic()
        await sender.start()
        try:
            while True:
                await sender.wait_until_idle(timeout=3600)
                if await pending(db) == 0:
                    return time.monotonic() - started
                await asyncio.sleep(0.05)  # a row waits for a retry after a 429: not due yet
        finally:
            await sender.stop()
    finally:
        await db.close()


async def run(messages: int, groups: int, privates: int, per_group: int) -> int:
    order = plan(messages, groups, privates, per_group)
    per_chat = Counter(order)
    server = FakeBotAPI()
    await server.start()
    try:
        for recipient in per_chat:
            chat_id = int(recipient.address)
            if chat_id < 0:
                server.group(chat_id, f"Group {chat_id}")
            else:
                await server.user(chat_id, f"User {chat_id}").send("/start")
        server.enforce_limits()
        with tempfile.TemporaryDirectory() as tmp:
            elapsed = await deliver(server, order, Path(tmp))
    finally:
        await server.stop()

    received = Counter(
        int(match.group(1))
        for call in server.sent_messages()
        if call.text and (match := MARKER.search(call.text))
    )
    lost = sum(1 for i in range(messages) if i not in received)
    duplicated = sum(count - 1 for count in received.values() if count > 1)
    group_counts = [n for r, n in per_chat.items() if r.address.startswith("-")]
    private_counts = [n for r, n in per_chat.items() if not r.address.startswith("-")]
    overall_need = time_needed(messages, OVERALL)
    groups_need = max((time_needed(n, GROUP) for n in group_counts), default=0.0)
    privates_need = max((time_needed(n, PRIVATE) for n in private_counts), default=0.0)
    need = max(overall_need, groups_need, privates_need)
    achieved = messages / elapsed

    policy = SenderPolicy()
    print(
        f"mix                 {messages} messages: {groups} groups getting "
        f"{_span(group_counts)} each, {privates} private chats getting {_span(private_counts)} each"
    )
    print(
        f"sender policy       max_in_flight={policy.max_in_flight} "
        f"window_margin={policy.window_margin}s send_interval={policy.send_interval}s"
    )
    print(f"messages            {messages}")
    print(f"elapsed             {elapsed:.2f} s")
    print(f"achieved rate       {achieved:.2f} msg/s")
    if need > 0:
        allowed = messages / need
        print(
            f"allowed rate        {allowed:.2f} msg/s (the limits need >= {need:.2f} s: overall "
            f"{overall_need:.2f} s, busiest group {groups_need:.2f} s, "
            f"busiest private chat {privates_need:.2f} s)"
        )
        print(f"ratio               {100 * achieved / allowed:.1f} %")
    else:
        print("allowed rate        unlimited (the whole mix fits in one window)")
    print(f"429s received       {server.rate_limited}")
    print(f"lost                {lost}")
    print(f"duplicated          {duplicated}")
    return 1 if lost or duplicated else 0


def _span(counts: list[int]) -> str:
    if not counts:
        return "0"
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}-{high}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1800, help="notifications to queue")
    parser.add_argument("--groups", type=int, default=10, help="group chats")
    parser.add_argument("--privates", type=int, default=200, help="private chats")
    parser.add_argument("--per-group", type=int, default=21, help="messages to each group")
    args = parser.parse_args()
    if args.messages < 1 or args.groups < 0 or args.privates < 0 or args.groups + args.privates < 1:
        parser.error("need at least one message and one chat")
    configure_logging(logging.WARNING)
    sys.exit(asyncio.run(run(args.messages, args.groups, args.privates, args.per_group)))


if __name__ == "__main__":
    main()
