"""Reports: an informant (or anyone enrolled) tells the security office what happened; the duty
officer acknowledges, handles and closes it; every step is kept in the report's history."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import and_, case, func, insert, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.errors import DomainError, NotAllowed, StaleButton
from bot.outbox import Button, Recipient
from bot.runtime import Runtime
from bot.services import duty, org
from bot.services.models import Actor, Group, Person, Purpose, Role, Unit
from bot.services.notify import notify_group, notify_person
from bot.store.tables import groups, people, report_events, report_photos, reports, units

MAX_DESCRIPTION = 2000
MAX_NOTE = 1000
MAX_PHOTOS = 10
PAGE_SIZE = 8
REF_PREFIX = "R-"
HANDLERS = (Role.OFFICER, Role.ADMIN)
ESCALATE_TO = (Role.LEADER, Role.ADMIN)
_MINUTE = timedelta(minutes=1)


class Category(StrEnum):
    SECURITY = "security"  # 治安
    FIRE = "fire"  # 消防
    TRAFFIC = "traffic"  # 交通
    FOOD = "food"  # 食品卫生
    FACILITIES = "facilities"  # 校舍设施
    DISPUTE = "dispute"  # 矛盾纠纷
    WELFARE = "welfare"  # 求助: a person in distress; never shown in groups
    SUSPICIOUS = "suspicious"  # 可疑情况
    OTHER = "other"  # 其他


class Severity(StrEnum):
    ROUTINE = "routine"  # 一般
    SERIOUS = "serious"  # 较大
    MAJOR = "major"  # 重大
    URGENT = "urgent"  # 紧急

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


class State(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    REJECTED = "rejected"  # a duplicate of another report

    @property
    def closed(self) -> bool:
        return self in (State.RESOLVED, State.REJECTED)


class EmptyReport(DomainError):
    template = "reports/errors/empty.j2"


class TooLong(DomainError):
    template = "reports/errors/too_long.j2"


class UnknownReport(DomainError):
    template = "reports/errors/unknown.j2"


class AlreadyClosed(DomainError):
    """The report is closed; ``report`` says how and when."""

    template = "reports/errors/closed.j2"


class TooManyReports(DomainError):
    template = "reports/errors/flood.j2"


class NotAnOfficer(DomainError):
    template = "reports/errors/not_an_officer.j2"


class PhotoIn(BaseModel):
    """A photo as received: Telegram's ids and size, and where we stored it (if we could)."""

    file_id: str
    file_unique_id: str
    size: int | None = None
    path: str | None = None
    note: str | None = None


class Draft(BaseModel):
    """What the reporter has said so far in the guided flow (or the quick path)."""

    category: Category = Category.OTHER
    severity: Severity = Severity.ROUTINE
    description: str = ""
    photos: list[PhotoIn] = Field(default_factory=list)
    latitude: float | None = None
    longitude: float | None = None
    anonymous: bool = False


class Photo(BaseModel):
    file_id: str
    path: str | None
    size: int | None
    note: str | None


class Report(BaseModel):
    id: int
    reporter: Person
    unit: Unit
    category: Category
    severity: Severity
    description: str
    latitude: float | None
    longitude: float | None
    anonymous: bool
    state: State
    assignee: Person | None
    duplicate_of: int | None
    created_at: datetime
    ack_deadline: datetime
    acknowledged_at: datetime | None
    closed_at: datetime | None
    photos: list[Photo]

    @property
    def ref(self) -> str:
        return reference(self.id)


class Event(BaseModel):
    at: datetime
    actor: Person | None
    kind: str
    detail: dict[str, Any]


class Handling(BaseModel):
    """The result of a step: the report as it is now, and whether this call changed it."""

    report: Report
    changed: bool = True


class ReportView(BaseModel):
    """A report as one viewer may see it."""

    report: Report
    events: list[Event]
    show_reporter: bool  # False for an anonymous report, except to admins


class ReportPage(BaseModel):
    reports: list[Report]
    number: int
    total_pages: int
    total: int


def reference(report_id: int) -> str:
    """The short code people see: R-0042."""
    return f"{REF_PREFIX}{report_id:04d}"


def parse_reference(text: str) -> int:
    """The id behind "R-0042" (also "r42", "42"); UnknownReport otherwise."""
    value = text.strip().upper().removeprefix(REF_PREFIX).removeprefix("R")
    if not value.isdigit() or int(value) < 1:
        raise UnknownReport(ref=text)
    return int(value)


