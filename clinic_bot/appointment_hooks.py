"""What must happen in the same transaction whenever an appointment is created or changed.

The booking service (WhatsApp, API, calendar import, staff) calls `appointment_changed` after
every change; other areas register here (the reminder plan voids and re-plans its rows), so
every source of change keeps them right without knowing about them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from .models import Appointment

# change is one of: created, moved, cancelled, status
APPOINTMENT_HOOKS: list[Callable[[Session, Appointment, datetime, str], None]] = []


def appointment_changed(session: Session, appt: Appointment, now: datetime, change: str) -> None:
    """Run every registered hook inside the caller's transaction."""
    session.flush()
    for hook in APPOINTMENT_HOOKS:
        hook(session, appt, now, change)
