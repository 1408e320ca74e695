"""All-clear reports (零报告) on a real SQLite file with a hand-moved clock: period boundaries,
recording, reminders to the silent only, the summary's counts, and exactly-once across restarts."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from bot.errors import StaleButton
from bot.outbox import Recipient
from bot.runtime import Runtime
from bot.services import allclear, invitations, org, reports
from bot.services.allclear import Outcome, Schedule
from bot.services.models import Actor
from bot.settings import SettingsError, load_settings
from bot.store.tables import allclear_rounds, allclears, outbox
from schedules import allclear as allclear_schedule
from tests.support import SUPERADMIN_ID, FakeClock, make_settings, open_runtime, profile

SHANGHAI = ZoneInfo("Asia/Shanghai")
TUESDAY = datetime(2026, 9, 1, 9, 0, tzinfo=SHANGHAI)  # the week closing Fri 2026-09-04 16:00
FRIDAY_REMINDER = datetime(2026, 9, 4, 10, 0, tzinfo=SHANGHAI)  # 6 h before the close
AFTER_CLOSE = datetime(2026, 9, 4, 16, 0, 30, tzinfo=SHANGHAI)
WEEKLY = Schedule(kind="weekly", weekday=4, at=time(16, 0), lead=timedelta(hours=6), zone=SHANGHAI)
DAILY = Schedule(kind="daily", weekday=None, at=time(16, 0), lead=timedelta(hours=2), zone=SHANGHAI)
SCHOOL_GROUP = Recipient("telegram", "-100")
COLLEGE_GROUP = Recipient("telegram", "-200")


def local(moment: datetime) -> datetime:
    return moment.astimezone(SHANGHAI)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(TUESDAY.astimezone(UTC))


@dataclass
class School:
    boss: Actor
    a: Actor  # informant of 信息学院/计科2201
    b: Actor  # informant of 信息学院/计科2202
    c: Actor  # informant of 文学院/汉语2201


async def enrol(rt: Runtime, by: Actor, telegram_id: int, role: str, path: str) -> Actor:
    request = invitations.InviteRequest(role=role, unit_path=path)
    invitation = await invitations.create_invitation(rt, by, request)
    joined = await invitations.accept_invitation(
        rt, profile(telegram_id, f"user{telegram_id}", f"u{telegram_id}"), invitation.token
    )
    return joined.actor


async def school(rt: Runtime) -> School:
    """Five classes: three with an informant, one bound as a class with none, one whose
    informant was revoked; a school-wide command group and one for 信息学院."""
    boss = await org.identify(rt, profile(SUPERADMIN_ID, "处长", "boss"), private=True)
    a = await enrol(rt, boss, 21, "informant", "信息学院/计科2201")
    b = await enrol(rt, boss, 22, "informant", "信息学院/计科2202")
    c = await enrol(rt, boss, 23, "informant", "文学院/汉语2201")
    await enrol(rt, boss, 24, "informant", "信息学院/计科2204")
    await org.revoke_role(rt, boss, "@u24", "informant", None)
    await org.bind_group(
        rt, boss, Recipient("telegram", "-300"), "计科2203班", "class", "信息学院/计科2203"
    )
    await org.bind_group(rt, boss, SCHOOL_GROUP, "值班指挥群", "command", "")
    await org.bind_group(rt, boss, COLLEGE_GROUP, "信息学院值班群", "command", "信息学院")
    return School(boss=boss, a=a, b=b, c=c)


async def messages(rt: Runtime, topic: str) -> list[Any]:
    async with rt.db.read() as conn:
        rows = await conn.execute(
            select(outbox).where(outbox.c.topic == topic).order_by(outbox.c.id)
        )
        return list(rows.all())


async def count(rt: Runtime, table: Any) -> int:
    async with rt.db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar_one()


def move_to(clock: FakeClock, moment: datetime) -> None:
    clock.current = moment.astimezone(UTC)


# --- periods (pure) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "key", "opens", "closes"),
    [
        (TUESDAY, "weekly-2026-09-04", datetime(2026, 8, 28, 16), datetime(2026, 9, 4, 16)),
        (
            datetime(2026, 9, 4, 15, 59, 59, 999999, tzinfo=SHANGHAI),
            "weekly-2026-09-04",
            datetime(2026, 8, 28, 16),
            datetime(2026, 9, 4, 16),
        ),
        (  # exactly at the close: already the next period
            datetime(2026, 9, 4, 16, 0, tzinfo=SHANGHAI),
            "weekly-2026-09-11",
            datetime(2026, 9, 4, 16),
            datetime(2026, 9, 11, 16),
        ),
        (  # Sunday night, given in UTC: still the week closing on the next Friday
            datetime(2026, 9, 6, 17, 0, tzinfo=UTC),
            "weekly-2026-09-11",
            datetime(2026, 9, 4, 16),
            datetime(2026, 9, 11, 16),
        ),
        (  # 00:30 local on Friday is still Thursday in UTC
            datetime(2026, 9, 3, 16, 30, tzinfo=UTC),
            "weekly-2026-09-04",
            datetime(2026, 8, 28, 16),
            datetime(2026, 9, 4, 16),
        ),
    ],
)
def test_weekly_periods_close_on_friday_at_1600_local(
    now: datetime, key: str, opens: datetime, closes: datetime
) -> None:
    period = allclear.period_at(now, WEEKLY)
    assert period.key == key
    assert local(period.opens_at) == opens.replace(tzinfo=SHANGHAI)
    assert local(period.closes_at) == closes.replace(tzinfo=SHANGHAI)
    assert period.closes_at.tzinfo is UTC
    assert local(allclear.reminder_due_at(period, WEEKLY)) == local(period.closes_at) - timedelta(
        hours=6
    )


def test_daily_periods_close_every_day_at_the_time() -> None:
    before = allclear.period_at(datetime(2026, 9, 5, 15, 0, tzinfo=SHANGHAI), DAILY)
    assert before.key == "daily-2026-09-05"
    assert local(before.opens_at) == datetime(2026, 9, 4, 16, 0, tzinfo=SHANGHAI)
    assert local(before.closes_at) == datetime(2026, 9, 5, 16, 0, tzinfo=SHANGHAI)
    after = allclear.period_at(datetime(2026, 9, 5, 16, 0, tzinfo=SHANGHAI), DAILY)
    assert after.key == "daily-2026-09-06"
    assert after.opens_at == before.closes_at
    assert not after.weekly
    assert local(allclear.reminder_due_at(after, DAILY)).hour == 14


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        allclear.period_at(datetime(2026, 9, 5, 15, 0), WEEKLY)


def test_the_schedule_comes_from_the_settings(tmp_path: Path) -> None:
    default = allclear.schedule_of(make_settings(tmp_path))
    assert (default.kind, default.weekday, default.at, default.lead) == (
        "weekly",
        4,
        time(16, 0),
        timedelta(hours=6),
    )
    daily = allclear.schedule_of(make_settings(tmp_path, allclear_period="daily"))
    assert (daily.kind, daily.weekday, daily.at) == ("daily", None, time(16, 0))
    custom = allclear.schedule_of(
        make_settings(tmp_path, allclear_close="Thursday 17:30", allclear_reminder_lead="1d")
    )
    assert (custom.weekday, custom.at, custom.lead) == (3, time(17, 30), timedelta(days=1))


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"allclear_period": "monthly"}, "ALLCLEAR_PERIOD"),
        ({"allclear_close": "fri 25:00"}, "ALLCLEAR_CLOSE"),
        ({"allclear_close": "16:00"}, "ALLCLEAR_CLOSE"),  # weekly needs a day
        ({"allclear_close": "someday 16:00"}, "ALLCLEAR_CLOSE"),
        ({"allclear_period": "daily", "allclear_close": "fri 16:00"}, "ALLCLEAR_CLOSE"),
        ({"allclear_reminder_lead": "soon"}, "ALLCLEAR_REMINDER_LEAD"),
        ({"allclear_period": "daily", "allclear_reminder_lead": "1d"}, "ALLCLEAR_REMINDER_LEAD"),
    ],
)
def test_bad_allclear_settings_are_one_line_naming_them(values: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(_env_file=None, **values)
    assert str(refused.value).startswith(f"SAFECAMPUS_{named}: ")
    assert "\n" not in str(refused.value)


# --- the informant's all-clear ---------------------------------------------------------------


async def test_an_allclear_is_recorded_once_per_class_and_period(
    rt: Runtime, clock: FakeClock
) -> None:
    s = await school(rt)
    first = await allclear.send_allclear(rt, s.a)
    assert first.changed
    assert [(x.unit.path, x.outcome) for x in first.classes] == [
        ("信息学院/计科2201", Outcome.RECORDED)
    ]
    assert first.period.key == "weekly-2026-09-04"
    clock.advance(hours=1)
    again = await allclear.send_allclear(rt, s.a)
    assert not again.changed
    assert again.classes[0].outcome is Outcome.ALREADY
    assert again.classes[0].by is not None
    assert again.classes[0].by.id == s.a.person.id
    assert again.classes[0].at == TUESDAY.astimezone(UTC)
    assert await count(rt, allclears) == 1
    move_to(clock, AFTER_CLOSE)  # a new week: a new all-clear is due
    next_week = await allclear.send_allclear(rt, s.a)
    assert next_week.changed
    assert next_week.period.key == "weekly-2026-09-11"
    assert await count(rt, allclears) == 2


async def test_only_a_class_informant_may_send_it_and_forged_buttons_change_nothing(
    rt: Runtime, clock: FakeClock
) -> None:
    s = await school(rt)
    officer = await enrol(rt, s.boss, 30, "officer", "")
    for somebody in (s.boss, officer):  # a superadmin is nobody's informant
        with pytest.raises(allclear.NotAnInformant):
            await allclear.send_allclear(rt, somebody)
    b_class = s.b.grants[0].unit
    key = allclear.period_at(rt.now(), allclear.schedule_of(rt.settings)).key
    with pytest.raises(allclear.NotAnInformant):  # another class's button
        await allclear.allclear_from_button(rt, s.a, b_class.id, key)
    with pytest.raises(allclear.NotAnInformant):
        await allclear.allclear_from_button(rt, s.boss, b_class.id, key)
    for forged in ("", "weekly-x", "monthly-2026-09-04", "weekly-2026-09-04:1"):
        with pytest.raises(StaleButton):
            await allclear.allclear_from_button(rt, s.b, b_class.id, forged)
    with pytest.raises(StaleButton):  # a period that has not even started
        await allclear.allclear_from_button(rt, s.b, b_class.id, "weekly-2026-09-11")
    with pytest.raises(allclear.PeriodClosed):
        await allclear.allclear_from_button(rt, s.b, b_class.id, "weekly-2026-08-28")
    assert await count(rt, allclears) == 0
    pressed = await allclear.allclear_from_button(rt, s.b, b_class.id, key)
    assert pressed.changed
    assert [x.unit.id for x in pressed.classes] == [b_class.id]
    second = await allclear.allclear_from_button(rt, s.b, b_class.id, key)
    assert second.classes[0].outcome is Outcome.ALREADY
    move_to(clock, AFTER_CLOSE)
    with pytest.raises(allclear.PeriodClosed):
        await allclear.allclear_from_button(rt, s.b, b_class.id, key)
    assert await count(rt, allclears) == 1


async def test_a_report_counts_for_the_period(rt: Runtime, clock: FakeClock) -> None:
    move_to(clock, datetime(2026, 8, 28, 15, 0, tzinfo=SHANGHAI))  # the week before
    s = await school(rt)
    await reports.file_report(rt, s.b, reports.Draft(description="上周的事"))
    move_to(clock, TUESDAY)
    filed = await reports.file_report(rt, s.a, reports.Draft(description="走廊灯坏了"))
    receipt = await allclear.send_allclear(rt, s.a)
    assert not receipt.changed
    assert receipt.classes[0].outcome is Outcome.REPORTED
    assert receipt.classes[0].report == filed.ref
    assert await count(rt, allclears) == 0
    text = rt.renderer.render("zh_CN", "allclear/receipt.j2", receipt=receipt)
    assert filed.ref in text
    # B's report of last week does not count for this week: B is still reminded.
    move_to(clock, FRIDAY_REMINDER)
    await allclear_schedule.run(rt)
    reminded = {row.address for row in await messages(rt, "allclear.reminder")}
    assert reminded == {str(s.b.person.telegram_id), str(s.c.person.telegram_id)}


# --- the scheduled cycle ---------------------------------------------------------------------


async def test_reminders_go_only_to_the_silent_and_only_once(rt: Runtime, clock: FakeClock) -> None:
    s = await school(rt)
    early = await allclear_schedule.run(rt)
    assert early.reminded is None  # not due on Tuesday
    assert early.summarised == []
    await allclear.send_allclear(rt, s.a)
    move_to(clock, FRIDAY_REMINDER - timedelta(seconds=1))
    assert (await allclear_schedule.run(rt)).reminded is None
    move_to(clock, FRIDAY_REMINDER)
    assert (await allclear_schedule.run(rt)).reminded == 2
    rows = await messages(rt, "allclear.reminder")
    assert {row.address for row in rows} == {
        str(s.b.person.telegram_id),
        str(s.c.person.telegram_id),
    }
    b_row = next(row for row in rows if row.address == str(s.b.person.telegram_id))
    assert "计科2202" in b_row.payload["text"]
    assert "本周" in b_row.payload["text"]
    button = b_row.payload["buttons"][0][0]
    assert button["text"] == "✅ 本周无异常"
    assert button["action"] == f"ac:{s.b.grants[0].unit.id}:weekly-2026-09-04"
    clock.advance(minutes=1)
    assert (await allclear_schedule.run(rt)).reminded is None
    assert len(await messages(rt, "allclear.reminder")) == 2


async def test_the_summary_counts_and_lists_classes_per_command_group(
    rt: Runtime, clock: FakeClock
) -> None:
    s = await school(rt)
    await allclear_schedule.run(rt)  # the bot watches this week
    await allclear.send_allclear(rt, s.a)
    await reports.file_report(rt, s.c, reports.Draft(description="食堂地面湿滑"))
    move_to(clock, AFTER_CLOSE)
    progress = await allclear_schedule.run(rt)
    assert progress.summarised == ["weekly-2026-09-04"]
    rows = {row.address: row.payload["text"] for row in await messages(rt, "allclear.summary")}
    assert set(rows) == {SCHOOL_GROUP.address, COLLEGE_GROUP.address}
    whole = rows[SCHOOL_GROUP.address]
    assert "全校共 5 个班级：2 个已报告，1 个未报告，2 个没有信息员。" in whole
    silent, uncovered = whole.split("没有信息员（")[0], whole.split("没有信息员（")[1]
    assert "信息学院/计科2202" in silent
    assert "信息学院/计科2203" in uncovered
    assert "信息学院/计科2204" in uncovered  # its informant was revoked
    assert "计科2201" not in whole
    assert "汉语2201" not in whole
    college = rows[COLLEGE_GROUP.address]
    assert "信息学院共 4 个班级：1 个已报告，1 个未报告，2 个没有信息员。" in college
    async with rt.db.read() as conn:
        detail = (
            await conn.execute(
                select(allclear_rounds.c.detail).where(allclear_rounds.c.step == "summarised")
            )
        ).scalar_one()
    assert detail == {"groups": 2, "classes": 5, "reported": 2, "silent": 1, "uncovered": 2}
    en = rt.renderer.render(
        "en",
        "allclear/summary.j2",
        period=allclear.period_at(TUESDAY, WEEKLY),
        tally=allclear.Tally(scope=s.a.grants[0].unit, reported=[], silent=[], uncovered=[]),
        listed=allclear.MAX_LISTED,
    )
    assert "0 classes in 信息学院/计科2201: 0 reported, 0 silent, 0 without informant." in en


async def test_each_step_happens_once_across_restarts_and_racing_timers(
    tmp_path: Path, clock: FakeClock
) -> None:
    settings = make_settings(tmp_path)
    first = await open_runtime(settings, clock)
    await school(first)
    await allclear_schedule.run(first)
    await first.db.close()  # the bot goes down on Tuesday...

    move_to(clock, datetime(2026, 9, 7, 8, 0, tzinfo=SHANGHAI))  # ...and is back on Monday
    second = await open_runtime(settings, clock)
    passes = await asyncio.gather(*(allclear_schedule.run(second) for _ in range(3)))
    assert sorted(key for p in passes for key in p.summarised) == ["weekly-2026-09-04"]
    assert len(await messages(second, "allclear.summary")) == 2
    assert await messages(second, "allclear.reminder") == []  # that week's reminder is moot
    await second.db.close()

    third = await open_runtime(settings, clock)
    assert (await allclear_schedule.run(third)).summarised == []
    move_to(clock, datetime(2026, 9, 11, 10, 0, tzinfo=SHANGHAI))
    assert (await allclear_schedule.run(third)).reminded == 3
    await third.db.close()

    fourth = await open_runtime(settings, clock)
    assert (await allclear_schedule.run(fourth)).reminded is None
    assert len(await messages(fourth, "allclear.reminder")) == 3
    assert len(await messages(fourth, "allclear.summary")) == 2
    await fourth.db.close()


async def test_a_period_the_bot_never_ran_in_is_not_summarised(
    rt: Runtime, clock: FakeClock
) -> None:
    await school(rt)
    move_to(clock, AFTER_CLOSE)  # first pass ever, after that week closed
    assert (await allclear_schedule.run(rt)).summarised == []
    assert await messages(rt, "allclear.summary") == []


async def test_daily_periods_remind_and_summarise_every_day(
    tmp_path: Path, clock: FakeClock
) -> None:
    settings = make_settings(tmp_path, allclear_period="daily", allclear_reminder_lead="2h")
    rt = await open_runtime(settings, clock)
    try:
        s = await school(rt)
        await allclear_schedule.run(rt)
        await allclear.send_allclear(rt, s.b)
        move_to(clock, datetime(2026, 9, 1, 14, 0, tzinfo=SHANGHAI))
        assert (await allclear_schedule.run(rt)).reminded == 2
        reminder = (await messages(rt, "allclear.reminder"))[0].payload
        assert "今天" in reminder["text"]
        assert reminder["buttons"][0][0]["action"].endswith(":daily-2026-09-01")
        move_to(clock, datetime(2026, 9, 1, 16, 0, tzinfo=SHANGHAI))
        assert (await allclear_schedule.run(rt)).summarised == ["daily-2026-09-01"]
        summary = (await messages(rt, "allclear.summary"))[0].payload["text"]
        assert "全校共 5 个班级：1 个已报告，2 个未报告，2 个没有信息员。" in summary
        # The next day starts afresh: B's all-clear was for yesterday.
        receipt = await allclear.send_allclear(rt, s.b)
        assert receipt.changed
        assert receipt.period.key == "daily-2026-09-02"
    finally:
        await rt.db.close()
