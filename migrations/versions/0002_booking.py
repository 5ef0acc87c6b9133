"""booking: a patient/time index and an ends-not-before-start guard on appointments

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 02:06:48.845525
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("appointment", schema=None) as batch_op:
        batch_op.create_index(
            "ix_appointment_patient_time", ["patient_id", "starts_at"], unique=False
        )
        batch_op.create_check_constraint(
            "ck_appointment_ends_not_before_start", "ends_at >= starts_at"
        )


def downgrade() -> None:
    with op.batch_alter_table("appointment", schema=None) as batch_op:
        batch_op.drop_constraint("ck_appointment_ends_not_before_start", type_="check")
        batch_op.drop_index("ix_appointment_patient_time")
