"""The store: SQLite opened the way the architecture promises, migrations from scratch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from bot.store import Database, open_database, upgrade
from bot.store.tables import metadata, units


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated database on a real SQLite file."""
    database = open_database(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    await upgrade(database)
    yield database
    await database.close()


async def test_sqlite_runs_in_wal_with_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    db = open_database(f"sqlite+aiosqlite:///{tmp_path}/new/dir/x.db")
    try:
        async with db.read() as conn:
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
            foreign_keys = (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one()
            synchronous = (await conn.execute(text("PRAGMA synchronous"))).scalar_one()
            busy = (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one()
        assert (mode, foreign_keys, synchronous) == ("wal", 1, 1)  # 1 = NORMAL
        assert busy >= 5000
    finally:
        await db.close()


async def test_migrations_create_every_table_and_are_idempotent(db: Database) -> None:
    await upgrade(db)
    await upgrade(db)
    async with db.read() as conn:
        names = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    assert set(metadata.tables) <= names
    assert len(version) == 1


async def test_the_migrations_build_exactly_the_tables_the_code_declares(db: Database) -> None:
    """A column, index or constraint added to tables.py without a migration shows up here."""
    await upgrade(db)
    async with db.read() as conn:
        drift = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    assert drift == []


async def test_foreign_keys_are_enforced_and_a_failed_write_changes_nothing(db: Database) -> None:
    now = datetime.now(UTC)

    async def a_unit_then_an_orphan() -> None:
        async with db.transaction() as conn:
            await conn.execute(
                insert(units).values(name="a", kind="unit", id_path="/", created_at=now)
            )
            await conn.execute(
                insert(units).values(
                    parent_id=999, name="b", kind="unit", id_path="/", created_at=now
                )
            )

    with pytest.raises(IntegrityError, match="FOREIGN KEY"):
        await a_unit_then_an_orphan()
    async with db.read() as conn:
        assert (await conn.execute(select(units))).all() == []


async def test_concurrent_writers_wait_for_each_other(db: Database) -> None:
    now = datetime.now(UTC)

    async def write(n: int) -> None:
        async with db.transaction() as conn:
            await conn.execute(
                insert(units).values(name=f"u{n}", kind="unit", id_path="/", created_at=now)
            )
            await asyncio.sleep(0.01)  # hold the write lock across an await

    await asyncio.gather(*(write(n) for n in range(20)))
    async with db.read() as conn:
        assert len((await conn.execute(select(units))).all()) == 20


async def test_naive_datetimes_are_refused(db: Database) -> None:
    naive = insert(units).values(
        name="a", kind="unit", id_path="/", created_at=datetime(2026, 1, 1)
    )
    async with db.transaction() as conn:
        with pytest.raises(StatementError, match="naive"):
            await conn.execute(naive)
