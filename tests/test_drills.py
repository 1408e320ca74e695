"""Drill and activity services on a real SQLite file: the 7-day, 1-day and 1-hour reminders
sent once each as the clock moves, postponing and cancelling, recording one as done (the
evidence the compliance calendar counts), recording one held but never planned (after the fact,
within a quarter), and bad input that changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from bot.errors import NotAllowed, UnknownUnit
from bot.outbox import Recipient
from bot.runtime import Runtime
from bot.services import compliance, drills, org, reminders
from bot.services.compliance import Status
from bot.services.drills import ActivityDraft, Kind, State, Topic
from bot.services.models import Actor, Purpose
from bot.services.reports import PhotoIn
from bot.store.tables import activities, activity_events, outbox, reminder_rules
from tests.support import SUPERADMIN_ID, FakeClock, enrol, messages, profile

SHANGHAI = ZoneInfo("Asia/Shanghai")
CLASS_A = Recipient("telegram", "-801")  # 信息学院/计科2201
CLASS_B = Recipient("telegram", "-802")  # 信息学院/计科2202
OTHER_CLASS = Recipient("telegram", "-803")  # 文学院/汉语2201: outside 信息学院
STAFF = Recipient("telegram", "-900")


def at(text: str) -> datetime:
    """A local Shanghai time as UTC ("2026-09-20 15:00")."""
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).astimezone(UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(at("2026-09-01 09:00"))


@pytest.fixture
async def school(rt: Runtime) -> dict[str, Actor]:
    boss = await org.identify(rt, profile(SUPERADMIN_ID, "处长", "boss"), private=True)
    for recipient, path in (
        (CLASS_A, "信息学院/计科2201"),
        (CLASS_B, "信息学院/计科2202"),
        (OTHER_CLASS, "文学院/汉语2201"),
    ):
        await org.bind_group(rt, boss, recipient, path, "class", path)
    return {
        "boss": boss,
        "officer": await enrol(rt, boss, 21, "officer"),
        "college_officer": await enrol(rt, boss, 22, "officer", "信息学院"),
        "guard": await enrol(rt, boss, 23, "guard"),
        "informant": await enrol(rt, boss, 24, "informant", "信息学院/计科2201"),
    }


def drill(when: str = "2026-09-20 15:00", **values: Any) -> ActivityDraft:
    base: dict[str, Any] = {
        "kind": Kind.DRILL,
        "topic": Topic.ANTI_TERROR,
        "when": at(when),
        "place": "体育馆",
        "unit": "信息学院",
    }
    base.update(values)
    return ActivityDraft(**base)


async def count(rt: Runtime, table: Any, *where: Any) -> int:
    async with rt.db.read() as conn:
        query = select(func.count()).select_from(table).where(*where)
        return (await conn.execute(query)).scalar_one()


async def pass_at(rt: Runtime, clock: FakeClock, local: str) -> list[str]:
    """Move the clock and run the reminders pass twice: the second must send nothing, and
    nothing is ever recorded as missed (no reminder falls due after the fact)."""
    clock.current = at(local)
    first = await reminders.run_due(rt)
    again = await reminders.run_due(rt)
    assert (first.missed, again.sent, again.missed) == ([], [], [])
    return first.sent


async def test_a_planned_drill_sends_its_7_day_1_day_and_1_hour_reminders_once_each(
    rt: Runtime, clock: FakeClock, school: dict[str, Actor]
) -> None:
    activity = await drills.plan(rt, school["officer"], drill())
    assert (activity.ref, activity.state, activity.title) == (
        "D-0001",
        State.PLANNED,
        "反恐防暴演练",
    )
    async with rt.db.read() as conn:
        rule = (await conn.execute(select(reminder_rules))).one()
    assert rule.id == activity.reminder_rule_id
    assert rule.schedule["kind"] == "once"
    assert rule.schedule["at"] == "2026-09-20 15:00"
    assert rule.leads == [604800, 86400, 3600]
    assert (rule.target_purpose, rule.ask_ack, rule.paused) == ("class", False, False)
    assert rule.planned_from == clock.current
    assert rule.name == "D-0001 反恐防暴演练"

    assert await pass_at(rt, clock, "2026-09-13 14:59") == []
    for local, lead in (
        ("2026-09-13 15:00:30", "7 天后"),
        ("2026-09-19 15:00:30", "1 天后"),
        ("2026-09-20 14:00:30", "1 小时后"),
    ):
        before = len(await messages(rt, "reminders.broadcast"))
        assert len(await pass_at(rt, clock, local)) == 1
        sent = (await messages(rt, "reminders.broadcast"))[before:]
        # Only the class groups of 信息学院: not 文学院's, not the staff group.
        assert sorted(m.address for m in sent) == [CLASS_A.address, CLASS_B.address]
        text = sent[0].payload["text"]
        assert f"{lead}举行：反恐防暴演练（D-0001）" in text
        assert "时间：2026-09-20（周日）15:00" in text
        assert "地点：体育馆" in text
    assert await pass_at(rt, clock, "2026-09-20 16:00") == []
    assert len(await messages(rt, "reminders.broadcast")) == 6


async def test_a_lead_already_past_at_planning_is_not_sent_and_user_text_stays_literal(
    rt: Runtime, clock: FakeClock, school: dict[str, Actor]
) -> None:
    when = at("2026-09-03 15:00")  # two days ahead: the 7-day reminder is already past
    assert [t.sent for t in drills.reminder_times(when, clock.current)] == [False, True, True]
    place = "礼堂{name}<b>&"
    await drills.plan(rt, school["officer"], drill("2026-09-03 15:00", place=place))
    assert await pass_at(rt, clock, "2026-09-02 15:00:30") != []
    (first, _other) = await messages(rt, "reminders.broadcast")
    # Neither taken for a rule variable nor for HTML: the place reads as typed.
    assert "地点：礼堂{name}&lt;b&gt;&amp;" in first.payload["text"]
    assert len(await messages(rt, "reminders.broadcast")) == 2  # the 1-day one, two groups


async def test_postponing_moves_the_reminders_and_tells_the_groups_once(
    rt: Runtime, clock: FakeClock, school: dict[str, Actor]
) -> None:
    activity = await drills.plan(rt, school["officer"], drill())
    assert len(await pass_at(rt, clock, "2026-09-13 15:00:30")) == 1  # the 7-day one

    clock.current = at("2026-09-14 10:00")
    with pytest.raises(drills.SameTime):
        await drills.postpone(rt, school["officer"], activity.id, at("2026-09-20 15:00"))
    with pytest.raises(drills.InThePast):
        await drills.postpone(rt, school["officer"], activity.id, at("2026-09-14 09:00"))
    with pytest.raises(NotAllowed):
        await drills.postpone(rt, school["guard"], activity.id, at("2026-09-27 15:00"))
    # One hour later the same day: the new 7-day time has passed already, so it is not sent.
    moved = await drills.postpone(
        rt, school["officer"], activity.id, at("2026-09-20 16:00"), "与运动会冲突"
    )
    assert moved.planned_at == at("2026-09-20 16:00")
    assert moved.state is State.PLANNED
    notices = await messages(rt, "drills.postponed_notice")
    assert sorted(n.address for n in notices) == [CLASS_A.address, CLASS_B.address]
    assert "与运动会冲突" in notices[0].payload["text"]
    assert "09-20 16:00" in notices[0].payload["text"]

    assert await pass_at(rt, clock, "2026-09-14 10:01") == []  # the new 7-day time was past
    assert await pass_at(rt, clock, "2026-09-19 15:00:30") == []  # the old 1-day time
    assert len(await pass_at(rt, clock, "2026-09-19 16:00:30")) == 1
    assert await pass_at(rt, clock, "2026-09-20 14:00:30") == []  # the old 1-hour time
    assert len(await pass_at(rt, clock, "2026-09-20 15:00:30")) == 1
    texts = [m.payload["text"] for m in await messages(rt, "reminders.broadcast")]
    assert len(texts) == 6  # 3 reminders × 2 groups
    assert all("2026-09-20（周日）16:00" in t for t in texts[2:])

    view = await drills.view(rt, school["officer"], activity.id)
    assert [e.action for e in view.events] == ["planned", "postponed"]
    assert view.events[1].detail["old"] == at("2026-09-20 15:00")
    assert view.events[1].detail["new"] == at("2026-09-20 16:00")
    assert len(await messages(rt, "drills.postponed_notice")) == 2  # told once


async def test_cancelling_stops_the_reminders_and_tells_the_groups_once(
    rt: Runtime, clock: FakeClock, school: dict[str, Actor]
) -> None:
    activity = await drills.plan(rt, school["officer"], drill())
    cancelled = await drills.cancel(rt, school["officer"], activity.id, "天气原因")
    assert cancelled.state is State.CANCELLED
    notices = await messages(rt, "drills.cancelled_notice")
    assert sorted(n.address for n in notices) == [CLASS_A.address, CLASS_B.address]
    assert "天气原因" in notices[0].payload["text"]
    assert await count(rt, reminder_rules, reminder_rules.c.deleted_at.is_not(None)) == 1

    with pytest.raises(drills.WrongState):
        await drills.cancel(rt, school["officer"], activity.id)
    with pytest.raises(drills.WrongState):
        await drills.record_done(rt, school["officer"], activity.id, 100, "已举行")
    with pytest.raises(drills.WrongState):
        await drills.postpone(rt, school["officer"], activity.id, at("2026-09-27 15:00"))
    for local in ("2026-09-13 15:00:30", "2026-09-19 15:00:30", "2026-09-20 14:00:30"):
        assert await pass_at(rt, clock, local) == []
    assert await messages(rt, "reminders.broadcast") == []
    assert len(await messages(rt, "drills.cancelled_notice")) == 2
    listing = await drills.listing(rt, school["guard"])
    assert ([a.ref for a in listing.upcoming], [a.ref for a in listing.history]) == ([], ["D-0001"])


async def test_done_records_the_evidence_that_the_compliance_calendar_counts(
    rt: Runtime, clock: FakeClock, school: dict[str, Actor]
) -> None:
    held = await drills.plan(rt, school["officer"], drill())
    early = await drills.plan(
        rt, school["boss"], drill("2026-09-25 10:00", kind=Kind.TRAINING, topic=Topic.TRAFFIC)
    )
    await drills.plan(rt, school["officer"], drill("2026-10-20 10:00", topic=Topic.FIRE))

    clock.current = at("2026-09-21 10:00")  # recorded the next morning
    done = await drills.record_done(rt, school["officer"], held.id, 120, "  全体师生有序撤离  ")
    assert (done.state, done.participants, done.summary) == (State.DONE, 120, "全体师生有序撤离")
    assert done.done_at == at("2026-09-20 15:00")  # it took place at its planned time
    with pytest.raises(drills.WrongState):
        await drills.record_done(rt, school["officer"], held.id, 100, "又一次")
    photos = [
        PhotoIn(file_id=f"p{i}", file_unique_id=f"u{i}", path=f"photos/{i}.jpg") for i in (1, 2)
    ]
    with_photos = await drills.add_photos(rt, school["officer"], held.id, photos)
    assert with_photos.photo_count == 2

    # Held before its planned time: it counts from now, and its last reminders are dropped.
    training = await drills.record_done(rt, school["college_officer"], early.id, 40, "交通安全课")
    assert training.done_at == clock.current
    assert await pass_at(rt, clock, "2026-09-24 10:00:30") == []

    quarter = await drills.activities_done(rt, at("2026-07-01 00:00"), at("2026-10-01 00:00"))
    assert [(a.ref, a.kind, a.topic) for a in quarter] == [
        ("D-0001", Kind.DRILL, Topic.ANTI_TERROR),
        ("D-0002", Kind.TRAINING, Topic.TRAFFIC),
    ]
    assert quarter[0].photo_count == 2
    assert quarter[0].model_dump()["photo_count"] == 2
    assert await drills.activities_done(rt, at("2026-09-20 15:01"), at("2026-09-21 09:00")) == []
    view = await drills.view(rt, school["guard"], held.id)
    assert [e.action for e in view.events] == ["planned", "done", "photo"]
    listing = await drills.listing(rt, school["guard"])
    assert [a.ref for a in listing.upcoming] == ["D-0003"]
    assert {a.ref for a in listing.history} == {"D-0001", "D-0002"}

    clock.current = at("2027-02-01 10:00")  # D-0003 was planned for October: too long ago
    with pytest.raises(drills.TooLongAgo):
        await drills.record_done(rt, school["officer"], 3, 200, "补记")
    assert (await drills.view(rt, school["guard"], 3)).activity.state is State.PLANNED


async def test_bad_input_and_wrong_roles_change_nothing(
    rt: Runtime, clock: FakeClock, school: dict[str, Actor]
) -> None:
    now, zone = clock.current, SHANGHAI
    with pytest.raises(drills.BadWhen):
        drills.parse_when("2026-02-30 09:00", now, zone)
    with pytest.raises(drills.BadWhen):
        drills.parse_when("下周三", now, zone)
    with pytest.raises(drills.InThePast):
        drills.parse_when("2026-08-31 09:00", now, zone)
    with pytest.raises(drills.TooFarAhead):
        drills.parse_when("2028-01-01 09:00", now, zone)
    assert drills.parse_when("2026/9/20 15：00", now, zone) == at("2026-09-20 15:00")
    for bad in ("abc", "-5", "0", "1.5", "１２"):
        with pytest.raises(drills.BadParticipants):
            drills.parse_participants(bad)
    assert drills.parse_participants(" 120人 ") == 120
    for ref in ("D-0000", "X-1", "D-一"):
        with pytest.raises(drills.UnknownActivity):
            drills.parse_reference(ref)
    assert drills.parse_reference("d3") == 3

    officer = school["officer"]
    with pytest.raises(drills.TooLong):
        await drills.plan(rt, officer, drill(place="礼堂" * 101))
    with pytest.raises(drills.Empty):
        await drills.plan(rt, officer, drill(place="  "))
    with pytest.raises(UnknownUnit):
        await drills.plan(rt, officer, drill(unit="不存在学院"))
    with pytest.raises(drills.NoTargetGroups):
        await drills.plan(rt, officer, drill(purpose=Purpose.STAFF))  # no staff group bound
    with pytest.raises(drills.NoTargetGroups):
        await drills.plan(rt, officer, drill(purpose=Purpose.COMMAND))
    for role in ("informant", "guard"):
        with pytest.raises(NotAllowed):
            await drills.plan(rt, school[role], drill())
    with pytest.raises(NotAllowed):  # an officer of a college plans only for it
        await drills.plan(rt, school["college_officer"], drill(unit=""))
    with pytest.raises(NotAllowed):
        await drills.listing(rt, school["informant"])
    assert await count(rt, activities) == 0
    assert await count(rt, reminder_rules) == 0

    activity = await drills.plan(rt, officer, drill())
    with pytest.raises(drills.BadParticipants):
        await drills.record_done(rt, officer, activity.id, 0, "已举行")
    with pytest.raises(drills.TooLong):
        await drills.record_done(rt, officer, activity.id, 10, "很" * 2001)
    with pytest.raises(drills.Empty):
        await drills.record_done(rt, officer, activity.id, 10, " ")
    with pytest.raises(NotAllowed):
        await drills.record_done(rt, school["informant"], activity.id, 10, "已举行")
    with pytest.raises(drills.UnknownActivity):
        await drills.record_done(rt, officer, 99, 10, "已举行")
    with pytest.raises(drills.WrongState):  # photos are evidence of a drill that took place
        await drills.add_photos(
            rt, officer, activity.id, [PhotoIn(file_id="x", file_unique_id="x")]
        )
    assert (await drills.for_step(rt, officer, activity.id, State.PLANNED)).state is State.PLANNED
    assert await count(rt, activity_events) == 1
    assert await drills.activities_done(rt, at("2026-01-01 00:00"), at("2027-01-01 00:00")) == []


async def test_a_drills_reminders_stay_out_of_the_exported_plan(
    rt: Runtime, school: dict[str, Actor]
) -> None:
    await drills.plan(rt, school["officer"], drill())
    assert await count(rt, reminder_rules) == 1
    assert await reminders.export_plan(rt) == "[]\n"  # the drill owns them, not the plan


def status_of(calendar: compliance.Calendar, key: str) -> compliance.ObligationStatus:
    (found,) = [item for item in calendar.items if item.key == key]
    return found


async def test_a_meeting_recorded_after_the_fact_is_done_and_counts_for_the_calendar(
    rt: Runtime, clock: FakeClock, school: dict[str, Actor]
) -> None:
    boss, officer = school["boss"], school["officer"]
    await compliance.load_preset(rt, boss, "pingan-campus")
    before = status_of(await compliance.calendar_view(rt, boss), "dispute_meeting")
    assert (before.current.status, before.current.proofs) == (Status.DUE, [])
    rules, sent = await count(rt, reminder_rules), await count(rt, outbox)

    meeting = ActivityDraft(
        kind=Kind.MEETING,
        topic=Topic.DISPUTE,
        when=at("2026-08-20 15:00"),
        place=" 保卫处会议室 ",
        unit=drills.home_unit(officer),
    )
    recorded = await drills.record_past(rt, officer, meeting, 12, " 排查矛盾纠纷 3 起，均已化解 ")
    assert (recorded.ref, recorded.state, recorded.title) == (
        "D-0001",
        State.DONE,
        "矛盾纠纷排查化解会议",
    )
    assert recorded.done_at == recorded.planned_at == at("2026-08-20 15:00")
    assert (recorded.participants, recorded.summary, recorded.place) == (
        12,
        "排查矛盾纠纷 3 起，均已化解",
        "保卫处会议室",
    )
    assert (recorded.reminder_rule_id, recorded.target_purpose) == (None, None)
    assert (recorded.target_unit.path, recorded.created_at) == ("", clock.current)
    # Over already: no reminder rule, nobody told.
    assert (await count(rt, reminder_rules), await count(rt, outbox)) == (rules, sent)

    calendar = await compliance.calendar_view(rt, boss)
    (proof,) = status_of(calendar, "dispute_meeting").current.proofs
    assert (proof.ref, proof.at) == ("D-0001", at("2026-08-20 15:00"))
    assert status_of(calendar, "dispute_meeting").current.status is Status.DONE
    assert status_of(calendar, "traffic_training").current.status is Status.DUE  # not a training
    quarter = await drills.activities_done(rt, at("2026-07-01 00:00"), at("2026-10-01 00:00"))
    assert [(a.ref, a.kind, a.topic) for a in quarter] == [("D-0001", Kind.MEETING, Topic.DISPUTE)]

    # The history says it was entered after the fact, by whom and when.
    view = await drills.view(rt, boss, recorded.id)
    (event,) = view.events
    assert (event.action, event.at) == (drills.Action.RECORDED, clock.current)
    assert event.actor is not None
    assert event.actor.id == officer.person.id
    assert event.detail == {"held": at("2026-08-20 15:00"), "participants": 12}
    photo = PhotoIn(file_id="p1", file_unique_id="u1", path="photos/1.jpg")
    assert (await drills.add_photos(rt, officer, recorded.id, [photo])).photo_count == 1
    with pytest.raises(drills.WrongState):
        await drills.record_done(rt, officer, recorded.id, 10, "又一次")

    # 92 days back, to the minute, is still within reach (a college officer, for the college).
    college = school["college_officer"]
    assert drills.home_unit(college) == "信息学院"
    training = ActivityDraft(
        kind=Kind.TRAINING,
        topic=Topic.TRAFFIC,
        when=at("2026-06-01 09:00"),
        place="报告厅",
        unit=drills.home_unit(college),
    )
    early = await drills.record_past(rt, college, training, 40, "交通安全讲座")
    assert (early.done_at, early.target_unit.path) == (at("2026-06-01 09:00"), "信息学院")
    done = await drills.activities_done(rt, at("2026-04-01 00:00"), at("2026-07-01 00:00"))
    assert [a.ref for a in done] == ["D-0002"]
    listing = await drills.listing(rt, school["guard"])
    assert (listing.upcoming, [a.ref for a in listing.history]) == ([], ["D-0001", "D-0002"])


async def test_recording_after_the_fact_refuses_the_future_the_too_old_and_wrong_roles(
    rt: Runtime, clock: FakeClock, school: dict[str, Actor]
) -> None:
    now, officer = clock.current, school["officer"]
    sent = await count(rt, outbox)
    with pytest.raises(drills.NotHeldYet):
        drills.check_held(at("2026-09-01 09:01"), now)
    with pytest.raises(drills.TooLongAgo):
        drills.check_held(at("2026-06-01 08:59"), now)
    drills.check_held(now, now)
    with pytest.raises(drills.BadWhen):
        drills.parse_moment("2026-02-30 09:00", SHANGHAI)
    assert drills.parse_moment("2025/1/2 3：04", SHANGHAI) == at("2025-01-02 03:04")

    def meeting(when: str = "2026-08-20 15:00", **values: Any) -> ActivityDraft:
        return drill(when, **{"kind": Kind.MEETING, "topic": Topic.DISPUTE, "unit": ""} | values)

    refusals: list[tuple[type[Exception], Actor, ActivityDraft, int, str]] = [
        (drills.NotHeldYet, officer, meeting("2026-09-02 15:00"), 10, "还没开"),
        (drills.TooLongAgo, officer, meeting("2026-05-31 15:00"), 10, "太早了"),
        (NotAllowed, school["guard"], meeting(), 10, "已开"),
        (NotAllowed, school["informant"], meeting(), 10, "已开"),
        (NotAllowed, school["college_officer"], meeting(), 10, "全校的会"),  # not its unit
        (UnknownUnit, officer, meeting(unit="不存在学院"), 10, "已开"),
        (drills.BadParticipants, officer, meeting(), 0, "已开"),
        (drills.Empty, officer, meeting(), 10, "  "),
        (drills.TooLong, officer, meeting(), 10, "很" * 2001),
        (drills.Empty, officer, meeting(place=" "), 10, "已开"),
        (drills.TooLong, officer, meeting(place="礼堂" * 101), 10, "已开"),
    ]
    for error, actor, draft, participants, summary in refusals:
        with pytest.raises(error):
            await drills.record_past(rt, actor, draft, participants, summary)
    assert await count(rt, activities) == 0
    assert await count(rt, activity_events) == 0
    assert await count(rt, outbox) == sent
    assert await drills.activities_done(rt, at("2026-01-01 00:00"), at("2027-01-01 00:00")) == []