def store_photo(data_dir: Path, data: bytes, suffix: str = ".jpg") -> str:
    """Keep photo bytes under DATA_DIR/photos by content hash; returns the relative path.
    The same photo sent twice is stored once."""
    digest = hashlib.sha256(data).hexdigest()
    relative = Path("photos") / digest[:2] / f"{digest}{suffix}"
    target = data_dir / relative
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(target)  # never a half-written photo under the final name
    return relative.as_posix()


def _check_text(text: str, limit: int) -> str:
    value = text.strip()
    if not value:
        raise EmptyReport()
    if len(value) > limit:
        raise TooLong(limit=limit, length=len(value))
    return value


# --- reading ---------------------------------------------------------------------------------


async def _load(conn: AsyncConnection, report_id: int) -> Report:
    row = (await conn.execute(select(reports).where(reports.c.id == report_id))).first()
    if row is None:
        raise UnknownReport(ref=reference(report_id))
    return (await _reports_from_rows(conn, [row]))[0]


async def _reports_from_rows(conn: AsyncConnection, rows: list[Row[Any]]) -> list[Report]:
    person_ids = {r.reporter_id for r in rows} | {r.assignee_id for r in rows if r.assignee_id}
    persons = {
        row.id: org.person_from_row(row)
        for row in (await conn.execute(select(people).where(people.c.id.in_(person_ids)))).all()
    }
    unit_map = {r.unit_id: await org.unit_by_id(conn, r.unit_id) for r in rows}
    photo_rows = (
        await conn.execute(
            select(report_photos)
            .where(report_photos.c.report_id.in_([r.id for r in rows]))
            .order_by(report_photos.c.id)
        )
    ).all()
    photos: dict[int, list[Photo]] = {r.id: [] for r in rows}
    for p in photo_rows:
        photos[p.report_id].append(Photo(file_id=p.file_id, path=p.path, size=p.size, note=p.note))
    return [
        Report(
            id=r.id,
            reporter=persons[r.reporter_id],
            unit=unit_map[r.unit_id],
            category=Category(r.category),
            severity=Severity(r.severity),
            description=r.description,
            latitude=r.latitude,
            longitude=r.longitude,
            anonymous=r.anonymous,
            state=State(r.status),
            assignee=persons.get(r.assignee_id) if r.assignee_id else None,
            duplicate_of=r.duplicate_of,
            created_at=r.created_at,
            ack_deadline=r.ack_deadline,
            acknowledged_at=r.acknowledged_at,
            closed_at=r.closed_at,
            photos=photos[r.id],
        )
        for r in rows
    ]


async def _event(
    conn: AsyncConnection,
    report_id: int,
    now: datetime,
    actor: Actor | None,
    kind: str,
    **detail: Any,
) -> int:
    result = await conn.execute(
        insert(report_events).values(
            report_id=report_id,
            at=now,
            actor_id=actor.person.id if actor else None,
            kind=kind,
            detail=detail,
        )
    )
    return int(result.inserted_primary_key[0])


def _is_handler(actor: Actor, unit: Unit) -> bool:
    return actor.has_role(Role.OFFICER, unit) or actor.has_role(Role.ADMIN, unit)


def _require_handler(actor: Actor, report: Report) -> None:
    if not _is_handler(actor, report.unit):
        raise NotAllowed(needed=Role.OFFICER, unit=report.unit.path)


# --- routing ---------------------------------------------------------------------------------


async def command_groups_for(conn: AsyncConnection, unit: Unit) -> list[Group]:
    """The command groups bound to ``unit`` or its nearest ancestor that has any."""
    rows = (
        await conn.execute(
            select(groups.c.channel, groups.c.address, units.c.id_path)
            .join(units, units.c.id == groups.c.unit_id)
            .where(groups.c.purpose == Purpose.COMMAND, groups.c.left_at.is_(None))
        )
    ).all()
    covering = [row for row in rows if unit.id_path.startswith(row.id_path)]
    if not covering:
        return []
    nearest = max(len(row.id_path) for row in covering)
    found = []
    for row in covering:
        if len(row.id_path) == nearest:
            group = await org.group_at(conn, Recipient(row.channel, row.address))
            if group is not None:
                found.append(group)
    return found


