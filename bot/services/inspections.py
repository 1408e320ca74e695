"""Inspection checklists (检查表) and inspections (检查 / 排查).

An admin defines a checklist template (a name and its items) by sending a YAML or plain-text
file; the whole file is checked first (``parse_checklists`` is pure) and refused whole, with
every problem and its line, if anything is wrong. Importing a template again under its name
replaces its items for future inspections; the old items are retired, not deleted, so an earlier
inspection still shows what it asked.

An inspector walks a template item by item (pass / fail / not applicable); a fail registers a
hazard linked to the inspection. A finished walk is recorded as done: the evidence that the
inspection happened, which ``inspections_done`` hands to the compliance calendar. A walk
cancelled or timed out is recorded as abandoned.
"""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum
from typing import Any

import yaml
from pydantic import BaseModel
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.errors import DomainError, NotAllowed
from bot.logs import log_event
from bot.runtime import Runtime
from bot.services import hazards, org, yamlfile
from bot.services.models import Actor, Person, Role
from bot.services.reports import PhotoIn
from bot.store.tables import (
    checklist_items,
    checklist_templates,
    inspection_results,
    inspections,
    people,
)

logger = logging.getLogger(__name__)

MAX_FILE_BYTES = 200_000
MAX_NAME = 64
MAX_ITEM = 200
MAX_ITEMS = 100
MAX_TEMPLATES = 50
MAX_PLACE = hazards.MAX_PLACE  # the place goes into the hazards a fail registers
MAX_NOTE = 1000
INSPECTORS = (Role.GUARD, Role.OFFICER, Role.ADMIN, Role.UNIT_HEAD)
YAML_KEYS = ("name", "items")
_FIRE_WORDS = ("消防", "fire")


class Result(StrEnum):
    PASS = "pass"  # 通过
    FAIL = "fail"  # 不通过
    NOT_APPLICABLE = "not_applicable"  # 不适用


class State(StrEnum):
    IN_PROGRESS = "in_progress"
    DONE = "done"
    ABANDONED = "abandoned"


# --- errors --------------------------------------------------------------------------------


class ChecklistRejected(DomainError):
    """The file has problems; ``errors`` lists them all (nothing was stored)."""

    template = "inspections/errors/rejected.j2"


class ChecklistNotText(DomainError):
    template = "inspections/errors/not_text.j2"


class UnknownChecklist(DomainError):
    """No active template by that name (``wanted``); ``names`` lists the ones there are."""

    template = "inspections/errors/unknown_checklist.j2"


class InspectionOver(DomainError):
    """The inspection is no longer in progress (finished, abandoned, or someone else's)."""

    template = "inspections/errors/over.j2"


class PlaceTooLong(DomainError):
    template = "inspections/errors/place_too_long.j2"


# --- parsing (pure) ------------------------------------------------------------------------


class Problem(StrEnum):
    """What can be wrong with a checklist file (each has words in the templates)."""

    EMPTY = "empty"
    YAML = "yaml"  # malformed YAML; ``value`` is the parser's own words
    SHAPE = "shape"  # not a template or a list of templates
    UNKNOWN_KEY = "unknown_key"
    NO_NAME = "no_name"
    NAME_TOO_LONG = "name_too_long"
    DUPLICATE_NAME = "duplicate_name"
    NO_ITEMS = "no_items"
    NOT_TEXT = "not_text"  # an item that is a list or a mapping
    ITEM_TOO_LONG = "item_too_long"
    DUPLICATE_ITEM = "duplicate_item"
    TOO_MANY_ITEMS = "too_many_items"
    TOO_MANY_TEMPLATES = "too_many_templates"


class LineError(BaseModel):
    """One problem: the line it is on (1 = the first line), what, and the value."""

    line: int
    problem: Problem
    value: str = ""
    other_line: int | None = None  # the earlier line a duplicate repeats


class ChecklistIn(BaseModel):
    """A template as read from a file."""

    line: int
    name: str
    items: list[str]


