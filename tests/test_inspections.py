"""Inspection checklists: parsing YAML and plain text (good and bad, with line numbers), the
replace semantics of a re-import, and an inspection with one failed item."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.errors import NotAllowed
from bot.runtime import Runtime
from bot.services import hazards, inspections, org
from bot.services.inspections import Problem, Result, State
from bot.services.models import Actor
from bot.services.reports import PhotoIn
from bot.store.tables import hazards as hazard_table
from bot.store.tables import inspections as inspection_table
from tests.support import SUPERADMIN_ID, FakeClock, enrol, profile

DORM = "name: 宿舍消防检查\nitems: [疏散通道畅通, 灭火器在有效期, 无违章电器]\n"


async def boss(rt: Runtime) -> Actor:
    return await org.identify(rt, profile(SUPERADMIN_ID, "王处长", "boss"), private=True)


def problems(text: str, name: str = "list.yaml") -> list[tuple[int, Problem]]:
    _, errors = inspections.parse_checklists(text, name)
    return [(error.line, error.problem) for error in errors]


def test_yaml_one_template_and_a_list_of_templates() -> None:
    found, errors = inspections.parse_checklists(DORM, "dorm.yaml")
    assert errors == []
    assert [(t.name, t.items) for t in found] == [
        ("宿舍消防检查", ["疏散通道畅通", "灭火器在有效期", "无违章电器"])
    ]
    several = (
        "- name: 宿舍消防检查\n"
        "  items:\n"
        "    - 疏散通道畅通\n"
        "    - 灭火器在有效期\n"
        "- name: Lab check\n"
        "  items: [Fume hood works, Chemicals locked]\n"
    )
    found, errors = inspections.parse_checklists(several, "all.yml")
    assert errors == []
    assert [t.name for t in found] == ["宿舍消防检查", "Lab check"]
    assert found[1].items == ["Fume hood works", "Chemicals locked"]


def test_plain_text_first_line_is_the_name() -> None:
    text = "\n宿舍消防检查\n- 疏散通道畅通\n\n灭火器在有效期\n-  无违章电器  \n"
    found, errors = inspections.parse_checklists(text, "dorm.txt")
    assert errors == []
    assert found[0].name == "宿舍消防检查"
    assert found[0].items == ["疏散通道畅通", "灭火器在有效期", "无违章电器"]


def test_bad_files_name_every_problem_with_its_line() -> None:
    assert problems("name: x\nitems: [a, b\n") == [(3, Problem.YAML)]
    assert problems("") == [(1, Problem.EMPTY)]
    assert problems("只有名称\n", "x.txt") == [(1, Problem.NO_ITEMS)]
    assert problems("名称\n- 一\n- 二\n- 一\n", "x.txt") == [(4, Problem.DUPLICATE_ITEM)]
    too_long = "x" * (inspections.MAX_ITEM + 1)
    assert problems(f"名称\n{too_long}\n", "x.txt") == [(2, Problem.ITEM_TOO_LONG)]
    bad = (
        "- name: ''\n"  # 1: no name
        "  items: [a]\n"
        "- name: B\n"  # 3
        "  itms: [a]\n"  # 4: a typo
        "- name: C\n"  # 5
        "  items:\n"
        "    - a\n"
        "    - [x, y]\n"  # 8: not text
        "- name: D\n"  # 9
        "  items: [a]\n"
        "- name: d\n"  # 11: the same name again
        "  items: [b]\n"
        "- just a line\n"  # 13: not a template
    )
    assert problems(bad) == [
        (1, Problem.NO_NAME),
        (3, Problem.NO_ITEMS),
        (4, Problem.UNKNOWN_KEY),
        (8, Problem.NOT_TEXT),
        (11, Problem.DUPLICATE_NAME),
        (13, Problem.SHAPE),
    ]


async def test_a_bad_file_stores_nothing_and_non_admins_may_not_import(rt: Runtime) -> None:
    admin = await boss(rt)
    bad = DORM + "- name: second\n"
    with pytest.raises(inspections.ChecklistRejected) as refused:
        await inspections.import_checklists(rt, admin, bad.encode(), "x.yaml")
    assert refused.value.context["errors"][0].problem is Problem.YAML
    with pytest.raises(inspections.ChecklistNotText):
        await inspections.import_checklists(rt, admin, "名称\n一".encode("gbk"), "x.txt")
    guard = await enrol(rt, admin, 301, "guard")
    with pytest.raises(NotAllowed):
        await inspections.import_checklists(rt, guard, DORM.encode(), "x.yaml")
    assert await inspections.list_checklists(rt, admin) == []


async def test_a_reimport_replaces_items_for_future_inspections_only(
    rt: Runtime, clock: FakeClock
) -> None:
    admin = await boss(rt)
    summary = await inspections.import_checklists(rt, admin, DORM.encode(), "dorm.yaml")
    assert summary.created == ["宿舍消防检查"]
    assert summary.items == 3
    (checklist,) = await inspections.list_checklists(rt, admin)
    earlier = await inspections.start(rt, admin, checklist, "3号楼")

    clock.advance(days=1)
    summary = await inspections.import_checklists(
        rt, admin, "宿舍消防检查\n疏散通道畅通\n消防栓完好\n".encode(), "dorm.txt"
    )
    assert summary.replaced == ["宿舍消防检查"]
    (checklist,) = await inspections.list_checklists(rt, admin)
    assert [item.text for item in checklist.items] == ["疏散通道畅通", "消防栓完好"]
    later = await inspections.start(rt, admin, checklist)
    assert [item.text for item in later.items] == ["疏散通道畅通", "消防栓完好"]
    kept = await inspections.get(rt, earlier.id)
    assert [item.text for item in kept.items] == ["疏散通道畅通", "灭火器在有效期", "无违章电器"]
    # Starting a new walk leaves no earlier one hanging in progress.
    assert kept.state is State.ABANDONED


async def count(rt: Runtime, table: object) -> int:
    async with rt.db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar_one()  # type: ignore[arg-type]


async def test_one_failed_item_makes_one_linked_hazard_and_one_done_inspection(
    rt: Runtime, clock: FakeClock
) -> None:
    admin = await boss(rt)
    await inspections.import_checklists(rt, admin, DORM.encode(), "dorm.yaml")
    guard = await enrol(rt, admin, 301, "guard")
    checklist, place = await inspections.choose_checklist(rt, guard, ["宿舍消防检查", "3号楼"])
    assert place == "3号楼"
    inspection = await inspections.start(rt, guard, checklist, place)
    first, second, third = inspection.items
    photo = PhotoIn(file_id="f1", file_unique_id="u1", size=10, path="photos/ab/x.jpg")
    await inspections.answer(rt, guard, inspection.id, first.id, Result.PASS)
    await inspections.answer(
        rt, guard, inspection.id, second.id, Result.FAIL, note="过期半年", photo=photo
    )
    # Going back and answering "fail" again keeps the one hazard.
    after = await inspections.answer(rt, guard, inspection.id, second.id, Result.FAIL)
    await inspections.answer(rt, guard, inspection.id, third.id, Result.NOT_APPLICABLE)
    clock.advance(minutes=10)
    done = await inspections.finish(rt, guard, inspection.id)

    assert done.state is State.DONE
    assert done.counts() == {"pass": 1, "fail": 1, "not_applicable": 1}
    (ref,) = done.hazard_refs
    assert after.result_of(second.id).hazard_ref == ref  # type: ignore[union-attr]
    assert await count(rt, hazard_table) == 1
    assert await count(rt, inspection_table) == 1
    hazard = await hazards.get(rt, hazards.parse_reference(ref))
    assert hazard.inspection_id == inspection.id
    assert hazard.description.startswith("灭火器在有效期")
    assert hazard.category == hazards.Category.FIRE
    assert hazard.severity == hazards.Severity.ROUTINE
    assert len(hazard.photos) == 1

    since = clock.current - timedelta(hours=1)
    (counted,) = await inspections.inspections_done(rt, since, clock.current + timedelta(1))
    assert counted.id == inspection.id
    assert await inspections.inspections_done(rt, since, since + timedelta(minutes=1)) == []
    with pytest.raises(inspections.InspectionOver):
        await inspections.answer(rt, guard, inspection.id, first.id, Result.FAIL)


async def test_an_abandoned_walk_is_not_done(rt: Runtime, clock: FakeClock) -> None:
    admin = await boss(rt)
    await inspections.import_checklists(rt, admin, b"Lab check\nHood works\n", "lab.txt")
    (checklist,) = await inspections.list_checklists(rt, admin)
    inspection = await inspections.start(rt, admin, checklist)
    await inspections.abandon(rt, admin, inspection.id)
    assert (await inspections.get(rt, inspection.id)).state is State.ABANDONED
    day = timedelta(days=1)
    assert await inspections.inspections_done(rt, clock.current - day, clock.current + day) == []
    with pytest.raises(inspections.UnknownChecklist):
        await inspections.choose_checklist(rt, admin, ["nope"])
    informant = await enrol(rt, admin, 401, "informant")
    with pytest.raises(NotAllowed):
        await inspections.list_checklists(rt, informant)


async def test_a_crash_after_the_hazard_does_not_register_it_twice(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await boss(rt)
    await inspections.import_checklists(rt, admin, DORM.encode(), "dorm.yaml")
    guard = await enrol(rt, admin, 301, "guard")
    (checklist,) = await inspections.list_checklists(rt, guard)
    inspection = await inspections.start(rt, guard, checklist, "3号楼")
    item = inspection.items[1]
    real = inspections._own_in_progress
    calls = 0

    async def crash_on_the_result(*args: object) -> inspections.Inspection:
        nonlocal calls
        calls += 1
        if calls == 2:  # the result's transaction, after the hazard was committed
            raise RuntimeError("power cut")
        return await real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(inspections, "_own_in_progress", crash_on_the_result)
    with pytest.raises(RuntimeError):
        await inspections.answer(rt, guard, inspection.id, item.id, Result.FAIL)
    monkeypatch.setattr(inspections, "_own_in_progress", real)
    assert await count(rt, hazard_table) == 1
    again = await inspections.answer(rt, guard, inspection.id, item.id, Result.FAIL)
    assert await count(rt, hazard_table) == 1
    assert again.hazard_refs == ["H-0001"]


async def test_a_fail_answered_again_stays_on_record_as_superseded(
    rt: Runtime, clock: FakeClock
) -> None:
    admin = await boss(rt)
    await inspections.import_checklists(rt, admin, DORM.encode(), "dorm.yaml")
    guard = await enrol(rt, admin, 301, "guard")
    (checklist,) = await inspections.list_checklists(rt, guard)
    inspection = await inspections.start(rt, guard, checklist)
    first, second, third = inspection.items
    await inspections.answer(rt, guard, inspection.id, first.id, Result.FAIL)
    # Back to the item: it passes after all. The hazard stays, and so does the link.
    passed = await inspections.answer(rt, guard, inspection.id, first.id, Result.PASS)
    earlier = passed.result_of(first.id)
    assert earlier is not None
    assert earlier.superseded
    assert earlier.hazard_ref == "H-0001"
    # Failing it once more reuses that hazard rather than registering another.
    await inspections.answer(rt, guard, inspection.id, second.id, Result.FAIL)
    await inspections.answer(rt, guard, inspection.id, second.id, Result.NOT_APPLICABLE)
    await inspections.answer(rt, guard, inspection.id, second.id, Result.FAIL)
    await inspections.answer(rt, guard, inspection.id, third.id, Result.PASS)
    done = await inspections.finish(rt, guard, inspection.id)
    assert await count(rt, hazard_table) == 2
    assert done.counts() == {"pass": 2, "fail": 1, "not_applicable": 0}
    assert done.hazard_refs == ["H-0002"]
    assert done.superseded_refs == ["H-0001"]
    for locale, words in (("zh_CN", "不通过后又改判：H-0001"), ("en", "after a fail: H-0001")):
        summary = rt.renderer.render(locale, "inspections/flow/summary.j2", inspection=done)
        assert words in summary
    # The ledger tells the same story.
    first_view = await hazards.view(rt, admin, 1)
    assert [(e.kind, e.detail.get("result")) for e in first_view.events] == [
        ("registered", None),
        ("reanswered", "pass"),
    ]
    second_view = await hazards.view(rt, admin, 2)
    assert [e.detail.get("result") for e in second_view.events if e.kind == "reanswered"] == [
        "not_applicable",
        "fail",
    ]
    for locale, words in (("zh_CN", "已被取代"), ("en", "the fail is superseded")):
        detail = rt.renderer.render(locale, "hazards/detail.j2", view=first_view, now=clock.current)
        assert words in detail