def card_buttons(rt: Runtime, locale: str, report: Report) -> list[list[Button]]:
    """The handling buttons under a report card (acknowledge, assign, resolve, duplicate)."""
    render = rt.renderer.render
    action = f"rpt:{{}}:{report.id}"
    return [
        [
            Button(
                text=render(locale, "reports/buttons/acknowledge.j2"), action=action.format("ack")
            ),
            Button(
                text=render(locale, "reports/buttons/assign.j2"), action=action.format("assign")
            ),
        ],
        [
            Button(
                text=render(locale, "reports/buttons/resolve.j2"), action=action.format("resolve")
            ),
            Button(
                text=render(locale, "reports/buttons/duplicate.j2"), action=action.format("dup")
            ),
        ],
    ]


async def _route(conn: AsyncConnection, rt: Runtime, report: Report) -> None:
    """Tell those who act on a new report. Welfare reports go to officers and admins in
    private only; others to the nearest command group(s), or privately if there is none."""
    targets = (
        [] if report.category is Category.WELFARE else await command_groups_for(conn, report.unit)
    )
    for group in targets:
        await notify_group(
            conn,
            rt,
            group,
            "reports/card.j2",
            topic="reports.new",
            buttons=card_buttons(rt, rt.settings.locale, report),
            report=report,
            photo=_first_photo(report),
        )
    if targets:
        return
    for person in await org.holders_over(conn, rt, report.unit, HANDLERS):
        locale = person.language(rt.settings.locale)
        await notify_person(
            conn,
            rt,
            person,
            "reports/card.j2",
            topic="reports.new",
            buttons=card_buttons(rt, locale, report),
            report=report,
            photo=_first_photo(report),
        )


def _first_photo(report: Report) -> str | None:
    return next((photo.path for photo in report.photos if photo.path), None)


# --- filing ----------------------------------------------------------------------------------


def _reporting_unit(actor: Actor, root: Unit) -> Unit:
    """The unit a report is about: the reporter's class for informants, else their first unit."""
    for grant in actor.grants:
        if grant.role is Role.INFORMANT:
            return grant.unit
    return actor.grants[0].unit if actor.grants else root


async def file_report(rt: Runtime, actor: Actor, draft: Draft) -> Report:
    """Record a report and route it; the caller may confirm to the reporter once this returns
    (it is committed). Any enrolled person may report."""
    if not actor.enrolled:
        raise NotAllowed(needed=Role.INFORMANT, unit="")
    description = _check_text(draft.description, MAX_DESCRIPTION)
    if len(draft.photos) > MAX_PHOTOS:
        raise TooLong(limit=MAX_PHOTOS, length=len(draft.photos))
    now = rt.now()
    async with rt.db.transaction() as conn:
        recent = (
            await conn.execute(
                select(func.count()).where(
                    reports.c.reporter_id == actor.person.id,
                    reports.c.created_at > now - _MINUTE,
                )
            )
        ).scalar_one()
        if recent >= rt.settings.reports_per_minute:
            raise TooManyReports(limit=rt.settings.reports_per_minute)
        unit = _reporting_unit(actor, await org.root_unit(conn, now))
        deadline = now + rt.settings.ack_deadlines[draft.severity.value]
        report_id = (
            await conn.execute(
                insert(reports).values(
                    reporter_id=actor.person.id,
                    unit_id=unit.id,
                    category=draft.category,
                    severity=draft.severity,
                    description=description,
                    latitude=draft.latitude,
                    longitude=draft.longitude,
                    anonymous=draft.anonymous,
                    status=State.OPEN,
                    created_at=now,
                    ack_deadline=deadline,
                    escalate_at=deadline,
                )
            )
        ).inserted_primary_key[0]
        for photo in draft.photos:
            await conn.execute(
                insert(report_photos).values(
                    report_id=report_id, received_at=now, **photo.model_dump()
                )
            )
        await _event(conn, report_id, now, actor, "filed", photos=len(draft.photos))
        report = await _load(conn, report_id)
        await _route(conn, rt, report)
    return report


# --- handling --------------------------------------------------------------------------------


async def _open_for_handling(conn: AsyncConnection, actor: Actor, report_id: int) -> Report:
    report = await _load(conn, report_id)
    _require_handler(actor, report)
    if report.state.closed:
        raise AlreadyClosed(report=report)
    return report


async def for_handling(rt: Runtime, actor: Actor, report_id: int) -> Report:
    """The report, if ``actor`` may handle it now: NotAllowed or AlreadyClosed otherwise.
    Checked before asking someone to type a resolution, not only after."""
    async with rt.db.read() as conn:
        return await _open_for_handling(conn, actor, report_id)