def decode_file(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ChecklistNotText() from None


def is_yaml(file_name: str, text: str) -> bool:
    """YAML by its extension; a file named otherwise is YAML if it starts like one of ours."""
    lower = file_name.lower()
    if lower.endswith((".yaml", ".yml")):
        return True
    if lower.endswith(".txt"):
        return False
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first.startswith(("name:", "- name:", "---"))


def _check(
    line: int, name: str, items: list[tuple[int, str]], errors: list[LineError]
) -> ChecklistIn | None:
    """Check one template's name and items, adding its problems to ``errors``."""
    before = len(errors)
    if not name:
        errors.append(LineError(line=line, problem=Problem.NO_NAME))
    elif len(name) > MAX_NAME:
        errors.append(
            LineError(line=line, problem=Problem.NAME_TOO_LONG, value=name[:MAX_NAME] + "…")
        )
    if not items:
        errors.append(LineError(line=line, problem=Problem.NO_ITEMS, value=name))
    if len(items) > MAX_ITEMS:
        errors.append(LineError(line=line, problem=Problem.TOO_MANY_ITEMS, value=str(MAX_ITEMS)))
    seen: dict[str, int] = {}
    for item_line, text in items:
        if len(text) > MAX_ITEM:
            errors.append(
                LineError(line=item_line, problem=Problem.ITEM_TOO_LONG, value=text[:40] + "…")
            )
        key = text.casefold()
        if key in seen:
            errors.append(
                LineError(
                    line=item_line,
                    problem=Problem.DUPLICATE_ITEM,
                    value=text[:40],
                    other_line=seen[key],
                )
            )
        seen.setdefault(key, item_line)
    if len(errors) > before:
        return None
    return ChecklistIn(line=line, name=name, items=[text for _, text in items])


def _strip_item(line: str) -> str:
    text = line.strip()
    if text.startswith("- "):
        return text[2:].strip()
    return text


def parse_text(text: str) -> tuple[list[ChecklistIn], list[LineError]]:
    """Plain text: the first non-empty line is the name, every further non-empty line an item
    (a leading "- " is dropped)."""
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)]
    lines = [(number, line) for number, line in lines if line]
    if not lines:
        return [], [LineError(line=1, problem=Problem.EMPTY)]
    (first, name), rest = lines[0], lines[1:]
    errors: list[LineError] = []
    items = [(number, _strip_item(line)) for number, line in rest]
    items = [(number, item) for number, item in items if item]
    checked = _check(first, name, items, errors)
    return ([checked] if checked else []), errors


def _scalar(node: yaml.Node) -> str | None:
    if isinstance(node, yaml.ScalarNode):
        return str(node.value).strip()
    return None


def _template_from_node(node: yaml.Node, errors: list[LineError]) -> ChecklistIn | None:
    line = node.start_mark.line + 1
    if not isinstance(node, yaml.MappingNode):
        errors.append(LineError(line=line, problem=Problem.SHAPE))
        return None
    name = ""
    items: list[tuple[int, str]] = []
    before = len(errors)
    for key_node, value_node in node.value:
        key = _scalar(key_node)
        key_line = key_node.start_mark.line + 1
        if key == "name":
            value = _scalar(value_node)
            if value is None:
                errors.append(LineError(line=key_line, problem=Problem.NOT_TEXT, value="name"))
            else:
                name = value
        elif key == "items":
            if isinstance(value_node, yaml.ScalarNode) and not value_node.value:
                continue  # "items:" with nothing after it: reported as no items
            if not isinstance(value_node, yaml.SequenceNode):
                errors.append(LineError(line=key_line, problem=Problem.SHAPE))
                continue
            for item_node in value_node.value:
                item_line = item_node.start_mark.line + 1
                text = _scalar(item_node)
                if text is None:
                    errors.append(LineError(line=item_line, problem=Problem.NOT_TEXT))
                elif text:
                    items.append((item_line, text))
        else:
            errors.append(
                LineError(line=key_line, problem=Problem.UNKNOWN_KEY, value=str(key or "?"))
            )
    checked = _check(line, name, items, errors)
    return checked if len(errors) == before else None


