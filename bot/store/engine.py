"""The async engine and the unit of work (one transaction) that services run in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

# A connection's `info` key that says "this transaction queued outgoing messages".
OUTBOX_PENDING = "outbox_pending"
_WRITE = "safecampus_write"
BUSY_TIMEOUT_MS = 10_000


class Database:
    """The one handle services get: opens read and write transactions on the engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._on_outbox_commit: list[Callable[[], None]] = []

    def on_outbox_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after each commit of a transaction that queued outbox messages."""
        self._on_outbox_commit.append(callback)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        async with self.engine.connect() as conn:
            await conn.execution_options(**{_WRITE: True})
            async with conn.begin():
                yield conn
            if conn.info.pop(OUTBOX_PENDING, False):
                for callback in self._on_outbox_commit:
                    callback()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction (a consistent snapshot)."""
        async with self.engine.connect() as conn, conn.begin():
            yield conn

    async def close(self) -> None:
        await self.engine.dispose()


def _prepare_sqlite(engine: AsyncEngine) -> None:
    """WAL, foreign keys, a busy timeout, and BEGIN IMMEDIATE for writes.

    Writers take the lock when their transaction starts, so two writers wait for each other
    (busy timeout) instead of failing half-way with "database is locked".
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN, not the driver (see SQLAlchemy's aiosqlite
        # notes on transactional DDL).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def open_database(url: str) -> Database:
    """Create the engine for ``url``; for a SQLite file, create its folder if missing."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url)
        _prepare_sqlite(engine)
    else:
        engine = create_async_engine(url, pool_pre_ping=True)
    return Database(engine)