async def _question(
    conn: AsyncConnection, actor: Actor, report_id: int, question_id: int
) -> tuple[Report, Row[Any]]:
    report = await _load(conn, report_id)
    question = (
        await conn.execute(
            select(report_events).where(
                report_events.c.id == question_id,
                report_events.c.report_id == report_id,
                report_events.c.kind == "asked",
            )
        )
    ).first()
    if question is None or report.reporter.id != actor.person.id:
        raise StaleButton()
    return report, question


async def question_for(rt: Runtime, actor: Actor, report_id: int, question_id: int) -> str:
    """The text of a question relayed to ``actor`` about their own report."""
    async with rt.db.read() as conn:
        _, question = await _question(conn, actor, report_id, question_id)
    return str(question.detail["text"])


async def _tell_reporter(
    conn: AsyncConnection, rt: Runtime, report: Report, template: str, **context: Any
) -> None:
    await notify_person(
        conn,
        rt,
        report.reporter,
        template,
        topic=f"reports.{template.split('/')[-1][:-3]}",
        report=report,
        **context,
    )


async def acknowledge(rt: Runtime, actor: Actor, report_id: int) -> Handling:
    """The duty officer has seen it: stops escalation; the reporter is told. Pressing again
    changes nothing."""
    now = rt.now()
    async with rt.db.transaction() as conn:
        report = await _open_for_handling(conn, actor, report_id)
        if report.state is not State.OPEN:
            return Handling(report=report, changed=False)
        await conn.execute(
            update(reports)
            .where(reports.c.id == report_id)
            .values(status=State.ACKNOWLEDGED, acknowledged_at=now, escalate_at=None)
        )
        await _event(conn, report_id, now, actor, "acknowledged")
        report = await _load(conn, report_id)
        await _tell_reporter(conn, rt, report, "reports/acknowledged_notice.j2")
        return Handling(report=report)


async def officers_to_assign(
    rt: Runtime, actor: Actor, report_id: int
) -> tuple[Report, list[Person]]:
    """The officers who may take the report (officers whose scope covers its unit)."""
    async with rt.db.read() as conn:
        report = await _open_for_handling(conn, actor, report_id)
        officers = await org.holders_over(
            conn, rt, report.unit, [Role.OFFICER], with_superadmins=False
        )
    return report, officers


async def assign(rt: Runtime, actor: Actor, report_id: int, officer_id: int) -> Handling:
    """Give the report to an officer of its scope (acknowledging it if nobody had)."""
    report, officers = await officers_to_assign(rt, actor, report_id)
    officer = next((person for person in officers if person.id == officer_id), None)
    if officer is None:
        raise NotAnOfficer()
    now = rt.now()
    async with rt.db.transaction() as conn:
        report = await _open_for_handling(conn, actor, report_id)
        if report.assignee is not None and report.assignee.id == officer_id:
            return Handling(report=report, changed=False)
        values: dict[str, Any] = {"assignee_id": officer_id}
        if report.state is State.OPEN:
            values.update(status=State.ACKNOWLEDGED, acknowledged_at=now, escalate_at=None)
            await _event(conn, report_id, now, actor, "acknowledged")
        await conn.execute(update(reports).where(reports.c.id == report_id).values(**values))
        await _event(
            conn, report_id, now, actor, "assigned", officer=officer.id, name=officer.full_name
        )
        report = await _load(conn, report_id)
        await notify_person(
            conn,
            rt,
            officer,
            "reports/assigned_notice.j2",
            topic="reports.assigned",
            report=report,
            by=actor.person,
        )
        if "status" in values:
            await _tell_reporter(conn, rt, report, "reports/acknowledged_notice.j2")
        return Handling(report=report)


async def add_note(rt: Runtime, actor: Actor, report_id: int, text: str) -> Handling:
    """A handler's note in the history (not shown to the reporter)."""
    note = _check_text(text, MAX_NOTE)
    async with rt.db.transaction() as conn:
        report = await _open_for_handling(conn, actor, report_id)
        await _event(conn, report_id, rt.now(), actor, "note", text=note)
        return Handling(report=report)