def parse_yaml(text: str) -> tuple[list[ChecklistIn], list[LineError]]:
    """YAML: one template (``name:`` and ``items:``) or a list of them."""
    nodes = yamlfile.entries(text, MAX_TEMPLATES)
    if isinstance(nodes, yamlfile.FileTrouble):
        problem = {
            yamlfile.Trouble.YAML: Problem.YAML,
            yamlfile.Trouble.EMPTY: Problem.EMPTY,
            yamlfile.Trouble.TOO_MANY: Problem.TOO_MANY_TEMPLATES,
        }[nodes.trouble]
        return [], [LineError(line=nodes.line, problem=problem, value=nodes.detail)]
    errors: list[LineError] = []
    found: list[ChecklistIn] = []
    for node in nodes:
        template = _template_from_node(node, errors)
        if template is not None:
            found.append(template)
    return found, errors


def parse_checklists(text: str, file_name: str) -> tuple[list[ChecklistIn], list[LineError]]:
    """Every template in a file and every problem found, sorted by line; the file may only be
    imported when there are no problems."""
    found, errors = parse_yaml(text) if is_yaml(file_name, text) else parse_text(text)
    seen: dict[str, int] = {}
    for template in found:
        key = template.name.casefold()
        if key in seen:
            errors.append(
                LineError(
                    line=template.line,
                    problem=Problem.DUPLICATE_NAME,
                    value=template.name,
                    other_line=seen[key],
                )
            )
        seen.setdefault(key, template.line)
    return found, sorted(errors, key=lambda error: error.line)


# --- templates -----------------------------------------------------------------------------


class ImportSummary(BaseModel):
    created: list[str]
    replaced: list[str]
    items: int


class ChecklistItem(BaseModel):
    id: int
    position: int
    text: str


class Checklist(BaseModel):
    id: int
    name: str
    items: list[ChecklistItem]
    updated_at: datetime

    @property
    def fire(self) -> bool:
        lower = self.name.lower()
        return any(word in lower for word in _FIRE_WORDS)


async def import_checklists(
    rt: Runtime, actor: Actor | None, data: bytes, file_name: str
) -> ImportSummary:
    """Check ``data`` as checklist templates and, if everything is good, store them (a name
    already known gets the new items). ``actor`` must be an admin; None is the operator at the
    command line. Raises ChecklistRejected listing every problem."""
    if actor is not None and not actor.has_role(Role.ADMIN):
        raise NotAllowed(needed=Role.ADMIN, unit="")
    found, errors = parse_checklists(decode_file(data), file_name)
    if errors:
        raise ChecklistRejected(errors=errors)
    now = rt.now()
    created: list[str] = []
    replaced: list[str] = []
    async with rt.db.transaction() as conn:
        root = await org.root_unit(conn, now)
        scope = root if actor is None or actor.has_role(Role.ADMIN, root) else None
        if scope is None:
            assert actor is not None
            scope = actor.admin_scopes()[0]
        for template in found:
            row = (
                await conn.execute(
                    select(checklist_templates).where(checklist_templates.c.name == template.name)
                )
            ).first()
            if row is None:
                template_id = (
                    await conn.execute(
                        insert(checklist_templates)
                        .values(
                            name=template.name,
                            unit_id=scope.id,
                            created_by=actor.person.id if actor else None,
                            created_at=now,
                            updated_at=now,
                            active=True,
                        )
                        .returning(checklist_templates.c.id)
                    )
                ).scalar_one()
                created.append(template.name)
            else:
                if actor is not None:
                    actor.require_admin(await org.unit_by_id(conn, row.unit_id))
                template_id = row.id
                await conn.execute(
                    update(checklist_items)
                    .where(
                        checklist_items.c.template_id == template_id,
                        checklist_items.c.retired_at.is_(None),
                    )
                    .values(retired_at=now)
                )
                await conn.execute(
                    update(checklist_templates)
                    .where(checklist_templates.c.id == template_id)
                    .values(updated_at=now, active=True)
                )
                replaced.append(template.name)
            await conn.execute(
                insert(checklist_items),
                [
                    {"template_id": template_id, "position": position, "text": text}
                    for position, text in enumerate(template.items, 1)
                ],
            )
        await org.record(
            conn,
            now,
            actor,
            "checklists_imported",
            f"checklists:{file_name[:64]}",
            created=created,
            replaced=replaced,
        )
    log_event(logger, "checklists_imported", added=len(created), replaced=len(replaced))
    return ImportSummary(created=created, replaced=replaced, items=sum(len(t.items) for t in found))


