"""allclear

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 22:06:43.493039
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.store.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "allclears",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("period_key", sa.String(length=32), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("at", bot.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name=op.f("fk_allclears_person_id_people")
        ),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name=op.f("fk_allclears_unit_id_units")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allclears")),
        sa.UniqueConstraint("unit_id", "period_key", name="uq_allclears_unit_period"),
    )

    op.create_table(
        "allclear_rounds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period_key", sa.String(length=32), nullable=False),
        sa.Column("step", sa.String(length=16), nullable=False),
        sa.Column("opens_at", bot.store.types.UTCDateTime(), nullable=False),
        sa.Column("closes_at", bot.store.types.UTCDateTime(), nullable=False),
        sa.Column("done_at", bot.store.types.UTCDateTime(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allclear_rounds")),
        sa.UniqueConstraint("period_key", "step", name="uq_allclear_rounds_period_step"),
    )


def downgrade() -> None:
    op.drop_table("allclear_rounds")
    op.drop_table("allclears")
