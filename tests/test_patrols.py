"""Patrol services on a real SQLite database: distance and status, stale and unscanned
locations, refused codes, round inference and the round-closing summary (exactly once, also
across a restart)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from bot.errors import BadArguments, NotAllowed
from bot.outbox import Recipient
from bot.qr import qr_png
from bot.runtime import Runtime
from bot.services import org, patrols
from bot.services.models import Actor, Unit, UnitKind
from bot.services.patrols import Checkpoint, Reason, RoundState, Status, Window
from bot.store.tables import checkins, outbox, patrol_rounds
from tests.support import SUPERADMIN_ID, FakeClock, enrol, make_settings, open_runtime, profile

ROOT = Path(__file__).resolve().parent.parent
SHANGHAI = ZoneInfo("Asia/Shanghai")
LAT, LON = 30.5, 114.3
METRE = 1 / 111_195  # degrees of latitude per metre
NINE_AM = datetime(2026, 9, 1, 9, 0, tzinfo=SHANGHAI)
STAFF_GROUP = Recipient("telegram", "-500")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NINE_AM.astimezone(UTC))


@dataclass
class Site:
    boss: Actor
    guard: Actor
    officer: Actor
    gate: Checkpoint
    library: Checkpoint


async def site(rt: Runtime) -> Site:
    """Two placed checkpoints 100 m apart, a guard, an officer and a staff group."""
    boss = await org.identify(rt, profile(SUPERADMIN_ID, "处长", "boss"), private=True)
    guard = await enrol(rt, boss, 31, "guard")
    officer = await enrol(rt, boss, 32, "officer")
    gate = await patrols.add_checkpoint(rt, boss, "东门", None)
    gate = await patrols.place_checkpoint(rt, boss, gate.id, LAT, LON)
    library = await patrols.add_checkpoint(rt, boss, "图书馆", None)
    library = await patrols.place_checkpoint(rt, boss, library.id, LAT + 100 * METRE, LON)
    await org.bind_group(rt, boss, STAFF_GROUP, "保安队群", "staff", "")
    return Site(boss=boss, guard=guard, officer=officer, gate=gate, library=library)


async def scan_and_share(
    rt: Runtime, s: Site, checkpoint: Checkpoint, metres: float, delay: timedelta = timedelta()
) -> patrols.Checkin:
    now = rt.now()
    return await patrols.check_in(
        rt,
        s.guard,
        checkpoint.token,
        latitude=(checkpoint.latitude or 0) + metres * METRE,
        longitude=checkpoint.longitude,
        live=False,
        sent_at=now + delay,
        scanned_at=now,
    )


async def count(rt: Runtime, table: Any, *conditions: Any) -> int:
    async with rt.db.read() as conn:
        query = select(func.count()).select_from(table).where(*conditions)
        return (await conn.execute(query)).scalar_one()


async def summaries(rt: Runtime) -> list[str]:
    async with rt.db.read() as conn:
        rows = await conn.execute(
            select(outbox.c.address, outbox.c.payload).where(outbox.c.topic == "patrols.summary")
        )
        found = rows.all()
    assert all(row.address == STAFF_GROUP.address for row in found)
    return [row.payload["text"] for row in found]


def test_distance_and_status() -> None:
    gate = Checkpoint(
        id=1,
        name="东门",
        unit=_school(),
        latitude=LAT,
        longitude=LON,
        radius_m=50,
        token="t",
        active=True,
    )
    now = NINE_AM
    near = patrols.assess(gate, LAT + 20 * METRE, LON, sent_at=now, scanned_at=now)
    assert near.status is Status.VERIFIED
    assert near.distance_m == pytest.approx(20, abs=0.5)
    far = patrols.assess(gate, LAT + 300 * METRE, LON, sent_at=now, scanned_at=now)
    assert far.status is Status.FAR
    assert far.distance_m == pytest.approx(300, abs=1)
    late = patrols.assess(
        gate, LAT, LON, sent_at=now + patrols.STALE_AFTER + timedelta(seconds=1), scanned_at=now
    )
    assert (late.status, late.reason) == (Status.NO_LOCATION, Reason.STALE)
    declined = patrols.assess(gate, None, None, sent_at=now, scanned_at=now)
    assert (declined.status, declined.reason) == (Status.NO_LOCATION, Reason.DECLINED)
    # A degree of longitude is shorter away from the equator: haversine knows.
    assert patrols.distance_m(60, 0, 60, 1) == pytest.approx(55_800, rel=0.01)


def _school() -> Unit:
    return Unit(id=1, parent_id=None, name="", kind=UnitKind.SCHOOL, id_path="/1/", path="")


def test_windows_split_and_cross_midnight() -> None:
    night = Window(start=time(22), end=time(6), every_hours=2)
    found = patrols.occurrences_on(night, date(2026, 9, 1), SHANGHAI)
    assert [o.starts_at.astimezone(SHANGHAI).hour for o in found] == [22, 0, 2, 4]
    assert found[-1].ends_at == datetime(2026, 9, 2, 6, 0, tzinfo=SHANGHAI)
    at_three = datetime(2026, 9, 2, 3, 0, tzinfo=SHANGHAI)
    current = patrols.occurrence_at(night, at_three, SHANGHAI)
    assert current is not None
    assert current.starts_at == datetime(2026, 9, 2, 2, 0, tzinfo=SHANGHAI)
    assert patrols.occurrence_at(night, datetime(2026, 9, 2, 12, tzinfo=SHANGHAI), SHANGHAI) is None
    spec = patrols.parse_route_args(["夜巡", "22:00-06:00", "every", "2h", "东门，图书馆"])
    assert spec.checkpoint_names == ["东门", "图书馆"]
    assert spec.window == night


async def test_scanned_check_ins_are_verified_far_or_stale(rt: Runtime) -> None:
    s = await site(rt)
    near = await scan_and_share(rt, s, s.gate, 20)
    assert near.status is Status.VERIFIED
    far = await scan_and_share(rt, s, s.gate, 300)
    assert far.status is Status.FAR
    assert far.distance_m == pytest.approx(300, abs=1)
    stale = await scan_and_share(rt, s, s.gate, 0, delay=timedelta(minutes=3))
    assert (stale.status, stale.reason) == (Status.NO_LOCATION, Reason.STALE)
    assert stale.distance_m == pytest.approx(0, abs=0.5)  # kept as evidence
    assert await count(rt, checkins) == 3


async def test_an_unscanned_location_checks_in_at_the_nearest_checkpoint(rt: Runtime) -> None:
    s = await site(rt)
    checkin = await patrols.check_in_nearby(
        rt,
        s.guard,
        latitude=LAT + 70 * METRE,  # 70 m from the gate, 30 m from the library
        longitude=LON,
        live=True,
        sent_at=rt.now(),
    )
    assert checkin.checkpoint is not None
    assert checkin.checkpoint.name == "图书馆"
    assert checkin.status is Status.VERIFIED
    assert checkin.live
    with pytest.raises(patrols.NothingNear):
        await patrols.check_in_nearby(
            rt, s.guard, latitude=LAT - 500 * METRE, longitude=LON, live=False, sent_at=rt.now()
        )
    assert await count(rt, checkins) == 1


async def test_old_disabled_and_foreign_scans_are_refused_and_nothing_is_stored(
    rt: Runtime,
) -> None:
    s = await site(rt)
    old_token = s.gate.token
    fresh = await patrols.reissue_token(rt, s.boss, s.gate.id)
    assert fresh.token != old_token
    assert len(f"{patrols.SCAN_PREFIX}{fresh.token}") <= 64
    with pytest.raises(patrols.BadLink):
        await patrols.scan(rt, s.guard, old_token)
    with pytest.raises(patrols.NotAGuard):
        await patrols.scan(rt, s.officer, fresh.token)
    await patrols.set_active(rt, s.boss, s.gate.id, False)
    with pytest.raises(patrols.BadLink):
        await patrols.scan(rt, s.guard, fresh.token)
    with pytest.raises(patrols.BadLink):  # re-issued between the scan and the location
        await scan_and_share(rt, s, s.gate, 0)
    assert await count(rt, checkins) == 0


async def test_the_first_check_in_in_the_window_opens_the_round(
    rt: Runtime, clock: FakeClock
) -> None:
    s = await site(rt)
    args = ["早巡", "08:00-10:00", "东门", "图书馆"]
    route = await patrols.add_route(rt, s.boss, args)
    assert [cp.name for cp in route.checkpoints] == ["东门", "图书馆"]
    await scan_and_share(rt, s, s.gate, 10)
    assert await count(rt, patrol_rounds) == 1
    (view,) = await patrols.open_rounds(rt, s.guard)
    assert [cp.name for cp in view.visited] == ["东门"]
    assert [cp.name for cp in view.missing] == ["图书馆"]
    clock.advance(hours=2)  # 11:00: outside the window
    await scan_and_share(rt, s, s.library, 10)
    assert await count(rt, patrol_rounds) == 1
    with pytest.raises(patrols.OutsideWindow):
        await patrols.start_round(rt, s.guard, "早巡")


async def test_a_window_is_summarised_once_even_across_a_restart(
    tmp_path: Path, clock: FakeClock
) -> None:
    settings = make_settings(tmp_path)
    rt = await open_runtime(settings, clock)
    s = await site(rt)
    await patrols.add_route(rt, s.boss, ["早巡", "08:00-10:00", "东门", "图书馆"])
    await scan_and_share(rt, s, s.gate, 10)
    assert await patrols.run_due(rt) == []  # the window is still open
    assert await summaries(rt) == []
    clock.current = datetime(2026, 9, 1, 10, 3, tzinfo=SHANGHAI).astimezone(UTC)
    (view,) = await patrols.run_due(rt)
    assert view.state is RoundState.INCOMPLETE
    assert await patrols.run_due(rt) == []
    await rt.db.close()

    restarted = await open_runtime(settings, clock)
    try:
        assert await patrols.run_due(restarted) == []
        (text,) = await summaries(restarted)
        assert "漏巡：图书馆" in text
        assert "user31" in text
    finally:
        await restarted.db.close()


async def test_a_window_without_check_ins_is_reported_not_done_after_an_outage(
    tmp_path: Path, clock: FakeClock
) -> None:
    settings = make_settings(tmp_path)
    rt = await open_runtime(settings, clock)
    s = await site(rt)
    await patrols.add_route(rt, s.boss, ["早巡", "08:00-10:00", "东门", "图书馆"])
    await rt.db.close()
    # The bot was down when the window ended; the first pass after the start catches up.
    clock.current = datetime(2026, 9, 1, 15, 0, tzinfo=SHANGHAI).astimezone(UTC)
    restarted = await open_runtime(settings, clock)
    try:
        (view,) = await patrols.run_due(restarted)
        assert view.state is RoundState.NOT_DONE
        (text,) = await summaries(restarted)
        assert "巡逻未进行" in text
        assert "东门、图书馆" in text
    finally:
        await restarted.db.close()


async def test_a_check_in_sent_before_the_end_counts_if_handled_within_the_grace(
    rt: Runtime, clock: FakeClock
) -> None:
    s = await site(rt)
    await patrols.add_route(rt, s.boss, ["早巡", "08:00-10:00", "东门", "图书馆"])
    just_before = datetime(2026, 9, 1, 9, 59, 58, tzinfo=SHANGHAI).astimezone(UTC)
    # The pass runs before the backlog holding the guard's last two check-ins is handled.
    clock.current = just_before + timedelta(seconds=7)
    assert await patrols.run_due(rt) == []
    for checkpoint in (s.gate, s.library):
        await patrols.check_in(
            rt,
            s.guard,
            checkpoint.token,
            latitude=checkpoint.latitude,
            longitude=checkpoint.longitude,
            live=False,
            sent_at=just_before,
            scanned_at=just_before - timedelta(seconds=20),
        )
    clock.current = datetime(2026, 9, 1, 10, 0, tzinfo=SHANGHAI).astimezone(UTC)
    clock.current += patrols.CLOSE_GRACE - timedelta(seconds=1)
    assert await patrols.run_due(rt) == []
    clock.advance(seconds=1)
    (view,) = await patrols.run_due(rt)
    assert view.state is RoundState.COMPLETE
    assert [cp.name for cp in view.visited] == ["东门", "图书馆"]


async def test_a_disabled_checkpoint_is_neither_expected_nor_missed(
    rt: Runtime, clock: FakeClock
) -> None:
    s = await site(rt)
    await patrols.add_route(rt, s.boss, ["早巡", "08:00-10:00", "东门", "图书馆"])
    await patrols.set_active(rt, s.boss, s.library.id, False)
    await scan_and_share(rt, s, s.gate, 10)
    (view,) = await patrols.open_rounds(rt, s.guard)
    assert [cp.name for cp in view.route.checkpoints] == ["东门"]
    assert view.missing == []
    clock.current = datetime(2026, 9, 1, 10, 3, tzinfo=SHANGHAI).astimezone(UTC)
    (closed,) = await patrols.run_due(rt)
    assert closed.state is RoundState.COMPLETE
    (text,) = await summaries(rt)
    assert "全部 1 个巡更点均已到位" in text
    assert "图书馆" not in text
    # The route still holds it: enabling it again puts it back on the round.
    await patrols.set_active(rt, s.boss, s.library.id, True)
    (route,) = await patrols.list_routes(rt, s.guard)
    assert [cp.name for cp in route.checkpoints] == ["东门", "图书馆"]
    clock.current = datetime(2026, 9, 2, 9, 0, tzinfo=SHANGHAI).astimezone(UTC)
    (view,) = await patrols.open_rounds(rt, s.guard)
    assert [cp.name for cp in view.missing] == ["东门", "图书馆"]


async def test_a_round_opened_before_its_route_changed_is_still_summarised(
    rt: Runtime, clock: FakeClock
) -> None:
    s = await site(rt)
    await patrols.add_route(rt, s.boss, ["早巡", "08:00-10:00", "东门"])
    await patrols.add_route(rt, s.boss, ["馆巡", "08:00-10:00", "图书馆"])
    await scan_and_share(rt, s, s.gate, 10)
    await scan_and_share(rt, s, s.library, 10)
    clock.current = datetime(2026, 9, 1, 9, 30, tzinfo=SHANGHAI).astimezone(UTC)
    await patrols.edit_route(rt, s.boss, ["window", "早巡", "11:00-12:00"])
    clock.current = datetime(2026, 9, 1, 10, 0, 30, tzinfo=SHANGHAI).astimezone(UTC)
    await patrols.edit_route(rt, s.boss, ["disable", "馆巡"])
    clock.current = datetime(2026, 9, 1, 10, 3, tzinfo=SHANGHAI).astimezone(UTC)
    closed = await patrols.run_due(rt)
    assert sorted(view.route.name for view in closed) == ["早巡", "馆巡"]
    assert all(view.state is RoundState.COMPLETE for view in closed)
    assert len(await summaries(rt)) == 2
    assert await patrols.run_due(rt) == []


async def test_route_points_without_any_name_is_a_usage_error(rt: Runtime) -> None:
    s = await site(rt)
    await patrols.add_route(rt, s.boss, ["早巡", "08:00-10:00", "东门"])
    with pytest.raises(BadArguments):
        await patrols.edit_route(rt, s.boss, ["points", "早巡", "，"])
    (route,) = await patrols.list_routes(rt, s.boss)
    assert [cp.name for cp in route.checkpoints] == ["东门"]


async def test_coverage_counts_check_ins_per_checkpoint_and_route(rt: Runtime) -> None:
    s = await site(rt)
    await patrols.add_route(rt, s.boss, ["早巡", "08:00-10:00", "东门", "图书馆"])
    await scan_and_share(rt, s, s.gate, 10)
    await scan_and_share(rt, s, s.library, 300)
    day = patrols.parse_day("today", rt.now(), SHANGHAI)
    found = await patrols.coverage(rt, s.officer, day)
    by_name = {c.checkpoint.name: c for c in found.checkpoints}
    assert (by_name["东门"].verified, by_name["图书馆"].far) == (1, 1)
    (view,) = found.rounds
    assert [cp.name for cp in view.missing] == ["图书馆"]
    details = await patrols.checkins_at(rt, s.officer, s.library.id, day)
    assert details[0].status is Status.FAR
    with pytest.raises(NotAllowed):
        await patrols.coverage(rt, s.guard, day)


async def test_the_cli_writes_a_qr_code_per_active_checkpoint(
    tmp_path: Path, clock: FakeClock
) -> None:
    settings = make_settings(tmp_path)
    rt = await open_runtime(settings, clock)
    s = await site(rt)
    await patrols.set_active(rt, s.boss, s.library.id, False)
    await rt.db.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFECAMPUS_")}
    env.update(
        PYTHONPATH=str(ROOT),
        SAFECAMPUS_DATABASE_URL=settings.database_url,
        SAFECAMPUS_DATA_DIR=str(tmp_path / "data"),
    )
    out = tmp_path / "qr"
    command = [sys.executable, "-m", "bot.cli", "checkpoints", "qr", "--out", str(out)]
    result = await asyncio.to_thread(
        subprocess.run,
        [*command, "--bot-username", "@campus_bot"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    png = out / f"checkpoint-{s.gate.id:04d}.png"
    assert png.read_bytes() == qr_png(f"https://t.me/campus_bot?start=cp-{s.gate.token}")
    assert sorted(p.name for p in out.iterdir()) == [png.name, "index.html"]  # 图书馆 is disabled
    assert "东门" in (out / "index.html").read_text(encoding="utf-8")


async def test_the_patrol_texts_render_in_both_languages(rt: Runtime, clock: FakeClock) -> None:
    s = await site(rt)
    route = await patrols.add_route(rt, s.boss, ["MorningRound", "08:00-10:00", "东门", "图书馆"])
    checkin = await scan_and_share(rt, s, s.gate, 300)
    await patrols.add_note(rt, s.guard, checkin.id, "door open")
    day = patrols.parse_day("today", rt.now(), SHANGHAI)
    found = await patrols.coverage(rt, s.officer, day)
    details = await patrols.checkins_at(rt, s.officer, s.gate.id, day)
    clock.advance(hours=2)
    (view,) = await patrols.run_due(rt)
    samples: dict[str, dict[str, Any]] = {
        "patrols/checked_in.j2": {"checkin": checkin},
        "patrols/coverage.j2": {"coverage": found},
        "patrols/checkin_details.j2": {"checkins": details, "day": day},
        "patrols/round_summary.j2": {"view": view},
        "patrols/rounds.j2": {"views": [view]},
        "patrols/route_list.j2": {"routes": [route]},
        "patrols/checkpoint_card.j2": {"checkpoint": s.gate},
    }
    for name, values in samples.items():
        chinese = rt.renderer.render("zh_CN", name, **values)
        english = rt.renderer.render("en", name, **values)
        assert any("\u4e00" <= ch <= "\u9fff" for ch in chinese.replace("东门", "")), name
        # Only the checkpoint names (and the guard's note) are Chinese in the English texts.
        leftover = english.replace("东门", "").replace("图书馆", "").replace("全校", "")
        assert not any("\u4e00" <= ch <= "\u9fff" for ch in leftover), (name, english)
    assert "300 m" in rt.renderer.render("en", "patrols/checked_in.j2", checkin=checkin)