async def _checklists(conn: AsyncConnection, *conditions: Any) -> list[Checklist]:
    rows = (
        await conn.execute(
            select(checklist_templates)
            .where(checklist_templates.c.active.is_(True), *conditions)
            .order_by(checklist_templates.c.name)
        )
    ).all()
    items = (
        await conn.execute(
            select(checklist_items)
            .where(
                checklist_items.c.template_id.in_([row.id for row in rows]),
                checklist_items.c.retired_at.is_(None),
            )
            .order_by(checklist_items.c.position)
        )
    ).all()
    by_template: dict[int, list[ChecklistItem]] = {row.id: [] for row in rows}
    for item in items:
        by_template[item.template_id].append(
            ChecklistItem(id=item.id, position=item.position, text=item.text)
        )
    return [
        Checklist(id=row.id, name=row.name, items=by_template[row.id], updated_at=row.updated_at)
        for row in rows
    ]


def _require_inspector(actor: Actor) -> None:
    if not any(actor.has_role(role) for role in INSPECTORS):
        raise NotAllowed(needed=Role.GUARD, unit="")


async def list_checklists(rt: Runtime, actor: Actor) -> list[Checklist]:
    """The active templates, by name (for inspectors and admins)."""
    _require_inspector(actor)
    async with rt.db.read() as conn:
        return await _checklists(conn)


async def choose_checklist(rt: Runtime, actor: Actor, words: list[str]) -> tuple[Checklist, str]:
    """The template named by the longest leading run of ``words`` (or its number in the
    /checklists list), and the rest as the place."""
    found = await list_checklists(rt, actor)
    by_name = {checklist.name.casefold(): checklist for checklist in found}
    for count in range(len(words), 0, -1):
        name = " ".join(words[:count]).casefold()
        if name in by_name:
            return by_name[name], " ".join(words[count:])
    if words and words[0].isdigit() and 1 <= int(words[0]) <= len(found):
        return found[int(words[0]) - 1], " ".join(words[1:])
    raise UnknownChecklist(wanted=" ".join(words), names=[checklist.name for checklist in found])


# --- inspections ---------------------------------------------------------------------------


class ItemResult(BaseModel):
    item: ChecklistItem
    result: Result
    note: str | None
    hazard_id: int | None  # kept when a fail is answered again: see ``superseded``
    hazard_ref: str | None

    @property
    def superseded(self) -> bool:
        """A fail registered a hazard, then the item was answered otherwise: the hazard stays
        in the ledger (with a "reanswered" event), and the summary says so."""
        return self.hazard_id is not None and self.result is not Result.FAIL


class Inspection(BaseModel):
    id: int
    checklist: str
    fire: bool
    inspector: Person
    place: str
    items: list[ChecklistItem]  # as they were when the inspection started
    state: State
    started_at: datetime
    finished_at: datetime | None
    results: list[ItemResult]

    def counts(self) -> dict[str, int]:
        return {result.value: sum(r.result is result for r in self.results) for result in Result}

    @property
    def hazard_refs(self) -> list[str]:
        """The hazards this inspection's fails registered (and that still stand)."""
        return [r.hazard_ref for r in self.results if r.hazard_ref and not r.superseded]

    @property
    def superseded_refs(self) -> list[str]:
        """Hazards registered by a fail that was later answered otherwise."""
        return [r.hazard_ref for r in self.results if r.hazard_ref and r.superseded]

    def result_of(self, item_id: int) -> ItemResult | None:
        return next((r for r in self.results if r.item.id == item_id), None)


