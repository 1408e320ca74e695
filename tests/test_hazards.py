"""Hazard services on a real SQLite file: registering, assignment, rectification, verification,
deadlines (reminder and daily overdue escalation, restart-safe), views and the ledger summary."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.errors import NotAllowed
from bot.outbox import Recipient
from bot.runtime import Runtime
from bot.services import hazards, org
from bot.services.hazards import Category, HazardDraft, Severity, State
from bot.services.models import Actor
from bot.services.reports import PhotoIn
from bot.settings import Settings
from schedules import hazards as hazard_job
from tests.support import (
    SUPERADMIN_ID,
    FakeClock,
    enrol,
    make_settings,
    messages,
    open_runtime,
    profile,
)

COMMAND_GROUP = Recipient("telegram", "-100")
UNIT_GROUP = Recipient("telegram", "-300")
BEFORE = PhotoIn(file_id="before-1", file_unique_id="b1", size=10, path="photos/aa/before.jpg")
AFTER = PhotoIn(file_id="after-1", file_unique_id="a1", size=12, path="photos/bb/after.jpg")


@pytest.fixture
async def school(rt: Runtime) -> dict[str, Actor]:
    boss = await org.identify(rt, profile(SUPERADMIN_ID, "处长", "boss"), private=True)
    await org.bind_group(rt, boss, COMMAND_GROUP, "保卫处值班群", "command", "")
    await org.bind_group(rt, boss, UNIT_GROUP, "总务处群", "unit", "总务处")
    return {
        "boss": boss,
        "guard": await enrol(rt, boss, 20, "guard"),
        "officer": await enrol(rt, boss, 21, "officer"),
        "officer2": await enrol(rt, boss, 22, "officer"),
        "head": await enrol(rt, boss, 23, "unit_head", "总务处"),
        "informant": await enrol(rt, boss, 24, "informant", "信息学院/计科2201"),
        "leader": await enrol(rt, boss, 25, "leader"),
        "other_head": await enrol(rt, boss, 26, "unit_head", "设备处"),
    }


def draft(**values: Any) -> HazardDraft:
    base: dict[str, Any] = {"description": "三楼消防通道堵塞", "photos": [BEFORE]}
    base.update(values)
    return HazardDraft(**base)


async def test_the_whole_lifecycle_with_four_eyes(rt: Runtime, school: dict[str, Actor]) -> None:
    hazard = await hazards.register(rt, school["guard"], draft())
    assert hazard.ref == "H-0001"
    assert hazard.state is State.REGISTERED
    assert hazard.missing == ["category", "severity"]
    cards = await messages(rt, "hazards.new")
    assert [c.address for c in cards] == [COMMAND_GROUP.address]

    with pytest.raises(hazards.NeedsSeverity):
        await hazards.assign(rt, school["officer"], hazard.id, "总务处")
    await hazards.complete(
        rt, school["guard"], hazard.id, category=Category.FIRE, severity=Severity.MAJOR
    )
    with pytest.raises(hazards.NeedsInterimMeasures):
        await hazards.assign(rt, school["officer"], hazard.id, "总务处")
    with pytest.raises(NotAllowed):
        await hazards.assign(rt, school["guard"], hazard.id, "总务处", interim="专人看守")
    assigned = await hazards.assign(rt, school["officer"], hazard.id, "总务处", interim="专人看守")
    assert assigned.hazard.state is State.RECTIFYING
    assert assigned.hazard.deadline == rt.now() + timedelta(days=3)  # 重大: 3 days by default
    told = await messages(rt, "hazards.assigned")
    assert sorted(c.address for c in told) == sorted(["23", UNIT_GROUP.address])

    with pytest.raises(hazards.NotUnitHead):
        await hazards.submit_fix(rt, school["other_head"], hazard.id, "清理了", [AFTER])
    with pytest.raises(hazards.NeedsPhoto):
        await hazards.submit_fix(rt, school["head"], hazard.id, "清理了", [])
    fixed = await hazards.submit_fix(rt, school["head"], hazard.id, "已清理杂物", [AFTER])
    assert fixed.hazard.state is State.AWAITING_VERIFICATION

    rejected = await hazards.reject(rt, school["officer"], hazard.id, "楼梯口仍有杂物")
    assert rejected.hazard.state is State.RECTIFYING
    assert rejected.hazard.deadline == assigned.hazard.deadline  # unchanged
    (notice,) = await messages(rt, "hazards.rejected")
    assert "楼梯口仍有杂物" in notice.payload["text"]

    # A unit head who is also an officer fixes it, and cannot verify it.
    await enrol(rt, school["boss"], 21, "unit_head", "总务处")
    officer_head = await org.identify(rt, profile(21, "user21", "u21"), private=True)
    await hazards.submit_fix(rt, officer_head, hazard.id, "再次清理", [AFTER])
    with pytest.raises(hazards.OwnFix):
        await hazards.verify(rt, officer_head, hazard.id)
    closed = await hazards.verify(rt, school["officer2"], hazard.id)
    assert closed.hazard.state is State.CLOSED
    again = await hazards.verify(rt, school["officer2"], hazard.id)
    assert not again.changed  # a stale button changes nothing

    view = await hazards.view(rt, school["officer"], hazard.id)
    kinds = [e.kind for e in view.events]
    assert kinds == [
        "registered",
        "classified",
        "interim",
        "assigned",
        "fixed",
        "rejected",
        "fixed",
        "verified",
    ]
    assert [p.file_id for p in view.hazard.before_photos] == ["before-1"]
    assert len(view.hazard.after_photos) == 2


async def test_informants_hazards_wait_for_confirmation(
    rt: Runtime, school: dict[str, Actor]
) -> None:
    hazard = await hazards.register(rt, school["informant"], draft(severity=Severity.ROUTINE))
    assert hazard.state is State.REPORTED
    assert not hazard.confirmed
    assert await messages(rt, "hazards.new")  # to officers in private, not the command group
    assert all(c.address != COMMAND_GROUP.address for c in await messages(rt, "hazards.new"))
    with pytest.raises(hazards.WrongState):
        await hazards.assign(rt, school["officer"], hazard.id, "总务处")
    confirmed = await hazards.confirm(rt, school["officer"], hazard.id)
    assert confirmed.hazard.state is State.REGISTERED
    assert not (await hazards.confirm(rt, school["officer"], hazard.id)).changed
    assigned = await hazards.assign(rt, school["officer"], hazard.id, "总务处")
    assert assigned.hazard.deadline == rt.now() + timedelta(days=15)


async def test_who_may_report_and_bad_input(rt: Runtime, school: dict[str, Actor]) -> None:
    with pytest.raises(NotAllowed):
        await hazards.register(rt, school["leader"], draft())
    stranger = await org.identify(rt, profile(99, "路人"), private=True)
    with pytest.raises(NotAllowed):
        await hazards.register(rt, stranger, draft())
    with pytest.raises(hazards.EmptyHazard):
        await hazards.register(rt, school["guard"], HazardDraft(description="  "))
    with pytest.raises(hazards.TooLong):
        await hazards.register(rt, school["guard"], HazardDraft(description="x" * 3000))
    hazard = await hazards.register(rt, school["head"], draft(severity=Severity.SERIOUS))
    with pytest.raises(org.UnknownUnit):
        await hazards.assign(rt, school["officer"], hazard.id, "不存在的处")
    with pytest.raises(hazards.NotADepartment):
        await hazards.assign(rt, school["officer"], hazard.id, "")
    with pytest.raises(hazards.UnknownHazard):
        await hazards.view(rt, school["officer"], 999)
    with pytest.raises(hazards.UnknownHazard):
        await hazards.view(rt, school["other_head"], hazard.id)  # not theirs to see
    assert hazards.caption_text("#隐患 三楼消防通道堵塞") == "三楼消防通道堵塞"
    assert hazards.caption_text("/hazard@safecampus_bot 漏电") == "漏电"
    assert hazards.caption_text("看这个 #隐患") is None
    assert hazards.parse_reference("h-12") == 12
    with pytest.raises(hazards.BadDeadline):
        hazards.parse_deadline("tomorrow", rt.now(), rt.settings.zone)
    assert hazards.parse_deadline("3d", rt.now(), rt.settings.zone) == rt.now() + timedelta(days=3)


async def test_deadline_reminder_and_daily_escalation_exactly_once(
    tmp_path: Path, rt: Runtime, clock: FakeClock, school: dict[str, Actor]
) -> None:
    hazard = await hazards.register(rt, school["guard"], draft(severity=Severity.SERIOUS))
    deadline = rt.now() + timedelta(days=3)
    await hazards.assign(rt, school["officer"], hazard.id, "总务处", deadline=deadline)
    clock.advance(days=1, hours=23)
    assert not (await hazard_job.run(rt)).reminded
    clock.advance(hours=1, minutes=1)
    assert [h.id for h in (await hazard_job.run(rt)).reminded] == [hazard.id]
    assert not (await hazard_job.run(rt)).reminded
    assert [c.address for c in await messages(rt, "hazards.reminder")] == ["23"]

    clock.advance(days=1)  # past the deadline
    first = await hazard_job.run(rt)
    assert [h.id for h in first.escalated] == [hazard.id]
    assert not (await hazard_job.run(rt)).escalated  # once a day, not once a run
    overdue = {c.address for c in await messages(rt, "hazards.overdue")}
    assert {"21", "22", "25", str(SUPERADMIN_ID)} <= overdue  # officers, leader, admins
    page = await hazards.listing(rt, school["officer"], "overdue")
    assert [h.id for h in page.hazards] == [hazard.id]

    # A restart: a fresh runtime on the same database neither repeats nor skips.
    await rt.db.close()
    again = await open_runtime(make_settings(tmp_path), clock)
    try:
        assert not (await hazard_job.run(again)).escalated
        clock.advance(days=1)
        second = await hazard_job.run(again)
        assert [h.escalations for h in second.escalated] == [2]
        assert not (await hazard_job.run(again)).escalated
    finally:
        await again.db.close()


async def test_extension_views_and_summary(
    rt: Runtime, clock: FakeClock, school: dict[str, Actor]
) -> None:
    first = await hazards.register(rt, school["guard"], draft(severity=Severity.ROUTINE))
    second = await hazards.register(rt, school["guard"], draft(description="配电箱未上锁"))
    await hazards.assign(rt, school["officer"], first.id, "总务处")
    with pytest.raises(hazards.BadDeadline):
        await hazards.extend(rt, school["officer"], first.id, rt.now(), "太早")
    extended = await hazards.extend(
        rt, school["officer"], first.id, rt.now() + timedelta(days=20), "等待配件"
    )
    assert extended.hazard.deadline == rt.now() + timedelta(days=20)
    clock.advance(days=2)
    await hazards.submit_fix(rt, school["head"], first.id, "已修复", [AFTER])
    await hazards.verify(rt, school["officer"], first.id)

    mine = await hazards.listing(rt, school["head"], "mine")
    assert [h.id for h in mine.hazards] == [first.id]
    opened = await hazards.listing(rt, school["officer"], "open")
    assert [h.id for h in opened.hazards] == [second.id]
    summary = await hazards.summary(rt, school["officer"])
    assert summary.total == 2
    assert summary.rectified == 1
    assert summary.rate == 50.0
    assert summary.median_days == 2.0
    with pytest.raises(NotAllowed):
        await hazards.summary(rt, school["guard"])


def test_deadline_setting_is_validated(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, hazard_deadlines="major=1d,serious=2d,routine=3d")
    assert settings.hazard_deadlines["serious"] == timedelta(days=2)
    with pytest.raises(ValueError, match="no deadline"):
        make_settings(tmp_path, hazard_deadlines="major=1d")
    with pytest.raises(ValueError, match="urgent"):
        make_settings(tmp_path, hazard_deadlines="urgent=1d,major=1d,serious=2d,routine=3d")
    assert isinstance(settings, Settings)


async def test_dismissing_and_interim_measures(rt: Runtime, school: dict[str, Actor]) -> None:
    hazard = await hazards.register(rt, school["informant"], draft())
    with pytest.raises(NotAllowed):
        await hazards.dismiss(rt, school["guard"], hazard.id, "不是隐患")
    with pytest.raises(hazards.EmptyHazard):
        await hazards.dismiss(rt, school["officer"], hazard.id, " ")
    noted = await hazards.record_interim(rt, school["officer"], hazard.id, "拉警戒线")
    assert noted.hazard.interim_measures == "拉警戒线"
    more = await hazards.add_photos(rt, school["informant"], hazard.id, [AFTER])
    assert len(more.hazard.before_photos) == 2
    dismissed = await hazards.dismiss(rt, school["officer"], hazard.id, "已有 H-0002 登记")
    assert dismissed.hazard.state is State.DISMISSED
    (notice,) = await messages(rt, "hazards.dismissed_notice")
    assert notice.address == "24"
    with pytest.raises(hazards.WrongState):
        await hazards.record_interim(rt, school["officer"], hazard.id, "再说")
    summary = await hazards.summary(rt, school["officer"])
    assert summary.total == 0  # dismissed and unconfirmed hazards are not in the ledger


async def test_no_photos_for_a_closed_or_dismissed_hazard(
    rt: Runtime, school: dict[str, Actor]
) -> None:
    dismissed = await hazards.register(rt, school["guard"], draft(severity=Severity.ROUTINE))
    await hazards.dismiss(rt, school["officer"], dismissed.id, "重复登记")
    with pytest.raises(hazards.HazardClosed):
        await hazards.add_photos(rt, school["guard"], dismissed.id, [AFTER])
    closed = await hazards.register(rt, school["guard"], draft(severity=Severity.ROUTINE))
    await hazards.assign(rt, school["officer"], closed.id, "总务处")
    await hazards.submit_fix(rt, school["head"], closed.id, "已清理", [AFTER])
    await hazards.verify(rt, school["officer"], closed.id)
    with pytest.raises(hazards.HazardClosed):
        await hazards.add_photos(rt, school["officer"], closed.id, [BEFORE])
    for hazard_id in (dismissed.id, closed.id):
        view = await hazards.view(rt, school["officer"], hazard_id)
        assert len(view.hazard.before_photos) == 1
        assert "photo" not in [e.kind for e in view.events]
    for locale in ("zh_CN", "en"):
        said = rt.renderer.render(locale, "hazards/errors/closed.j2", hazard=view.hazard)
        assert view.hazard.ref in said


async def test_the_reporter_only_fills_what_is_missing(
    rt: Runtime, school: dict[str, Actor]
) -> None:
    hazard = await hazards.register(rt, school["guard"], draft())
    await hazards.complete(rt, school["guard"], hazard.id, category=Category.FIRE)
    await hazards.complete(rt, school["guard"], hazard.id, severity=Severity.SERIOUS)
    # Once set, a field is the officers' to correct, never the reporter's.
    with pytest.raises(NotAllowed):
        await hazards.complete(rt, school["guard"], hazard.id, severity=Severity.ROUTINE)
    with pytest.raises(NotAllowed):
        await hazards.complete(rt, school["guard"], hazard.id, category=Category.OTHER)
    same = await hazards.complete(rt, school["guard"], hazard.id, severity=Severity.SERIOUS)
    assert not same.changed  # a stale button repeating the choice is harmless
    await hazards.assign(rt, school["officer"], hazard.id, "总务处")
    # Raising it to 重大 under rectification needs interim measures on record first.
    with pytest.raises(hazards.NeedsInterimMeasures):
        await hazards.complete(rt, school["officer"], hazard.id, severity=Severity.MAJOR)
    assert (await hazards.get(rt, hazard.id)).severity is Severity.SERIOUS
    await hazards.record_interim(rt, school["officer"], hazard.id, "拉警戒线")
    raised = await hazards.complete(rt, school["officer"], hazard.id, severity=Severity.MAJOR)
    assert raised.hazard.severity is Severity.MAJOR
    with pytest.raises(NotAllowed):  # the reporter cannot downgrade it during rectification
        await hazards.complete(rt, school["guard"], hazard.id, severity=Severity.ROUTINE)
    assert (await hazards.get(rt, hazard.id)).severity is Severity.MAJOR


async def test_reassigning_keeps_the_deadline_even_when_overdue(
    rt: Runtime, clock: FakeClock, school: dict[str, Actor]
) -> None:
    await enrol(rt, school["boss"], 27, "unit_head", "设备处")
    hazard = await hazards.register(rt, school["guard"], draft(severity=Severity.SERIOUS))
    deadline = rt.now() + timedelta(days=3)
    await hazards.assign(rt, school["officer"], hazard.id, "总务处", deadline=deadline)
    # A different deadline on reassignment would bypass "extend" and its recorded reason.
    with pytest.raises(hazards.DeadlineKept):
        await hazards.assign(
            rt, school["officer"], hazard.id, "设备处", deadline=deadline + timedelta(days=9)
        )
    assert (await hazards.get(rt, hazard.id)).deadline == deadline
    clock.advance(days=4)  # overdue
    assert len((await hazard_job.run(rt)).escalated) == 1
    moved = await hazards.assign(rt, school["officer"], hazard.id, "设备处")
    assert moved.hazard.responsible_unit is not None
    assert moved.hazard.responsible_unit.path == "设备处"
    assert moved.hazard.deadline == deadline
    assert moved.hazard.overdue(rt.now())
    # The escalation plan is the hazard's, not the unit's: no extra notice the same day.
    assert not (await hazard_job.run(rt)).escalated
    same = await hazards.assign(rt, school["officer"], hazard.id, "总务处", deadline=deadline)
    assert same.hazard.deadline == deadline  # naming the same deadline is fine
    view = await hazards.view(rt, school["officer"], hazard.id)
    assert [e.kind for e in view.events].count("extended") == 0
    for locale in ("zh_CN", "en"):
        assert hazard.ref in rt.renderer.render(
            locale, "hazards/errors/deadline_kept.j2", hazard=moved.hazard
        )


async def test_a_head_of_another_unit_sees_and_fixes_nothing(
    rt: Runtime, school: dict[str, Actor]
) -> None:
    hazard = await hazards.register(rt, school["guard"], draft(severity=Severity.ROUTINE))
    await hazards.assign(rt, school["officer"], hazard.id, "总务处")
    other = school["other_head"]  # 设备处
    with pytest.raises(hazards.UnknownHazard):
        await hazards.view(rt, other, hazard.id)
    with pytest.raises(hazards.NotUnitHead):
        await hazards.for_fix(rt, other, hazard.id)
    with pytest.raises(hazards.NotUnitHead):
        await hazards.submit_fix(rt, other, hazard.id, "修好了", [AFTER])
    assert (await hazards.listing(rt, other, "mine")).total == 0
    after = await hazards.view(rt, school["officer"], hazard.id)
    assert after.hazard.state is State.RECTIFYING
    assert after.hazard.after_photos == []
    assert [e.kind for e in after.events] == ["registered", "assigned"]
