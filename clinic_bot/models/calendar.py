"""Calendar import keys: which appointment each imported event (or occurrence) became."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from clinic_bot.core.db import Base, UTCDateTime
from clinic_bot.models.core import utcnow


class ImportedEvent(Base):
    """One imported event or occurrence of a series, keyed by (source, UID[#RECURRENCE-ID]).

    `sequence` is the highest SEQUENCE seen, so a stale copy of the event never overwrites a
    newer one. UIDs are TEXT: Exchange sends 100+ character UIDs.
    """

    __tablename__ = "imported_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(200))
    uid_key: Mapped[str] = mapped_column(Text)  # UID, or UID#<RECURRENCE-ID in UTC>
    uid: Mapped[str] = mapped_column(Text)  # the plain UID, to cancel a whole series
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    # An event with a patient became an appointment; one without became a busy block.
    appointment_id: Mapped[int | None] = mapped_column(
        ForeignKey("appointment.id", ondelete="CASCADE"), nullable=True
    )
    busy_block_id: Mapped[int | None] = mapped_column(
        ForeignKey("busy_block.id", ondelete="CASCADE"), nullable=True
    )
    # What the file said (times, texts, patient, practitioner): equal means nothing to write.
    content_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Cancelled because the calendar said so (not by staff): the calendar may bring it back.
    import_cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("source", "uid_key", name="uq_imported_event_key"),
        Index("ix_imported_event_uid", "source", "uid"),
        Index("ix_imported_event_appointment", "appointment_id"),
    )


class BusyBlock(Base):
    """Time a practitioner (or, with none, the whole clinic) is not bookable over WhatsApp.

    Calendar imports create them from events with no patient phone, all-day events and opaque
    blocks; staff may add them by hand (source "staff"). Availability leaves their time out.
    """

    __tablename__ = "busy_block"

    id: Mapped[int] = mapped_column(primary_key=True)
    practitioner_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    summary: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(200))  # "ics:<calendar source>" or "staff"
    external_uid: Mapped[str | None] = mapped_column(Text, nullable=True)
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_busy_block_time", "starts_at", "ends_at"),
        Index("ix_busy_block_uid", "source", "external_uid"),
    )


class CalendarImport(Base):
    """One upload from the staff page: its preview, then (once applied) the import history row.

    The file's bytes are kept until it is applied, so Apply imports exactly what was previewed.
    """

    __tablename__ = "calendar_import"

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)  # in the preview URL
    staff_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    filename: Mapped[str] = mapped_column(String(300), default="")
    size: Mapped[int] = mapped_column(Integer, default=0)
    mode: Mapped[str] = mapped_column(String(10), default="merge")
    practitioner_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    source: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="preview")  # preview|applied|refused
    raw: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    report: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (Index("ix_calendar_import_created", "created_at"),)


class CalendarFeed(Base):
    """A subscription feed link: the whole clinic (practitioner None) or one practitioner.

    Only the token's SHA-256 is stored; rotating revokes the old link at once.
    """

    __tablename__ = "calendar_feed"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    practitioner_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(320), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