async def _load(conn: AsyncConnection, inspection_id: int) -> Inspection:
    row = (
        await conn.execute(
            select(
                inspections,
                checklist_templates.c.name.label("checklist_name"),
            )
            .join(checklist_templates, checklist_templates.c.id == inspections.c.template_id)
            .where(inspections.c.id == inspection_id)
        )
    ).first()
    if row is None:
        raise InspectionOver()
    person = (await conn.execute(select(people).where(people.c.id == row.inspector_id))).one()
    item_rows = (
        await conn.execute(select(checklist_items).where(checklist_items.c.id.in_(row.item_ids)))
    ).all()
    by_id = {
        item.id: ChecklistItem(id=item.id, position=position, text=item.text)
        for item in item_rows
        for position in [row.item_ids.index(item.id) + 1]
    }
    items = [by_id[item_id] for item_id in row.item_ids]
    result_rows = (
        await conn.execute(
            select(inspection_results).where(inspection_results.c.inspection_id == inspection_id)
        )
    ).all()
    results = sorted(
        (
            ItemResult(
                item=by_id[r.item_id],
                result=Result(r.result),
                note=r.note,
                hazard_id=r.hazard_id,
                hazard_ref=hazards.reference(r.hazard_id) if r.hazard_id else None,
            )
            for r in result_rows
        ),
        key=lambda r: r.item.position,
    )
    lower = row.checklist_name.lower()
    return Inspection(
        id=row.id,
        checklist=row.checklist_name,
        fire=any(word in lower for word in _FIRE_WORDS),
        inspector=org.person_from_row(person),
        place=row.place,
        items=items,
        state=State(row.state),
        started_at=row.started_at,
        finished_at=row.finished_at,
        results=results,
    )


async def get(rt: Runtime, inspection_id: int) -> Inspection:
    async with rt.db.read() as conn:
        return await _load(conn, inspection_id)


async def start(rt: Runtime, actor: Actor, checklist: Checklist, place: str = "") -> Inspection:
    """Begin a walk of ``checklist`` with its current items; an earlier walk by the same
    inspector still in progress (a lost conversation) is recorded as abandoned."""
    _require_inspector(actor)
    place = place.strip()
    if len(place) > MAX_PLACE:
        raise PlaceTooLong(limit=MAX_PLACE, length=len(place))
    now = rt.now()
    async with rt.db.transaction() as conn:
        await conn.execute(
            update(inspections)
            .where(
                inspections.c.inspector_id == actor.person.id,
                inspections.c.state == State.IN_PROGRESS,
            )
            .values(state=State.ABANDONED, finished_at=now)
        )
        inspection_id = (
            await conn.execute(
                insert(inspections)
                .values(
                    template_id=checklist.id,
                    inspector_id=actor.person.id,
                    place=place,
                    item_ids=[item.id for item in checklist.items],
                    state=State.IN_PROGRESS,
                    started_at=now,
                )
                .returning(inspections.c.id)
            )
        ).scalar_one()
        inspection = await _load(conn, inspection_id)
    log_event(logger, "inspection_started", inspection=inspection_id, checklist=checklist.id)
    return inspection


async def _own_in_progress(conn: AsyncConnection, actor: Actor, inspection_id: int) -> Inspection:
    inspection = await _load(conn, inspection_id)
    if inspection.inspector.id != actor.person.id or inspection.state is not State.IN_PROGRESS:
        raise InspectionOver()
    return inspection


