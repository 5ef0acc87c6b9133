"""The sandbox gateway's own record of every chat message, shared by all web processes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from clinic_bot.core.db import Base, UTCDateTime
from clinic_bot.models.core import utcnow


class SandboxMessage(Base):
    """One message in a simulated patient's chat: `in` from the patient, `out` from the clinic."""

    __tablename__ = "sandbox_message"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(String(100), unique=True)
    phone: Mapped[str] = mapped_column(String(20))
    direction: Mapped[str] = mapped_column(String(3))  # in | out
    kind: Mapped[str] = mapped_column(String(40))  # text, interactive, document, reply, …
    payload: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default="sent")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_sandbox_phone", "phone", "id"),)
