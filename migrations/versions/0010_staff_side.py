"""staff side: inbox events indexed by chat, staff notes, API tokens' last use

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 12:30:00
"""

import sqlalchemy as sa
from alembic import op

import clinic_bot.core.db

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BATCH = 1000
MAX_CHAT_ID = 100


def _chat_of(kind: str, item) -> str | None:
    """The chat a stored item belongs to, as intake now records it (frozen here on purpose:
    a migration must keep doing what it did when later code changes)."""
    if not isinstance(item, dict):
        return None
    chat = item.get("chat_id")
    if not (isinstance(chat, str) and chat) and kind == "statuses":
        chat = item.get("recipient_id")
    if not (isinstance(chat, str) and chat) and kind == "messages":
        sender = item.get("from")
        chat = f"{sender}@s.whatsapp.net" if isinstance(sender, str) and sender.isdigit() else None
    if not isinstance(chat, str) or not chat or len(chat) > MAX_CHAT_ID:
        return None
    return chat


def _backfill_chat_ids() -> None:
    """Fill inbox_event.chat_id from the stored payloads, a batch of rows at a time."""
    conn = op.get_bind()
    events = sa.table(
        "inbox_event",
        sa.column("id", sa.Integer),
        sa.column("kind", sa.String),
        sa.column("payload", sa.JSON),
        sa.column("chat_id", sa.String),
    )
    last = 0
    while True:
        rows = conn.execute(
            sa.select(events.c.id, events.c.kind, events.c.payload)
            .where(events.c.id > last)
            .order_by(events.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        last = rows[-1].id
        found = [
            {"row_id": r.id, "chat": chat}
            for r in rows
            if (chat := _chat_of(r.kind, r.payload)) is not None
        ]
        if found:
            conn.execute(
                events.update()
                .where(events.c.id == sa.bindparam("row_id"))
                .values(chat_id=sa.bindparam("chat")),
                found,
            )


def upgrade() -> None:
    with op.batch_alter_table("inbox_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("chat_id", sa.String(length=100), nullable=True))
    _backfill_chat_ids()
    # Created after the backfill, so the updates above do not maintain it row by row.
    op.create_index("ix_inbox_chat", "inbox_event", ["chat_id", "id"])
    op.create_table(
        "staff_note",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("staff_user_id", sa.Integer(), nullable=True),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patient.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_staff_note_patient", "staff_note", ["patient_id", "created_at"])
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("last_used_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=True)
        )
        # Every token made before roles existed could call every route: it stays an admin token.
        batch_op.add_column(
            sa.Column("role", sa.String(length=20), nullable=False, server_default="admin")
        )


def downgrade() -> None:
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.drop_column("role")
        batch_op.drop_column("last_used_at")
    op.drop_index("ix_staff_note_patient", table_name="staff_note")
    op.drop_table("staff_note")
    op.drop_index("ix_inbox_chat", table_name="inbox_event")
    with op.batch_alter_table("inbox_event", schema=None) as batch_op:
        batch_op.drop_column("chat_id")
