"""Broadcasts: one staff-written text to many patients, and one row per recipient."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from clinic_bot.core.db import Base, UTCDateTime
from clinic_bot.models.core import utcnow


class Broadcast(Base):
    """A paced send of one text; progress is counted from its recipient rows."""

    __tablename__ = "broadcast"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    # running -> done | paused (by staff or a run of gateway refusals) | cancelled
    status: Mapped[str] = mapped_column(String(20), default="running")
    status_reason: Mapped[str | None] = mapped_column(Text)
    audience: Mapped[str] = mapped_column(String(200), default="phones")
    total: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Refusals before this instant (the last resume) do not count towards a new pause.
    resumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_broadcast_status", "status"),)


class BroadcastRecipient(Base):
    """One patient of one broadcast; queued in the transaction that writes its outbox row."""

    __tablename__ = "broadcast_recipient"

    id: Mapped[int] = mapped_column(primary_key=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcast.id", ondelete="CASCADE"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    # pending -> queued (outbox row written; its status tells sent/failed) | skipped | cancelled
    status: Mapped[str] = mapped_column(String(20), default="pending")
    reason: Mapped[str | None] = mapped_column(Text)
    outbox_key: Mapped[str | None] = mapped_column(String(300))
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # its paced send slot

    __table_args__ = (
        UniqueConstraint("broadcast_id", "patient_id", name="uq_broadcast_recipient"),
        Index("ix_broadcast_recipient_status", "broadcast_id", "status", "id"),
        Index("ix_broadcast_recipient_slot", "scheduled_at"),
    )
