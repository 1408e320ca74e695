"""Alembic migrations; one file per schema change in versions/."""
