"""patrols

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 22:21:04.971528
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.store.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("radius_m", sa.Integer(), server_default="50", nullable=False),
        sa.Column("token", sa.String(length=48), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("1"), nullable=False),
        sa.Column("created_at", bot.store.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", bot.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["units.id"], name=op.f("fk_checkpoints_unit_id_units")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoints")),
        sa.UniqueConstraint("name", name=op.f("uq_checkpoints_name")),
        sa.UniqueConstraint("token", name=op.f("uq_checkpoints_token")),
    )
    op.create_table(
        "patrol_routes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("checkpoint_ids", sa.JSON(), nullable=False),
        sa.Column("window_start", sa.String(length=5), nullable=False),
        sa.Column("window_end", sa.String(length=5), nullable=False),
        sa.Column("every_hours", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.text("1"), nullable=False),
        sa.Column("created_at", bot.store.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", bot.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["units.id"], name=op.f("fk_patrol_routes_unit_id_units")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patrol_routes")),
        sa.UniqueConstraint("name", name=op.f("uq_patrol_routes_name")),
    )
    op.create_table(
        "patrol_rounds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("route_id", sa.Integer(), nullable=False),
        sa.Column("window_start", bot.store.types.UTCDateTime(), nullable=False),
        sa.Column("window_end", bot.store.types.UTCDateTime(), nullable=False),
        sa.Column("started_by", sa.Integer(), nullable=True),
        sa.Column("started_at", bot.store.types.UTCDateTime(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("summary_sent_at", bot.store.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["route_id"], ["patrol_routes.id"], name=op.f("fk_patrol_rounds_route_id_patrol_routes")
        ),
        sa.ForeignKeyConstraint(
            ["started_by"], ["people.id"], name=op.f("fk_patrol_rounds_started_by_people")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patrol_rounds")),
        sa.UniqueConstraint("route_id", "window_start", name="uq_patrol_rounds_route_window"),
    )
    op.create_table(
        "checkins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("checkpoint_id", sa.Integer(), nullable=True),
        sa.Column("guard_id", sa.Integer(), nullable=False),
        sa.Column("sent_at", bot.store.types.UTCDateTime(), nullable=False),
        sa.Column("scanned_at", bot.store.types.UTCDateTime(), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("distance_m", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=True),
        sa.Column("live", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("photo_path", sa.String(length=256), nullable=True),
        sa.Column("round_id", sa.Integer(), nullable=True),
        sa.Column("created_at", bot.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["checkpoints.id"],
            name=op.f("fk_checkins_checkpoint_id_checkpoints"),
        ),
        sa.ForeignKeyConstraint(
            ["guard_id"], ["people.id"], name=op.f("fk_checkins_guard_id_people")
        ),
        sa.ForeignKeyConstraint(
            ["round_id"], ["patrol_rounds.id"], name=op.f("fk_checkins_round_id_patrol_rounds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkins")),
    )
    with op.batch_alter_table("checkins", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_checkins_checkpoint_id"), ["checkpoint_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_checkins_sent_at"), ["sent_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("checkins", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_checkins_sent_at"))
        batch_op.drop_index(batch_op.f("ix_checkins_checkpoint_id"))

    op.drop_table("checkins")
    op.drop_table("patrol_rounds")
    op.drop_table("patrol_routes")
    op.drop_table("checkpoints")
