"""``safecampus …``: run the bot and look after its database.

A mistyped setting ends the program with one line naming it and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy.engine import make_url

from bot.errors import DomainError
from bot.logs import configure_logging, log_event
from bot.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from bot.runtime import Runtime

T = TypeVar("T")

logger = logging.getLogger("safecampus")

EXIT_SETTINGS = 2
EXIT_FAILURE = 1


def _fail(message: str, status: int) -> int:
    print(f"safecampus: {message}", file=sys.stderr)
    return status


def _run(settings: Settings) -> int:
    if settings.bot_token is None or not settings.bot_token.get_secret_value().strip():
        return _fail(
            "SAFECAMPUS_BOT_TOKEN is not set: get a token from @BotFather and put it in .env "
            "or the environment",
            EXIT_SETTINGS,
        )
    from telegram.error import InvalidToken, NetworkError

    from bot.app import build_application

    def no_traceback_for_a_setting(record: logging.LogRecord) -> bool:
        # PTB logs a refused token or an unreachable server with a traceback before raising;
        # that is a setting to fix, which we say in one line below.
        if record.exc_info and isinstance(record.exc_info[1], InvalidToken | NetworkError):
            record.exc_info = None
        return True

    logging.getLogger("telegram.ext").addFilter(no_traceback_for_a_setting)
    application = build_application(settings)
    database = make_url(settings.database_url).render_as_string(hide_password=True)
    log_event(logger, "starting", database=database, api=settings.api_base_url)
    try:
        application.run_polling(allowed_updates=None, drop_pending_updates=False)
    except InvalidToken:
        return _fail("SAFECAMPUS_BOT_TOKEN was refused by Telegram: check the token", EXIT_SETTINGS)
    except NetworkError as exc:
        return _fail(
            f"cannot reach Telegram at SAFECAMPUS_API_BASE_URL ({exc}); check the network",
            EXIT_FAILURE,
        )
    return 0


def _db_upgrade(settings: Settings) -> int:
    from bot.store import open_database, upgrade

    async def go() -> None:
        db = open_database(settings.database_url)
        try:
            await upgrade(db)
        finally:
            await db.close()

    asyncio.run(go())
    print("database is up to date")
    return 0


def _import_file(
    settings: Settings,
    path: Path,
    *,
    max_bytes: int | None,
    run: Callable[[Runtime, bytes], Awaitable[T]],
    rejected: type[DomainError],
    errors_template: str,
) -> T | None:
    """Read ``path`` and hand it to ``run`` (after migrating the database). A refused file is
    listed line by line on stderr with the same words an admin gets in Telegram, as plain
    text; None then (nothing was stored)."""
    from bot.runtime import build_runtime
    from bot.store import upgrade

    try:
        data = path.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}", EXIT_FAILURE)
        return None
    if max_bytes is not None and len(data) > max_bytes:
        _fail(f"{path}: too big (at most {max_bytes} bytes)", EXIT_FAILURE)
        return None
    runtime = build_runtime(settings)

    async def go() -> T:
        try:
            await upgrade(runtime.db)
            return await run(runtime, data)
        finally:
            await runtime.db.close()

    try:
        return asyncio.run(go())
    except rejected as exc:
        lines = runtime.renderer.render("en", errors_template, **exc.context)
        count = len(exc.context["errors"])
        print(
            f"safecampus: {path}: not imported, nothing stored; {count} problem(s):",
            file=sys.stderr,
        )
        print(html.unescape(lines), file=sys.stderr)
    except DomainError as exc:
        message = runtime.renderer.render("en", exc.template, **exc.context)
        _fail(f"{path}: {html.unescape(message)}", EXIT_FAILURE)
    return None


def _duty_import(settings: Settings, path: Path) -> int:
    from bot.services import duty

    summary = _import_file(
        settings,
        path,
        max_bytes=None,
        run=lambda rt, data: duty.import_roster(rt, None, data, path.name, source="cli"),
        rejected=duty.RosterRejected,
        errors_template="duty/row_errors.j2",
    )
    if summary is None:
        return EXIT_FAILURE
    print(
        f"imported {summary.rows} assignments for {summary.people} people, "
        f"{summary.first_date} to {summary.last_date} ({summary.days} days); "
        f"replaced {summary.replaced} earlier assignments for these dates"
    )
    for person in summary.unreachable:
        # Not an error: the roster stands, but the bot cannot write to them first.
        print(f"warning: {person.full_name} has never opened the bot: no duty reminders")
    return 0


def _checklist_import(settings: Settings, path: Path) -> int:
    from bot.services import inspections

    summary = _import_file(
        settings,
        path,
        max_bytes=inspections.MAX_FILE_BYTES,
        run=lambda rt, data: inspections.import_checklists(rt, None, data, path.name),
        rejected=inspections.ChecklistRejected,
        errors_template="inspections/line_errors.j2",
    )
    if summary is None:
        return EXIT_FAILURE
    print(f"imported {summary.items} item(s)")
    for name in summary.created:
        print(f"new checklist: {name}")
    for name in summary.replaced:
        print(f"replaced the items of: {name} (earlier inspections keep theirs)")
    return 0


def _plan(settings: Settings, action: str, path: Path | None) -> int:
    from bot.services import reminders

    if action == "import":
        assert path is not None
        summary = _import_file(
            settings,
            path,
            max_bytes=reminders.MAX_FILE_BYTES,
            run=lambda rt, data: reminders.import_plan(rt, None, data),
            rejected=reminders.PlanRejected,
            errors_template="reminders/line_errors.j2",
        )
        if summary is None:
            return EXIT_FAILURE
        print(f"imported {len(summary.created)} new rule(s), replaced {len(summary.replaced)}")
        return 0
    print(_on_database(settings, reminders.export_plan), end="")
    return 0


def _preset(settings: Settings, name: str) -> int:
    from bot.services import compliance

    async def load(runtime: Runtime) -> tuple[bool, str]:
        try:
            loaded = await compliance.load_preset(runtime, None, name)
        except DomainError as exc:
            return False, runtime.renderer.render("en", exc.template, **exc.context)
        shown = runtime.renderer.render(
            "en", "compliance/preset_loaded.j2", preset=name, loaded=loaded
        )
        return True, shown

    loaded, shown = _on_database(settings, load)
    if not loaded:
        return _fail(html.unescape(shown), EXIT_FAILURE)
    print(html.unescape(shown))
    return 0


def _on_database(settings: Settings, work: Callable[[Runtime], Awaitable[T]]) -> T:
    """Run ``work`` on a runtime over the migrated database, then close it."""
    from bot.runtime import build_runtime
    from bot.store import upgrade

    runtime = build_runtime(settings)

    async def go() -> T:
        try:
            await upgrade(runtime.db)
            return await work(runtime)
        finally:
            await runtime.db.close()

    return asyncio.run(go())


def _checkpoints_qr(settings: Settings, out: Path, bot_username: str) -> int:
    from bot.runtime import build_runtime
    from bot.services import patrols
    from bot.store import upgrade

    runtime = build_runtime(settings)

    async def go() -> list[patrols.Checkpoint]:
        try:
            await upgrade(runtime.db)
            return await patrols.active_checkpoints(runtime)
        finally:
            await runtime.db.close()

    found = asyncio.run(go())
    written = patrols.write_qr_codes(found, out, bot_username.lstrip("@"))
    print(f"wrote {len(found)} QR code(s) and the printable sheet {written[-1]}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="safecampus",
        description="SafeCampus: campus safety work in Telegram. Settings come from the "
        "environment or .env (SAFECAMPUS_*); see README.md.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    commands.add_parser("run", help="upgrade the database, then run the bot (long polling)")
    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="db-command")
    db_commands.add_parser("upgrade", help="create or migrate the database to the newest schema")
    duty = commands.add_parser("duty", help="duty roster")
    duty_commands = duty.add_subparsers(dest="duty_command", required=True, metavar="duty-command")
    duty_import = duty_commands.add_parser(
        "import",
        help="replace the roster of the dates a CSV file covers (columns date,shift,role,person)",
    )
    duty_import.add_argument("file", type=Path, help="the roster, a UTF-8 CSV file")
    checklist = commands.add_parser("checklist", help="inspection checklists")
    checklist_commands = checklist.add_subparsers(
        dest="checklist_command", required=True, metavar="checklist-command"
    )
    checklist_import = checklist_commands.add_parser(
        "import",
        help="add checklist templates from a YAML or text file (a known name gets the new items)",
    )
    checklist_import.add_argument(
        "file", type=Path, help="YAML (name:, items:) or text (name, then one item per line)"
    )
    plan = commands.add_parser("plan", help="reminder rules (提醒)")
    plan_commands = plan.add_subparsers(dest="plan_command", required=True, metavar="plan-command")
    plan_import = plan_commands.add_parser(
        "import", help="add or replace reminder rules from a YAML plan (checked whole)"
    )
    plan_import.add_argument("file", type=Path, help="the plan, a UTF-8 YAML file")
    plan_commands.add_parser("export", help="print every reminder rule as a YAML plan")
    plan_preset = plan_commands.add_parser(
        "preset",
        help="load a built-in plan: its assessment obligations and reminders (twice = once)",
    )
    plan_preset.add_argument("name", help="the built-in plan: pingan-campus (平安校园)")
    checkpoints = commands.add_parser("checkpoints", help="patrol checkpoints")
    checkpoint_commands = checkpoints.add_subparsers(
        dest="checkpoints_command", required=True, metavar="checkpoints-command"
    )
    qr = checkpoint_commands.add_parser(
        "qr", help="write a QR code PNG per active checkpoint and a printable index.html"
    )
    qr.add_argument("--out", type=Path, required=True, help="the folder to write into")
    # Given, not asked of Telegram: printing must work offline and without the bot's token.
    qr.add_argument(
        "--bot-username", required=True, help="the bot's @username, which the links point at"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``safecampus`` console script."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        return _fail(str(exc), EXIT_SETTINGS)
    configure_logging(settings.log_level_number)
    from sqlalchemy.exc import SQLAlchemyError

    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _fail(
            f"SAFECAMPUS_DATA_DIR: cannot create {settings.data_dir}: {exc.strerror}", EXIT_SETTINGS
        )
    try:
        if args.command == "run":
            return _run(settings)
        if args.command == "checkpoints":
            return _checkpoints_qr(settings, args.out, args.bot_username)
        if args.command == "plan":
            if args.plan_command == "preset":
                return _preset(settings, args.name)
            return _plan(settings, args.plan_command, getattr(args, "file", None))
        if args.command == "checklist":
            return _checklist_import(settings, args.file)
        if args.command == "duty":
            return _duty_import(settings, args.file)
        return _db_upgrade(settings)
    except (SQLAlchemyError, OSError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return _fail(f"cannot open the database at SAFECAMPUS_DATABASE_URL: {first_line}", 1)


if __name__ == "__main__":
    sys.exit(main())
