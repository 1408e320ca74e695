"""Handling a report: the buttons under a report card (in the command group, in private, on an
escalation) and the texts officers and reporters type after pressing one."""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import Application, CallbackQueryHandler

from bot.errors import StaleButton
from bot.outbox import Button
from bot.services import reports
from bot.services.models import Actor, Role
from bot.services.reports import Report
from handlers.common import actor_of, answer_step, ask_in_private, button, pressed, reply
from handlers.context import BotContext
from handlers.prompts import expect, on_answer

ACTION = "rpt:"
# Actions that need a text from the officer: the prompt template for each.
TYPED = {"resolve", "dup", "note", "ask"}


def detail_buttons(
    update: Update, context: BotContext, actor: Actor, report: Report
) -> list[list[Button]]:
    """Handling buttons for someone who may handle ``report`` while it is open; none otherwise."""
    may_handle = actor.has_role(Role.OFFICER, report.unit) or actor.has_role(
        Role.ADMIN, report.unit
    )
    if not may_handle or report.state.closed:
        return []
    rows = reports.card_buttons(context.runtime, actor.locale, report)
    rows.append(
        [
            button(update, context, "reports/buttons/note.j2", f"{ACTION}note:{report.id}"),
            button(update, context, "reports/buttons/ask.j2", f"{ACTION}ask:{report.id}"),
        ]
    )
    return rows


def _parse(data: str) -> tuple[str, list[int]]:
    action, *numbers = data.split(":")
    if not numbers or not all(n.isdigit() for n in numbers):
        raise StaleButton()
    return action, [int(n) for n in numbers]


async def pressed_action(update: Update, context: BotContext) -> None:
    query, data = pressed(update, ACTION)
    action, numbers = _parse(data)
    actor = await actor_of(update, context)
    rt = context.runtime
    report_id = numbers[0]
    if action == "ack" and len(numbers) == 1:
        outcome = await reports.acknowledge(rt, actor, report_id)
        await _answer(update, context, outcome, "reports/done/acknowledged.j2")
    elif action == "assign" and len(numbers) == 1:
        report, officers = await reports.officers_to_assign(rt, actor, report_id)
        await query.answer()
        if not officers:
            await reply(update, context, "reports/no_officers.j2", report=report)
            return
        choices = [
            [
                button(
                    update,
                    context,
                    "reports/buttons/officer.j2",
                    f"{ACTION}to:{report.id}:{o.id}",
                    officer=o,
                )
            ]
            for o in officers
        ]
        await reply(update, context, "reports/choose_officer.j2", report=report, buttons=choices)
    elif action == "to" and len(numbers) == 2:
        outcome = await reports.assign(rt, actor, report_id, numbers[1])
        await _answer(update, context, outcome, "reports/done/assigned.j2")
    elif action in TYPED and len(numbers) == 1:
        report = await reports.for_handling(rt, actor, report_id)
        template = f"reports/prompts/{_PROMPTS[action]}.j2"
        await ask_in_private(update, context, template, cannot=CANNOT, report=report)
        expect(context, action, report_id)
    elif action == "answer" and len(numbers) == 2:
        question = await reports.question_for(rt, actor, report_id, numbers[1])
        await ask_in_private(
            update, context, "reports/prompts/answer.j2", cannot=CANNOT, question=question
        )
        expect(context, action, report_id, numbers[1])
    else:
        raise StaleButton()


_PROMPTS = {"resolve": "resolve", "dup": "duplicate", "note": "note", "ask": "ask"}
CANNOT = "reports/errors/start_private.j2"


async def _answer(
    update: Update, context: BotContext, outcome: reports.Handling, done: str
) -> None:
    await answer_step(
        update,
        context,
        changed=outcome.changed,
        done=done,
        current="reports/state.j2",
        report=outcome.report,
    )


@on_answer("resolve")
async def _resolved(update: Update, context: BotContext, typed: str, args: tuple[Any, ...]) -> None:
    outcome = await reports.resolve(
        context.runtime, await actor_of(update, context), args[0], typed
    )
    await reply(update, context, "reports/done/resolved.j2", report=outcome.report)


@on_answer("dup")
async def _duplicate(
    update: Update, context: BotContext, typed: str, args: tuple[Any, ...]
) -> None:
    outcome = await reports.reject_duplicate(
        context.runtime, await actor_of(update, context), args[0], typed
    )
    await reply(update, context, "reports/done/rejected.j2", report=outcome.report)


@on_answer("note")
async def _noted(update: Update, context: BotContext, typed: str, args: tuple[Any, ...]) -> None:
    await reports.add_note(context.runtime, await actor_of(update, context), args[0], typed)
    await reply(update, context, "reports/done/noted.j2")


@on_answer("ask")
async def _asked(update: Update, context: BotContext, typed: str, args: tuple[Any, ...]) -> None:
    await reports.ask_reporter(context.runtime, await actor_of(update, context), args[0], typed)
    await reply(update, context, "reports/done/asked.j2")


@on_answer("answer")
async def _answered(update: Update, context: BotContext, typed: str, args: tuple[Any, ...]) -> None:
    actor = await actor_of(update, context)
    await reports.answer_question(context.runtime, actor, args[0], args[1], typed)
    await reply(update, context, "reports/done/answered.j2")


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    application.add_handler(CallbackQueryHandler(pressed_action, pattern=f"^{ACTION}"))
