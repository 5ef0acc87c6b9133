"""Staff-side tables: server-side sessions, failed logins (the throttle), the audit log, notes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from clinic_bot.core.db import Base, UTCDateTime
from clinic_bot.models.core import utcnow


class StaffSession(Base):
    """One logged-in browser; the cookie holds a random id whose SHA-256 is the key here.

    Deleting the row ends the session: logout, a password change, a disabled user, idle expiry.
    """

    __tablename__ = "staff_session"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    staff_user_id: Mapped[int] = mapped_column(
        ForeignKey("staff_user.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    address: Mapped[str] = mapped_column(String(64), default="")


class LoginFailure(Base):
    """One failed login attempt under one throttle key (account, account+address, address)."""

    __tablename__ = "login_failure"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(300))
    at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_login_failure_key_at", "key", "at"),)


class AuditEntry(Base):
    """An append-only record of one staff action: who, what, when, from where."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    staff_user_id: Mapped[int | None] = mapped_column(Integer)  # no FK: rows outlive users
    staff_email: Mapped[str] = mapped_column(String(200), default="")
    action: Mapped[str] = mapped_column(String(60), index=True)
    target: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    address: Mapped[str] = mapped_column(String(64), default="")


class StaffNote(Base):
    """An internal note on a patient's conversation: staff read it, the patient never does."""

    __tablename__ = "staff_note"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    staff_user_id: Mapped[int | None] = mapped_column(Integer)  # no FK: notes outlive users
    # Who wrote it, as shown in the timeline (kept when the login is disabled or renamed).
    author: Mapped[str] = mapped_column(String(200), default="")
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_staff_note_patient", "patient_id", "created_at"),)
