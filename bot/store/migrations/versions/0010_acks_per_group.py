"""an acknowledgement per person and group

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 01:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reminder_acks", schema=None) as batch_op:
        batch_op.drop_constraint("uq_reminder_acks_person", type_="unique")
        batch_op.create_unique_constraint(
            "uq_reminder_acks_person", ["occurrence_id", "person_id", "group_id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("reminder_acks", schema=None) as batch_op:
        batch_op.drop_constraint("uq_reminder_acks_person", type_="unique")
        batch_op.create_unique_constraint("uq_reminder_acks_person", ["occurrence_id", "person_id"])
