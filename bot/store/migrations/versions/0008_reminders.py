"""reminders

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 23:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.store.types

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reminder_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("schedule", sa.JSON(), nullable=False),
        sa.Column("leads", sa.JSON(), nullable=False),
        sa.Column("target_purpose", sa.String(length=16), nullable=True),
        sa.Column("target_unit_id", sa.Integer(), nullable=False),
        sa.Column("target_role", sa.String(length=16), nullable=True),
        sa.Column("ask_ack", sa.Boolean(), nullable=False),
        sa.Column("follow_up_s", sa.Integer(), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", bot.store.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", bot.store.types.UTCDateTime(), nullable=False),
        sa.Column("planned_from", bot.store.types.UTCDateTime(), nullable=False),
        sa.Column("deleted_at", bot.store.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"], ["people.id"], name=op.f("fk_reminder_rules_created_by_people")
        ),
        sa.ForeignKeyConstraint(
            ["target_unit_id"], ["units.id"], name=op.f("fk_reminder_rules_target_unit_id_units")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminder_rules")),
    )
    op.create_table(
        "reminder_occurrences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("due_at", bot.store.types.UTCDateTime(), nullable=False),
        sa.Column("lead_s", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("done_at", bot.store.types.UTCDateTime(), nullable=False),
        sa.Column("follow_up_at", bot.store.types.UTCDateTime(), nullable=True),
        sa.Column("followed_up_at", bot.store.types.UTCDateTime(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["reminder_rules.id"],
            name=op.f("fk_reminder_occurrences_rule_id_reminder_rules"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminder_occurrences")),
        sa.UniqueConstraint("rule_id", "due_at", "lead_s", name="uq_reminder_occurrences_key"),
    )
    with op.batch_alter_table("reminder_occurrences", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reminder_occurrences_follow_up_at"), ["follow_up_at"], unique=False
        )
    op.create_table(
        "reminder_acks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("occurrence_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("at", bot.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name=op.f("fk_reminder_acks_group_id_groups")
        ),
        sa.ForeignKeyConstraint(
            ["occurrence_id"],
            ["reminder_occurrences.id"],
            name=op.f("fk_reminder_acks_occurrence_id_reminder_occurrences"),
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name=op.f("fk_reminder_acks_person_id_people")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminder_acks")),
        sa.UniqueConstraint("occurrence_id", "person_id", name="uq_reminder_acks_person"),
    )


def downgrade() -> None:
    op.drop_table("reminder_acks")
    with op.batch_alter_table("reminder_occurrences", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reminder_occurrences_follow_up_at"))
    op.drop_table("reminder_occurrences")
    op.drop_table("reminder_rules")