async def answer(
    rt: Runtime,
    actor: Actor,
    inspection_id: int,
    item_id: int,
    result: Result,
    *,
    note: str | None = None,
    photo: PhotoIn | None = None,
) -> Inspection:
    """Record the answer to one item (again, after going back: the new answer counts). A fail
    registers a hazard linked to the inspection, with the item as its description; a fail
    answered again keeps the hazard it already registered.

    The hazard is committed before the result (``hazards.register`` has its own
    transaction), so a crash in between leaves a hazard without its result: the retry finds
    it by the item recorded on it and reuses it rather than registering a second one. A fail
    answered otherwise later keeps its link to the hazard, and the hazard's history records
    the new answer, so the summary and the ledger agree."""
    if note is not None and len(note) > MAX_NOTE:
        note = note[:MAX_NOTE]
    async with rt.db.read() as conn:
        inspection = await _own_in_progress(conn, actor, inspection_id)
    item = next((i for i in inspection.items if i.id == item_id), None)
    if item is None:
        raise InspectionOver()
    earlier = inspection.result_of(item_id)
    hazard_id = earlier.hazard_id if earlier is not None else None
    if hazard_id is not None:
        assert earlier is not None
        stood = earlier.result is Result.FAIL  # the hazard counted as this item's finding
    else:
        # A hazard registered by a fail whose result was never written (a crash between the
        # two transactions) is this item's all the same.
        hazard_id = await hazards.for_inspection_item(rt, inspection.id, item.id)
        stood = hazard_id is not None
    if result is Result.FAIL and hazard_id is None:
        draft = hazards.HazardDraft(
            category=hazards.Category.FIRE if inspection.fire else hazards.Category.OTHER,
            severity=hazards.Severity.ROUTINE,
            description=f"{item.text}" + (f"\n{note}" if note else ""),
            place=inspection.place,
            photos=[photo] if photo is not None else [],
            inspection_id=inspection.id,
            inspection_item=item.id,
        )
        hazard_id = (await hazards.register(rt, actor, draft)).id
        stood = True
    now = rt.now()
    async with rt.db.transaction() as conn:
        await _own_in_progress(conn, actor, inspection_id)
        if hazard_id is not None and stood != (result is Result.FAIL):
            await hazards.record_reanswer(conn, hazard_id, now, actor, result.value)
        values = {
            "result": result.value,
            "note": note,
            "photo_file_id": photo.file_id if photo else None,
            "photo_path": photo.path if photo else None,
            "hazard_id": hazard_id,
            "at": now,
        }
        if earlier is None:
            await conn.execute(
                insert(inspection_results).values(
                    inspection_id=inspection_id, item_id=item_id, **values
                )
            )
        else:
            if result is Result.FAIL and photo is None and note is None:
                values.pop("photo_file_id")
                values.pop("photo_path")
                values.pop("note")
            await conn.execute(
                update(inspection_results)
                .where(
                    inspection_results.c.inspection_id == inspection_id,
                    inspection_results.c.item_id == item_id,
                )
                .values(**values)
            )
        return await _load(conn, inspection_id)


async def finish(rt: Runtime, actor: Actor, inspection_id: int) -> Inspection:
    """Record the walk as done (every item answered)."""
    now = rt.now()
    async with rt.db.transaction() as conn:
        inspection = await _own_in_progress(conn, actor, inspection_id)
        missing = [item for item in inspection.items if inspection.result_of(item.id) is None]
        if missing:
            raise InspectionOver()
        await conn.execute(
            update(inspections)
            .where(inspections.c.id == inspection_id)
            .values(state=State.DONE, finished_at=now)
        )
        await org.record(
            conn,
            now,
            actor,
            "inspection_done",
            f"inspection:{inspection_id}",
            **inspection.counts(),
        )
        done = await _load(conn, inspection_id)
    log_event(logger, "inspection_done", inspection=inspection_id, **done.counts())
    return done


async def abandon(rt: Runtime, actor: Actor, inspection_id: int) -> None:
    """Record a cancelled or timed-out walk as abandoned (a finished one is left alone)."""
    async with rt.db.transaction() as conn:
        await conn.execute(
            update(inspections)
            .where(
                inspections.c.id == inspection_id,
                inspections.c.inspector_id == actor.person.id,
                inspections.c.state == State.IN_PROGRESS,
            )
            .values(state=State.ABANDONED, finished_at=rt.now())
        )
    log_event(logger, "inspection_abandoned", inspection=inspection_id)


async def inspections_done(rt: Runtime, since: datetime, until: datetime) -> list[Inspection]:
    """The inspections finished (state done) in [since, until), oldest first: the evidence the
    compliance calendar counts."""
    async with rt.db.read() as conn:
        ids = (
            await conn.execute(
                select(inspections.c.id)
                .where(
                    inspections.c.state == State.DONE,
                    inspections.c.finished_at >= since,
                    inspections.c.finished_at < until,
                )
                .order_by(inspections.c.finished_at, inspections.c.id)
            )
        ).scalars()
        return [await _load(conn, inspection_id) for inspection_id in list(ids)]
