"""What must happen in the same transaction whenever an appointment is created or changed.

The booking service (WhatsApp, API, calendar import, staff) calls `appointment_changed` after
every change; the bootstrap installs the hooks (the reminder plan voids and re-plans its rows),
so every source of change keeps them right without knowing about them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from clinic_bot.core.runtime import runtime_of
from clinic_bot.models import Appointment

CHANGES = ("created", "moved", "cancelled", "status")


def appointment_changed(session: Session, appt: Appointment, now: datetime, change: str) -> None:
    """Run every installed appointment hook inside the caller's transaction."""
    session.flush()
    for hook in runtime_of(session).registry.appointment_hooks:
        hook(session, appt, now, change)


def appointments_created(session: Session, appts: list[Appointment], now: datetime) -> None:
    """Run the "created" hooks for many new appointments; a hook with a bulk form runs once."""
    session.flush()
    registry = runtime_of(session).registry
    for hook in registry.appointment_hooks:
        bulk = registry.bulk_created_hooks.get(hook)
        if bulk is not None:
            bulk(session, appts, now)
            continue
        for appt in appts:
            hook(session, appt, now, "created")
