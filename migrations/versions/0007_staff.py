"""staff: server-side sessions, login throttle, audit log, handoff staff activity, staff fields

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 09:30:00
"""

import sqlalchemy as sa
from alembic import op

import clinic_bot.core.db

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UTC = clinic_bot.core.db.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "staff_session",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("staff_user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("last_seen_at", UTC(timezone=True), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["staff_user_id"], ["staff_user.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id_hash"),
    )
    op.create_index("ix_staff_session_staff_user_id", "staff_session", ["staff_user_id"])
    op.create_table(
        "login_failure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("at", UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_login_failure_key_at", "login_failure", ["key", "at"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", UTC(timezone=True), nullable=False),
        sa.Column("staff_user_id", sa.Integer(), nullable=True),
        sa.Column("staff_email", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_action", "audit_log", ["action"])
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.add_column(sa.Column("handoff_staff_at", UTC(timezone=True), nullable=True))
    with op.batch_alter_table("staff_user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_name", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("disabled_at", UTC(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column(
                "must_change_password", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("staff_user", schema=None) as batch_op:
        batch_op.drop_column("must_change_password")
        batch_op.drop_column("disabled_at")
        batch_op.drop_column("first_name")
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.drop_column("handoff_staff_at")
    op.drop_index("ix_audit_log_action", table_name="audit_log")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_login_failure_key_at", table_name="login_failure")
    op.drop_table("login_failure")
    op.drop_index("ix_staff_session_staff_user_id", table_name="staff_session")
    op.drop_table("staff_session")
