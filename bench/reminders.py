"""Benchmark: what the reminder pass and /compliance cost on a busy school's database.

    python bench/reminders.py [--rules N] [--groups M] [--days D]

Builds a school with M class groups and N reminder rules (daily, weekly, hourly crontab, all to
every class group, asking for acknowledgement), gives them a month of handled occurrences (as
the look-back sees them), runs the reminder pass through D days of simulated time (one pass at
each hour, sending and following up for real), and records a year of evidence for the
assessment calendar (a drill a week, an inspection a day, a complete patrol round a day). Then
it times, on a real SQLite file:

- an idle pass (nothing due: what the bot pays every minute),
- a busy pass (every rule due at once: N occurrences to M groups queued in the outbox),
- /compliance (the 平安校园 obligations over the current and previous periods).

It prints the figures; it never fails on timing.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

# Run as a script from anywhere: make the repository importable (bot, tests.support).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, insert, select

from bot.runtime import Runtime
from bot.services import compliance, org, reminders
from bot.store.tables import (
    activities,
    checklist_templates,
    inspections,
    outbox,
    patrol_rounds,
    patrol_routes,
    reminder_occurrences,
    reminder_rules,
)
from tests.support import SUPERADMIN_ID, FakeClock, add_groups, make_settings, open_runtime, profile

START = datetime(2026, 9, 1, 0, 30, tzinfo=UTC)  # 08:30 in Shanghai


def plan(rules: int) -> str:
    """``rules`` rules, a third each daily, weekly and hourly (crontab), to every class group."""
    kinds = (
        'schedule: daily\n  at: "{h:02d}:{m:02d}"',
        'schedule: weekly\n  days: [mon, wed, fri]\n  at: "{h:02d}:{m:02d}"',
        'schedule: cron\n  cron: "{m} 8-20 * * *"',
    )
    entries = []
    for n in range(rules):
        when = kinds[n % 3].format(h=8 + n % 12, m=n % 60)
        entries.append(f'- name: rule {n}\n  text: "提醒 {n}：{{date}} {{time}}"\n  {when}\n')
        entries[-1] += "  purpose: class\n  ack: true\n  follow_up: 2h\n"
    return "".join(entries)


async def evidence(rt: Runtime, days: int) -> None:
    """A year's records of the kinds the calendar counts, written straight to the tables
    (the services that make them are exercised by the tests; here only volume matters)."""
    now = rt.now()
    async with rt.db.transaction() as conn:
        root = await org.root_unit(conn, now)
        boss = (await conn.execute(select(org.people.c.id).limit(1))).scalar_one()
        template = (
            await conn.execute(
                insert(checklist_templates)
                .values(name="季度消防隐患排查", unit_id=root.id, created_at=now, updated_at=now)
                .returning(checklist_templates.c.id)
            )
        ).scalar_one()
        route = (
            await conn.execute(
                insert(patrol_routes)
                .values(
                    name="夜巡",
                    unit_id=root.id,
                    checkpoint_ids=[],
                    window_start="22:00",
                    window_end="06:00",
                    created_at=now,
                    updated_at=now,
                )
                .returning(patrol_routes.c.id)
            )
        ).scalar_one()
        for day in range(days):
            at = now - timedelta(days=day)
            await conn.execute(
                insert(inspections).values(
                    template_id=template,
                    inspector_id=boss,
                    item_ids=[],
                    state="done",
                    started_at=at,
                    finished_at=at,
                )
            )
            await conn.execute(
                insert(patrol_rounds).values(
                    route_id=route, window_start=at, window_end=at, started_at=at, state="complete"
                )
            )
            if day % 7 == 0:
                await conn.execute(
                    insert(activities).values(
                        ref=f"D-{day:04d}",
                        kind="drill",
                        topic=("anti_terror", "emergency", "fire")[day % 3],
                        title="演练",
                        place="操场",
                        planned_at=at,
                        state="done",
                        target_unit_id=root.id,
                        created_at=at,
                        updated_at=at,
                        done_at=at,
                        participants=300,
                        summary="完成",
                    )
                )


async def past_month(rt: Runtime) -> None:
    """Thirteen handled occurrences a day for each rule over the last 30 days (the most an
    hourly rule of the plan has), written straight to the table."""
    async with rt.db.transaction() as conn:
        ids = (await conn.execute(select(reminder_rules.c.id))).scalars().all()
        rows = [
            {
                "rule_id": rule_id,
                "due_at": START - timedelta(days=day, hours=hour),
                "lead_s": 0,
                "state": "sent",
                "done_at": START - timedelta(days=day, hours=hour),
                "detail": {},
            }
            for rule_id in ids
            for day in range(1, 31)
            for hour in range(13)
        ]
        await conn.execute(insert(reminder_occurrences), rows)


async def timed(work: object, repeat: int) -> tuple[float, object]:
    """The median wall time of ``repeat`` awaits of ``work()``, in milliseconds."""
    times = []
    result = None
    for _ in range(repeat):
        began = time.perf_counter()
        result = await work()  # type: ignore[operator]
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times), result


async def count(rt: Runtime, table: object) -> int:
    async with rt.db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar_one()  # type: ignore[arg-type]


async def run(rules: int, groups: int, days: int) -> None:
    logging.disable(logging.WARNING)
    clock = FakeClock(START)
    with tempfile.TemporaryDirectory() as tmp:
        rt = await open_runtime(make_settings(Path(tmp)), clock)
        try:
            boss = await org.identify(rt, profile(SUPERADMIN_ID, "boss", "boss"), private=True)
            classes = [(str(-1000 - g), f"学院{g // 10}/班级{g}", "class") for g in range(groups)]
            await add_groups(rt, boss, classes)
            await reminders.import_plan(rt, None, plan(rules).encode())
            await past_month(rt)
            began = time.perf_counter()
            for _hour in range(days * 24):
                clock.advance(hours=1)
                await reminders.run_due(rt)
            history = time.perf_counter() - began
            occurrences = await count(rt, reminder_occurrences)
            queued = await count(rt, outbox)

            clock.current = clock.current.replace(minute=59)  # between every rule's times
            idle, _ = await timed(lambda: reminders.run_due(rt), 10)
            # Every rule due at the same minute: give them all one time.
            async with rt.db.transaction() as conn:
                await conn.execute(
                    reminder_rules.update().values(
                        schedule={"kind": "daily", "at": "23:00"}, leads=[0]
                    )
                )
            clock.current = clock.current.replace(hour=15, minute=0, second=30)  # 23:00 local
            before = await count(rt, outbox)
            busy, progress = await timed(lambda: reminders.run_due(rt), 1)
            busy_messages = await count(rt, outbox) - before

            await evidence(rt, 365)
            await compliance.load_preset(rt, boss, "pingan-campus")
            view, calendar = await timed(lambda: compliance.calendar_view(rt, boss), 10)
        finally:
            await rt.db.close()
    per_pass = 1000 * history / (days * 24)
    print(f"rules                      {rules} (to {groups} class groups each)")
    print(f"simulated history          {days} days, {occurrences} occurrences, {queued} messages")
    print(f"  hourly passes took       {history:.1f} s ({per_pass:.1f} ms each)")
    print(f"idle pass                  {idle:.1f} ms (median of 10)")
    sent = len(progress.sent)  # type: ignore[attr-defined]
    print(f"busy pass                  {busy:.0f} ms: {sent} occurrences, {busy_messages} messages")
    items = len(calendar.items)  # type: ignore[attr-defined]
    print(f"/compliance                {view:.1f} ms (median of 10), {items} obligations, a year")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=int, default=200)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--days", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(run(args.rules, args.groups, args.days))


if __name__ == "__main__":
    main()
