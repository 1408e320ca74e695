"""hazards

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 22:47:49.212292
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.store.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hazards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reporter_id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=True),
        sa.Column("severity", sa.String(length=16), nullable=True),
        sa.Column("place", sa.String(length=256), server_default="", nullable=False),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("checkpoint_id", sa.Integer(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("responsible_unit_id", sa.Integer(), nullable=True),
        sa.Column("deadline", bot.store.types.UTCDateTime(), nullable=True),
        sa.Column("interim_measures", sa.Text(), nullable=True),
        sa.Column("inspection_id", sa.Integer(), nullable=True),
        sa.Column("confirmed", sa.Boolean(), server_default=sa.text("1"), nullable=False),
        sa.Column("fixed_by", sa.Integer(), nullable=True),
        sa.Column("created_at", bot.store.types.UTCDateTime(), nullable=False),
        sa.Column("assigned_at", bot.store.types.UTCDateTime(), nullable=True),
        sa.Column("closed_at", bot.store.types.UTCDateTime(), nullable=True),
        sa.Column("remind_at", bot.store.types.UTCDateTime(), nullable=True),
        sa.Column("escalate_at", bot.store.types.UTCDateTime(), nullable=True),
        sa.Column("escalations", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"], ["checkpoints.id"], name=op.f("fk_hazards_checkpoint_id_checkpoints")
        ),
        sa.ForeignKeyConstraint(
            ["fixed_by"], ["people.id"], name=op.f("fk_hazards_fixed_by_people")
        ),
        sa.ForeignKeyConstraint(
            ["reporter_id"], ["people.id"], name=op.f("fk_hazards_reporter_id_people")
        ),
        sa.ForeignKeyConstraint(
            ["responsible_unit_id"], ["units.id"], name=op.f("fk_hazards_responsible_unit_id_units")
        ),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name=op.f("fk_hazards_unit_id_units")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hazards")),
    )
    with op.batch_alter_table("hazards", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hazards_escalate_at"), ["escalate_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_hazards_inspection_id"), ["inspection_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_hazards_remind_at"), ["remind_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_hazards_state"), ["state"], unique=False)

    op.create_table(
        "hazard_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hazard_id", sa.Integer(), nullable=False),
        sa.Column("at", bot.store.types.UTCDateTime(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["people.id"], name=op.f("fk_hazard_events_actor_id_people")
        ),
        sa.ForeignKeyConstraint(
            ["hazard_id"], ["hazards.id"], name=op.f("fk_hazard_events_hazard_id_hazards")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hazard_events")),
    )
    with op.batch_alter_table("hazard_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hazard_events_hazard_id"), ["hazard_id"], unique=False)

    op.create_table(
        "hazard_photos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hazard_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("file_id", sa.String(length=256), nullable=False),
        sa.Column("file_unique_id", sa.String(length=128), nullable=False),
        sa.Column("size", sa.Integer(), nullable=True),
        sa.Column("path", sa.String(length=256), nullable=True),
        sa.Column("note", sa.String(length=256), nullable=True),
        sa.Column("added_by", sa.Integer(), nullable=True),
        sa.Column("received_at", bot.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["added_by"], ["people.id"], name=op.f("fk_hazard_photos_added_by_people")
        ),
        sa.ForeignKeyConstraint(
            ["hazard_id"], ["hazards.id"], name=op.f("fk_hazard_photos_hazard_id_hazards")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hazard_photos")),
    )
    with op.batch_alter_table("hazard_photos", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hazard_photos_hazard_id"), ["hazard_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hazard_photos", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hazard_photos_hazard_id"))

    op.drop_table("hazard_photos")
    with op.batch_alter_table("hazard_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hazard_events_hazard_id"))

    op.drop_table("hazard_events")
    with op.batch_alter_table("hazards", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hazards_state"))
        batch_op.drop_index(batch_op.f("ix_hazards_remind_at"))
        batch_op.drop_index(batch_op.f("ix_hazards_inspection_id"))
        batch_op.drop_index(batch_op.f("ix_hazards_escalate_at"))

    op.drop_table("hazards")
