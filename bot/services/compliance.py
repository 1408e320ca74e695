"""The compliance calendar (考评): obligations, and whether the records prove each one done.

An obligation says what must happen how often ("an anti-terror drill every quarter", "two
emergency drills per semester") and which records count as evidence: an activity of a kind and
topic recorded done (``/drill done``), a finished inspection (fire checklists, hazard surveys),
or a completed patrol round. Nothing is ticked by hand: the status is computed from the records,
so the reference of each record that satisfies an obligation can be shown.

A preset (the built-in "平安校园" plan) loads both its obligations and its reminder rules; loading
it again changes nothing, because obligations are keyed and rules are matched by name.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import yaml
from pydantic import BaseModel
from sqlalchemy import insert, select, update

from bot.errors import DomainError, NotAllowed
from bot.logs import log_event
from bot.periods import Period, SchoolCalendar
from bot.render import LOCALES
from bot.runtime import Runtime
from bot.services import drills, inspections, org, patrols, reminders
from bot.services.models import Actor, Role
from bot.store.tables import obligations

logger = logging.getLogger(__name__)

WATCHERS = (Role.ADMIN, Role.OFFICER, Role.LEADER)  # who may see /compliance
SURVEY_WORDS = ("排查", "survey")  # a checklist whose name says it is a hazard survey


class UnknownPreset(DomainError):
    template = "compliance/errors/unknown_preset.j2"


class Evidence(BaseModel):
    """Which records count for an obligation (stored as JSON on the obligation)."""

    type: str  # activity | inspection | round
    kind: str = ""  # activity kind: drill | training | meeting | publicity
    topics: list[str] = []  # activity topics; empty: any
    fire: bool = False  # inspection of a fire checklist (its name says 消防 / fire)
    survey: bool = False  # inspection whose checklist name says 排查 / survey


class Obligation(BaseModel):
    key: str  # also names its words in the templates (compliance/names.j2)
    period: Period
    required: int
    evidence: Evidence


def _activity(period: Period, required: int, kind: str, *topics: str) -> tuple[Any, ...]:
    return period, required, Evidence(type="activity", kind=kind, topics=list(topics))


# The "平安校园" preset, from the rules in DOMAIN.md (Shouyi 2016/2022, Changchun opinion).
PINGAN_CAMPUS: dict[str, tuple[Period, int, Evidence]] = {
    "anti_terror_drill": _activity(Period.QUARTER, 1, "drill", "anti_terror"),
    "emergency_drill": _activity(Period.SEMESTER, 2, "drill", "emergency", "fire"),
    "fire_inspection": (Period.WEEK, 1, Evidence(type="inspection", fire=True)),
    "fire_round": (Period.DAY, 1, Evidence(type="round")),
    "fire_survey": (Period.QUARTER, 1, Evidence(type="inspection", fire=True, survey=True)),
    "department_survey": (Period.MONTH, 1, Evidence(type="inspection", survey=True)),
    "dispute_meeting": _activity(Period.QUARTER, 1, "meeting", "dispute"),
    "traffic_training": _activity(Period.QUARTER, 1, "training", "traffic"),
    "traffic_publicity": _activity(Period.YEAR, 2, "publicity", "traffic"),
}
PRESETS = {"pingan-campus": PINGAN_CAMPUS}


# --- loading a preset ------------------------------------------------------------------------


class PresetLoaded(BaseModel):
    obligations_added: list[str]
    obligations_kept: list[str]
    rules: reminders.ImportSummary
    unreached: list[str]  # rules whose targets match nobody yet (no such group bound)


async def load_preset(rt: Runtime, actor: Actor | None, name: str) -> PresetLoaded:
    """Load a built-in preset: its obligations (added once, by key) and its reminder plan (rules
    matched by name, as ``plan import`` does). Loading it twice is the same as once. ``actor``
    None is the operator at the command line; otherwise a school admin."""
    preset = PRESETS.get(name)
    if preset is None:
        raise UnknownPreset(preset=name, known=sorted(PRESETS))
    plans = {
        locale: rt.renderer.render(locale, f"compliance/presets/{name}.yaml.j2")
        for locale in LOCALES
    }
    # The rules are found by name, and their names are in the school's language: loaded once
    # in another, they are the same rules, renamed rather than doubled.
    ours = _rule_names(plans[rt.settings.locale])
    for locale, plan in plans.items():
        if locale != rt.settings.locale:
            await reminders.rename_rules(rt, dict(zip(_rule_names(plan), ours, strict=True)))
    plan = plans[rt.settings.locale]
    rules = await reminders.import_plan(rt, actor, plan.encode(), reach_required=False)
    now = rt.now()
    added: list[str] = []
    kept: list[str] = []
    async with rt.db.transaction() as conn:
        for key, (period, required, evidence) in preset.items():
            known = (
                await conn.execute(select(obligations.c.id).where(obligations.c.key == key))
            ).first()
            values = {"period": period, "required": required, "evidence": evidence.model_dump()}
            if known is None:
                await conn.execute(
                    insert(obligations).values(
                        key=key, name=key, preset=name, created_at=now, updated_at=now, **values
                    )
                )
                added.append(key)
            else:
                await conn.execute(
                    update(obligations).where(obligations.c.id == known.id).values(**values)
                )
                kept.append(key)
        await org.record(conn, now, actor, "preset_loaded", f"preset:{name}", added=added)
    log_event(logger, "preset_loaded", preset=name, added=len(added), rules=len(rules.created))
    return PresetLoaded(
        obligations_added=added, obligations_kept=kept, rules=rules, unreached=rules.unreached
    )


def _rule_names(plan: str) -> list[str]:
    return [str(rule["name"]) for rule in yaml.safe_load(plan)]


# --- the status of each obligation -----------------------------------------------------------


class Status(StrEnum):
    DONE = "done"  # enough evidence in the period
    DUE = "due"  # the current period is still open
    OVERDUE = "overdue"  # a period ended without enough evidence


class Proof(BaseModel):
    """One record that counts: ``ref`` is what the user can look up (D-0003, an inspection's
    number, a route's name), ``at`` when it happened."""

    type: str
    ref: str
    at: datetime
    unit: str = ""  # an activity's unit when it was not the whole school's


class PeriodStatus(BaseModel):
    start: datetime
    end: datetime
    status: Status
    proofs: list[Proof]

    @property
    def last_moment(self) -> datetime:
        """The end as people say it: "by 19 Feb" rather than "by 20 Feb 00:00"."""
        return self.end - timedelta(seconds=1)


class ObligationStatus(BaseModel):
    key: str
    period: Period
    required: int
    current: PeriodStatus
    previous: PeriodStatus | None  # None: the obligation was not yet tracked then

    @property
    def flag(self) -> Status:
        """The one mark for the list: done now; else overdue if the last period was missed."""
        if self.current.status is Status.DONE:
            return Status.DONE
        if self.previous is not None and self.previous.status is Status.OVERDUE:
            return Status.OVERDUE
        return Status.DUE


async def _proofs(rt: Runtime, evidence: Evidence, since: datetime, until: datetime) -> list[Proof]:
    """The records in [since, until) that count for an obligation, oldest first."""
    if evidence.type == "activity":
        return [
            Proof(
                type="activity",
                ref=activity.ref,
                at=activity.done_at,
                unit=activity.target_unit.path,
            )
            for activity in await drills.activities_done(rt, since, until)
            if activity.kind == evidence.kind
            and (not evidence.topics or activity.topic in evidence.topics)
            and activity.done_at is not None
        ]
    if evidence.type == "inspection":
        return [
            Proof(type="inspection", ref=f"#{done.id} {done.checklist}", at=done.finished_at)
            for done in await inspections.inspections_done(rt, since, until)
            if (done.fire or not evidence.fire)
            and (_is_survey(done.checklist) or not evidence.survey)
            and done.finished_at is not None
        ]
    return [
        Proof(type="round", ref=done.route, at=done.window_start)
        for done in await patrols.rounds_complete(rt, since, until)
    ]


def _is_survey(checklist: str) -> bool:
    return any(word in checklist.lower() for word in SURVEY_WORDS)


async def _period_status(
    rt: Runtime,
    obligation: Obligation,
    bounds: tuple[datetime, datetime],
    now: datetime,
) -> PeriodStatus:
    start, end = bounds
    proofs = await _proofs(rt, obligation.evidence, start, end)
    if len(proofs) >= obligation.required:
        status = Status.DONE
    else:
        status = Status.DUE if end > now else Status.OVERDUE
    return PeriodStatus(start=start, end=end, status=status, proofs=proofs)


class Calendar(BaseModel):
    """What /compliance shows: each obligation's status, and whether the viewer may load a
    preset (school admins)."""

    at: datetime
    items: list[ObligationStatus]
    may_load_preset: bool


async def calendar_view(rt: Runtime, actor: Actor, at: datetime | None = None) -> Calendar:
    """/compliance: every obligation in the current period (and the one before, if it was
    already tracked then), with the records that satisfy it. School admins, officers and
    leaders on duty."""
    now = at or rt.now()
    calendar: SchoolCalendar = rt.settings.calendar
    async with rt.db.read() as conn:
        root = await org.root_unit(conn, rt.now())
        if not any(actor.has_role(role, root) for role in WATCHERS):
            raise NotAllowed(needed=Role.ADMIN, unit=root.path)
        rows = (await conn.execute(select(obligations).order_by(obligations.c.id))).all()
    found: list[ObligationStatus] = []
    for row in rows:
        obligation = Obligation(
            key=row.key,
            period=Period(row.period),
            required=row.required,
            evidence=Evidence(**row.evidence),
        )
        current = await _period_status(rt, obligation, calendar.bounds(obligation.period, now), now)
        before = calendar.previous(obligation.period, now)
        tracked = row.created_at < before[1]
        previous = await _period_status(rt, obligation, before, now) if tracked else None
        found.append(
            ObligationStatus(
                key=obligation.key,
                period=obligation.period,
                required=obligation.required,
                current=current,
                previous=previous,
            )
        )
    return Calendar(at=now, items=found, may_load_preset=actor.has_role(Role.ADMIN, root))