async def ask_reporter(rt: Runtime, actor: Actor, report_id: int, question: str) -> Handling:
    """Relay a question to the reporter (their answer comes back to the asker). The asker
    never learns an anonymous reporter's name this way."""
    text = _check_text(question, MAX_NOTE)
    now = rt.now()
    async with rt.db.transaction() as conn:
        report = await _open_for_handling(conn, actor, report_id)
        event_id = await _event(conn, report_id, now, actor, "asked", text=text)
        locale = report.reporter.language(rt.settings.locale)
        answer = Button(
            text=rt.renderer.render(locale, "reports/buttons/answer.j2"),
            action=f"rpt:answer:{report_id}:{event_id}",
        )
        await notify_person(
            conn,
            rt,
            report.reporter,
            "reports/question_notice.j2",
            topic="reports.question",
            buttons=[[answer]],
            report=report,
            question=text,
        )
        return Handling(report=report)


async def answer_question(
    rt: Runtime, actor: Actor, report_id: int, question_id: int, text: str
) -> Handling:
    """The reporter answers a relayed question; the asker gets the answer."""
    answer = _check_text(text, MAX_NOTE)
    now = rt.now()
    async with rt.db.transaction() as conn:
        report, question = await _question(conn, actor, report_id, question_id)
        await _event(conn, report_id, now, actor, "answered", question=question_id, text=answer)
        asker_row = (
            await conn.execute(select(people).where(people.c.id == question.actor_id))
        ).one()
        await notify_person(
            conn,
            rt,
            org.person_from_row(asker_row),
            "reports/answer_notice.j2",
            topic="reports.answer",
            report=report,
            question=question.detail["text"],
            answer=answer,
        )
        return Handling(report=report)


async def resolve(rt: Runtime, actor: Actor, report_id: int, outcome: str) -> Handling:
    """Close the report with what was done; the reporter is told."""
    text = _check_text(outcome, MAX_NOTE)
    now = rt.now()
    async with rt.db.transaction() as conn:
        report = await _open_for_handling(conn, actor, report_id)
        await conn.execute(
            update(reports)
            .where(reports.c.id == report_id)
            .values(
                status=State.RESOLVED,
                closed_at=now,
                escalate_at=None,
                acknowledged_at=report.acknowledged_at or now,
            )
        )
        await _event(conn, report_id, now, actor, "resolved", text=text)
        report = await _load(conn, report_id)
        await _tell_reporter(conn, rt, report, "reports/resolved_notice.j2", outcome=text)
        return Handling(report=report)


async def reject_duplicate(rt: Runtime, actor: Actor, report_id: int, original: str) -> Handling:
    """Close the report as a duplicate of another one (which must exist and be different)."""
    original_id = parse_reference(original)
    now = rt.now()
    async with rt.db.transaction() as conn:
        report = await _open_for_handling(conn, actor, report_id)
        other = await _load(conn, original_id)
        if other.id == report.id:
            raise UnknownReport(ref=original)
        await conn.execute(
            update(reports)
            .where(reports.c.id == report_id)
            .values(status=State.REJECTED, closed_at=now, escalate_at=None, duplicate_of=other.id)
        )
        await _event(conn, report_id, now, actor, "rejected", duplicate_of=other.ref)
        report = await _load(conn, report_id)
        await _tell_reporter(conn, rt, report, "reports/duplicate_notice.j2", original=other)
        return Handling(report=report)


# --- views -----------------------------------------------------------------------------------


async def view(rt: Runtime, actor: Actor, report_id: int) -> ReportView:
    """One report with its history, for its reporter and for those who handle it."""
    async with rt.db.read() as conn:
        report = await _load(conn, report_id)
        is_reporter = report.reporter.id == actor.person.id
        if not is_reporter and not _is_handler(actor, report.unit):
            raise UnknownReport(ref=report.ref)  # not "not allowed": do not confirm it exists
        rows = (
            await conn.execute(
                select(report_events)
                .where(report_events.c.report_id == report_id)
                .order_by(report_events.c.id)
            )
        ).all()
        actor_ids = {row.actor_id for row in rows if row.actor_id}
        persons = {
            row.id: org.person_from_row(row)
            for row in (await conn.execute(select(people).where(people.c.id.in_(actor_ids)))).all()
        }
    show_reporter = not report.anonymous or is_reporter or actor.has_role(Role.ADMIN, report.unit)
    events = [
        Event(
            at=row.at,
            # The reporter's own steps (filed, answered) stay anonymous for non-admins.
            actor=None
            if row.actor_id == report.reporter.id and not show_reporter
            else persons.get(row.actor_id)
            if row.actor_id
            else None,
            kind=row.kind,
            detail=row.detail,
        )
        for row in rows
    ]
    if is_reporter and not _is_handler(actor, report.unit):
        events = [e for e in events if e.kind != "note"]  # handlers' notes are internal
    return ReportView(report=report, events=events, show_reporter=show_reporter)


