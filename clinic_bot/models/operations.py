"""Operator records: what retention removed and which data-subject requests were carried out."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from clinic_bot.core.db import Base, UTCDateTime
from clinic_bot.models.core import utcnow


class AuditEntry(Base):
    """One operator action kept for audit: an erasure, an export, a retention run.

    `subject` never holds a phone number: an erased patient is named by their former id and a
    keyed hash of the phone (so a repeated request can be recognised without keeping the phone).
    """

    __tablename__ = "audit_entry"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    action: Mapped[str] = mapped_column(String(40))  # patient_erase | patient_export | retention
    subject: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[dict] = mapped_column(JSON, default=dict)  # counts only, never content

    __table_args__ = (Index("ix_audit_entry_action_at", "action", "at"),)
