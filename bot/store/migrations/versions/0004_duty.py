"""duty

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 22:20:24.292340
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.store.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "duty_imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("imported_by", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("file_name", sa.String(length=256), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("first_date", sa.Date(), nullable=False),
        sa.Column("last_date", sa.Date(), nullable=False),
        sa.Column("at", bot.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["imported_by"], ["people.id"], name=op.f("fk_duty_imports_imported_by_people")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_duty_imports")),
    )
    op.create_table(
        "duty_shifts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("import_id", sa.Integer(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("shift", sa.String(length=16), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("starts_at", bot.store.types.UTCDateTime(), nullable=False),
        sa.Column("ends_at", bot.store.types.UTCDateTime(), nullable=False),
        sa.Column("replaced_at", bot.store.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["import_id"], ["duty_imports.id"], name=op.f("fk_duty_shifts_import_id_duty_imports")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name=op.f("fk_duty_shifts_person_id_people")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_duty_shifts")),
    )
    with op.batch_alter_table("duty_shifts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_duty_shifts_date"), ["date"], unique=False)
        batch_op.create_index("ix_duty_shifts_window", ["starts_at", "ends_at"], unique=False)

    op.create_table(
        "handovers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("shift_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("at", bot.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name=op.f("fk_handovers_person_id_people")
        ),
        sa.ForeignKeyConstraint(
            ["shift_id"], ["duty_shifts.id"], name=op.f("fk_handovers_shift_id_duty_shifts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handovers")),
    )
    with op.batch_alter_table("handovers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_handovers_at"), ["at"], unique=False)

    op.create_table(
        "duty_reminders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("shift", sa.String(length=16), nullable=False),
        sa.Column("starts_at", bot.store.types.UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("done_at", bot.store.types.UTCDateTime(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_duty_reminders")),
        sa.UniqueConstraint("date", "shift", name="uq_duty_reminders_date_shift"),
    )


def downgrade() -> None:
    op.drop_table("duty_reminders")
    with op.batch_alter_table("handovers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_handovers_at"))

    op.drop_table("handovers")
    with op.batch_alter_table("duty_shifts", schema=None) as batch_op:
        batch_op.drop_index("ix_duty_shifts_window")
        batch_op.drop_index(batch_op.f("ix_duty_shifts_date"))

    op.drop_table("duty_shifts")
    op.drop_table("duty_imports")