async def open_reports(rt: Runtime, actor: Actor, page: int = 0) -> ReportPage:
    """Open and acknowledged reports in the actor's scope, most severe and newest first."""
    if not (actor.has_role(Role.OFFICER) or actor.has_role(Role.ADMIN)):
        raise NotAllowed(needed=Role.OFFICER, unit="")
    scopes = [g.unit.id_path for g in actor.grants if g.role in (Role.OFFICER, Role.ADMIN)] or ["/"]
    in_scope = or_(*(units.c.id_path.startswith(path) for path in scopes))
    if actor.superadmin:
        in_scope = units.c.id_path.startswith("/")
    condition = and_(reports.c.status.in_([State.OPEN, State.ACKNOWLEDGED]), in_scope)
    severity_rank = case({s.value: s.rank for s in Severity}, value=reports.c.severity)
    return await _page(rt, condition, [severity_rank.desc(), reports.c.id.desc()], page)


async def my_reports(rt: Runtime, actor: Actor, page: int = 0) -> ReportPage:
    """The actor's own reports, newest first."""
    return await _page(rt, reports.c.reporter_id == actor.person.id, [reports.c.id.desc()], page)


async def _page(rt: Runtime, condition: Any, order: list[Any], page: int) -> ReportPage:
    async with rt.db.read() as conn:
        base = select(reports).join(units, units.c.id == reports.c.unit_id).where(condition)
        total = (await conn.execute(select(func.count()).select_from(base.subquery()))).scalar_one()
        pages = max(1, -(-total // PAGE_SIZE))
        number = min(max(page, 0), pages - 1)
        rows = (
            await conn.execute(base.order_by(*order).limit(PAGE_SIZE).offset(number * PAGE_SIZE))
        ).all()
        found = await _reports_from_rows(conn, rows) if rows else []
    return ReportPage(reports=found, number=number, total_pages=pages, total=total)


# --- escalation ------------------------------------------------------------------------------


async def _escalation_targets(
    conn: AsyncConnection, rt: Runtime, unit: Unit, now: datetime
) -> list[Person]:
    """The leaders on duty now by the roster, the admins of ``unit``'s scope and the
    superadmins. A roster leader counts only if they hold the leader (or admin) role over
    ``unit``: being on the roster gives no rights of its own. With no such leader on duty,
    everyone holding the leader role over ``unit`` stands in, so an escalation never goes to
    admins alone by accident."""
    eligible = await org.holders_over(conn, rt, unit, ESCALATE_TO)
    eligible_ids = {person.id for person in eligible}
    leaders = [p for p in await duty.leaders_on_duty(conn, rt, now) if p.id in eligible_ids]
    if not leaders:
        return eligible
    found = {person.id: person for person in leaders}
    for person in await org.holders_over(conn, rt, unit, (Role.ADMIN,)):
        found.setdefault(person.id, person)
    return list(found.values())


async def escalate_due(rt: Runtime) -> list[Report]:
    """Escalate every report still unacknowledged past its deadline (or past the last
    escalation plus the interval) to the leaders on duty and the admins of its scope.
    Planned from the database, so a restart neither loses nor repeats an escalation."""
    now = rt.now()
    escalated = []
    async with rt.db.transaction() as conn:
        due = (
            (
                await conn.execute(
                    select(reports.c.id)
                    .where(reports.c.status == State.OPEN, reports.c.escalate_at <= now)
                    .order_by(reports.c.id)
                )
            )
            .scalars()
            .all()
        )
        for report_id in due:
            report = await _load(conn, report_id)
            count = (
                await conn.execute(
                    update(reports)
                    .where(reports.c.id == report_id)
                    .values(
                        escalations=reports.c.escalations + 1,
                        escalate_at=now + rt.settings.escalation_interval,
                    )
                    .returning(reports.c.escalations)
                )
            ).scalar_one()
            await _event(conn, report_id, now, None, "escalated", count=count)
            for person in await _escalation_targets(conn, rt, report.unit, now):
                await notify_person(
                    conn,
                    rt,
                    person,
                    "reports/escalation_notice.j2",
                    topic="reports.escalated",
                    buttons=card_buttons(rt, person.language(rt.settings.locale), report),
                    report=report,
                    count=count,
                )
            escalated.append(report)
    return escalated
