"""reports

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 22:02:13.220655
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.store.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reporter_id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("anonymous", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("assignee_id", sa.Integer(), nullable=True),
        sa.Column("duplicate_of", sa.Integer(), nullable=True),
        sa.Column("created_at", bot.store.types.UTCDateTime(), nullable=False),
        sa.Column("ack_deadline", bot.store.types.UTCDateTime(), nullable=False),
        sa.Column("acknowledged_at", bot.store.types.UTCDateTime(), nullable=True),
        sa.Column("closed_at", bot.store.types.UTCDateTime(), nullable=True),
        sa.Column("escalate_at", bot.store.types.UTCDateTime(), nullable=True),
        sa.Column("escalations", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["assignee_id"], ["people.id"], name=op.f("fk_reports_assignee_id_people")
        ),
        sa.ForeignKeyConstraint(
            ["duplicate_of"], ["reports.id"], name=op.f("fk_reports_duplicate_of_reports")
        ),
        sa.ForeignKeyConstraint(
            ["reporter_id"], ["people.id"], name=op.f("fk_reports_reporter_id_people")
        ),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name=op.f("fk_reports_unit_id_units")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reports")),
    )
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reports_escalate_at"), ["escalate_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_reports_status"), ["status"], unique=False)

    op.create_table(
        "report_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("at", bot.store.types.UTCDateTime(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["people.id"], name=op.f("fk_report_events_actor_id_people")
        ),
        sa.ForeignKeyConstraint(
            ["report_id"], ["reports.id"], name=op.f("fk_report_events_report_id_reports")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_events")),
    )
    with op.batch_alter_table("report_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_report_events_report_id"), ["report_id"], unique=False)

    op.create_table(
        "report_photos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.String(length=256), nullable=False),
        sa.Column("file_unique_id", sa.String(length=128), nullable=False),
        sa.Column("size", sa.Integer(), nullable=True),
        sa.Column("path", sa.String(length=256), nullable=True),
        sa.Column("note", sa.String(length=256), nullable=True),
        sa.Column("received_at", bot.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"], ["reports.id"], name=op.f("fk_report_photos_report_id_reports")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_photos")),
    )
    with op.batch_alter_table("report_photos", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_report_photos_report_id"), ["report_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("report_photos", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_report_photos_report_id"))

    op.drop_table("report_photos")
    with op.batch_alter_table("report_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_report_events_report_id"))

    op.drop_table("report_events")
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reports_status"))
        batch_op.drop_index(batch_op.f("ix_reports_escalate_at"))

    op.drop_table("reports")
