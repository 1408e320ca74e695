"""Report services on a real SQLite file: filing, routing, handling, escalation, views."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from bot.errors import NotAllowed
from bot.outbox import Recipient
from bot.runtime import Runtime
from bot.services import org, reports
from bot.services.models import Actor
from bot.services.reports import Category, Draft, Severity, State
from schedules import escalation
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
CLASS_GROUP = Recipient("telegram", "-200")


@pytest.fixture
async def school(rt: Runtime) -> dict[str, Actor]:
    """A command group for 信息学院, a class group, and one person per role."""
    boss = await org.identify(rt, profile(SUPERADMIN_ID, "处长", "boss"), private=True)
    await org.bind_group(rt, boss, COMMAND_GROUP, "信息学院值班群", "command", "信息学院")
    await org.bind_group(rt, boss, CLASS_GROUP, "计科2201", "class", "信息学院/计科2201")
    return {
        "boss": boss,
        "informant": await enrol(rt, boss, 10, "informant", "信息学院/计科2201"),
        "officer": await enrol(rt, boss, 11, "officer", "信息学院"),
        "leader": await enrol(rt, boss, 12, "leader"),
        "admin": await enrol(rt, boss, 13, "admin", "信息学院"),
        "other_officer": await enrol(rt, boss, 14, "officer", "外语学院"),
    }


async def test_a_report_goes_to_the_nearest_command_group_only(
    rt: Runtime, school: dict[str, Actor]
) -> None:
    draft = Draft(category=Category.FIRE, severity=Severity.MAJOR, description="三楼冒烟")
    report = await reports.file_report(rt, school["informant"], draft)
    assert report.ref == "R-0001"
    assert report.unit.path == "信息学院/计科2201"
    cards = await messages(rt, "reports.new")
    assert [card.address for card in cards] == [COMMAND_GROUP.address]
    assert "三楼冒烟" in cards[0].payload["text"]
    assert "user10" in cards[0].payload["text"]
    actions = [b["action"] for row in cards[0].payload["buttons"] for b in row]
    assert actions == ["rpt:ack:1", "rpt:assign:1", "rpt:resolve:1", "rpt:dup:1"]


async def test_welfare_reports_never_reach_a_group_and_anonymity_holds(
    rt: Runtime, school: dict[str, Actor]
) -> None:
    draft = Draft(category=Category.WELFARE, description="室友情绪很低落", anonymous=True)
    await reports.file_report(rt, school["informant"], draft)
    cards = await messages(rt, "reports.new")
    addresses = {card.address for card in cards}
    assert not addresses & {COMMAND_GROUP.address, CLASS_GROUP.address}
    assert addresses == {"11", "13", str(SUPERADMIN_ID)}  # officer, admin, superadmin
    assert all("user10" not in card.payload["text"] for card in cards)


async def test_the_reporter_is_hidden_from_officers_but_not_from_admins(
    rt: Runtime, school: dict[str, Actor]
) -> None:
    report = await reports.file_report(
        rt, school["informant"], Draft(description="有人翻墙", anonymous=True)
    )
    officer_view = await reports.view(rt, school["officer"], report.id)
    admin_view = await reports.view(rt, school["admin"], report.id)
    assert not officer_view.show_reporter
    assert officer_view.events[0].actor is None
    assert admin_view.show_reporter
    with pytest.raises(reports.UnknownReport):
        await reports.view(rt, school["other_officer"], report.id)


async def test_the_whole_handling_is_in_the_history_and_the_reporter_is_told(
    rt: Runtime, school: dict[str, Actor]
) -> None:
    informant, officer = school["informant"], school["officer"]
    report = await reports.file_report(rt, informant, Draft(description="车棚电线外露"))
    with pytest.raises(NotAllowed):
        await reports.acknowledge(rt, informant, report.id)
    assert (await reports.acknowledge(rt, officer, report.id)).changed
    assert not (await reports.acknowledge(rt, officer, report.id)).changed
    await reports.add_note(rt, officer, report.id, "已通知总务处")
    await reports.ask_reporter(rt, officer, report.id, "具体在哪个车棚？")
    view = await reports.view(rt, informant, report.id)
    question = next(e for e in view.events if e.kind == "asked")
    asked_id = (await _event_ids(rt, report.id, "asked"))[0]
    await reports.answer_question(rt, informant, report.id, asked_id, "东门车棚")
    done = await reports.resolve(rt, officer, report.id, "已断电并修复")
    assert done.report.state is State.RESOLVED
    with pytest.raises(reports.AlreadyClosed):
        await reports.resolve(rt, officer, report.id, "again")

    history = await reports.view(rt, officer, report.id)
    assert [e.kind for e in history.events] == [
        "filed",
        "acknowledged",
        "note",
        "asked",
        "answered",
        "resolved",
    ]
    assert all(e.at is not None for e in history.events)
    assert question.detail["text"] == "具体在哪个车棚？"
    reporter_view = await reports.view(rt, informant, report.id)
    assert "note" not in [e.kind for e in reporter_view.events]
    told = {
        t: await messages(rt, t)
        for t in (
            "reports.acknowledged_notice",
            "reports.question",
            "reports.resolved_notice",
            "reports.answer",
        )
    }
    assert [m.address for m in told["reports.acknowledged_notice"]] == ["10"]
    assert [m.address for m in told["reports.question"]] == ["10"]
    assert [m.address for m in told["reports.resolved_notice"]] == ["10"]
    assert [m.address for m in told["reports.answer"]] == ["11"]
    assert "东门车棚" in told["reports.answer"][0].payload["text"]


async def _event_ids(rt: Runtime, report_id: int, kind: str) -> list[int]:
    from bot.store.tables import report_events

    async with rt.db.read() as conn:
        return list(
            (
                await conn.execute(
                    select(report_events.c.id).where(
                        report_events.c.report_id == report_id, report_events.c.kind == kind
                    )
                )
            ).scalars()
        )


async def test_only_the_reporter_answers_and_only_real_officers_are_assigned(
    rt: Runtime, school: dict[str, Actor]
) -> None:
    report = await reports.file_report(rt, school["informant"], Draft(description="门禁坏了"))
    await reports.ask_reporter(rt, school["officer"], report.id, "哪个门？")
    asked_id = (await _event_ids(rt, report.id, "asked"))[0]
    with pytest.raises(reports.StaleButton):
        await reports.answer_question(rt, school["officer"], report.id, asked_id, "冒充")
    with pytest.raises(reports.NotAnOfficer):
        await reports.assign(rt, school["admin"], report.id, school["other_officer"].person.id)
    assigned = await reports.assign(rt, school["admin"], report.id, school["officer"].person.id)
    assert assigned.report.assignee is not None
    assert assigned.report.state is State.ACKNOWLEDGED


async def test_duplicates_point_at_an_existing_other_report(
    rt: Runtime, school: dict[str, Actor]
) -> None:
    first = await reports.file_report(rt, school["informant"], Draft(description="路灯坏了"))
    second = await reports.file_report(rt, school["informant"], Draft(description="路灯不亮"))
    with pytest.raises(reports.UnknownReport):
        await reports.reject_duplicate(rt, school["officer"], second.id, second.ref)
    with pytest.raises(reports.UnknownReport):
        await reports.reject_duplicate(rt, school["officer"], second.id, "R-9999")
    closed = await reports.reject_duplicate(rt, school["officer"], second.id, first.ref)
    assert closed.report.state is State.REJECTED
    assert closed.report.duplicate_of == first.id


async def test_bad_input_and_flooding_change_nothing(rt: Runtime, school: dict[str, Actor]) -> None:
    informant = school["informant"]
    with pytest.raises(reports.EmptyReport):
        await reports.file_report(rt, informant, Draft(description="   "))
    with pytest.raises(reports.TooLong):
        await reports.file_report(rt, informant, Draft(description="字" * 2001))
    stranger = await org.identify(rt, profile(99, "路人"), private=True)
    with pytest.raises(NotAllowed):
        await reports.file_report(rt, stranger, Draft(description="hi"))
    for n in range(rt.settings.reports_per_minute):
        await reports.file_report(rt, informant, Draft(description=f"第{n}条"))
    with pytest.raises(reports.TooManyReports):
        await reports.file_report(rt, informant, Draft(description="一条太多"))
    assert len(await messages(rt, "reports.new")) == rt.settings.reports_per_minute


async def test_urgent_reports_escalate_on_time_repeat_and_stop_when_acknowledged(
    tmp_path: Path, rt: Runtime, school: dict[str, Actor], clock: FakeClock
) -> None:
    urgent = await reports.file_report(
        rt, school["informant"], Draft(severity=Severity.URGENT, description="有人打架")
    )
    routine = await reports.file_report(rt, school["informant"], Draft(description="小事"))
    clock.advance(minutes=4, seconds=59)
    assert await escalation.run(rt) == []
    clock.advance(seconds=1)
    assert [r.id for r in await escalation.run(rt)] == [urgent.id]
    assert await escalation.run(rt) == []  # not twice for the same moment
    first = await messages(rt, "reports.escalated")
    assert {m.address for m in first} == {"12", "13", str(SUPERADMIN_ID)}  # leader, admins

    # A restart: a new runtime on the same database knows what is due and what was sent.
    restarted = await open_runtime(make_settings(tmp_path), clock)
    try:
        clock.advance(minutes=14)
        assert await escalation.run(restarted) == []
        clock.advance(minutes=1)  # the 15-minute interval
        assert [r.id for r in await escalation.run(restarted)] == [urgent.id]
        await reports.acknowledge(restarted, school["officer"], urgent.id)
        clock.advance(hours=1)
        assert await escalation.run(restarted) == []
    finally:
        await restarted.db.close()
    assert len(await messages(rt, "reports.escalated")) == 2 * len(first)
    clock.advance(days=1)
    assert [r.id for r in await escalation.run(rt)] == [routine.id]


async def test_open_reports_list_most_severe_then_newest_within_scope(
    rt: Runtime, school: dict[str, Actor]
) -> None:
    informant = school["informant"]
    for severity in (Severity.ROUTINE, Severity.URGENT, Severity.SERIOUS, Severity.URGENT):
        await reports.file_report(
            rt, informant, Draft(severity=severity, description=str(severity))
        )
    page = await reports.open_reports(rt, school["officer"])
    assert [r.id for r in page.reports] == [4, 2, 3, 1]
    assert (await reports.open_reports(rt, school["other_officer"])).total == 0
    with pytest.raises(NotAllowed):
        await reports.open_reports(rt, informant)
