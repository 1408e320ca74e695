"""Storage: SQLAlchemy Core tables, the async engine and Alembic migrations."""

from bot.store.engine import Database, open_database
from bot.store.migrate import upgrade

__all__ = ["Database", "open_database", "upgrade"]
