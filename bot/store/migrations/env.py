"""Alembic environment: always runs on the connection that bot.store.migrate hands over."""

from alembic import context

from bot.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("Run migrations with `safecampus db upgrade`, not the alembic command.")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
context.run_migrations()
