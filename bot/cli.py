"""``safecampus …``: run the bot and look after its database.

A mistyped setting ends the program with one line naming it and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from sqlalchemy.engine import make_url

from bot.logs import configure_logging, log_event
from bot.settings import Settings, SettingsError, load_settings

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
        return _db_upgrade(settings)
    except (SQLAlchemyError, OSError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return _fail(f"cannot open the database at SAFECAMPUS_DATABASE_URL: {first_line}", 1)


if __name__ == "__main__":
    sys.exit(main())
