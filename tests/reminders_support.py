"""Helpers shared by the reminder, follow-up and broadcast tests."""

from __future__ import annotations

import copy
import tomllib
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from clinic_bot.domain.appointment_changes import appointment_changed
from clinic_bot.domain.patients import get_or_create_patient
from clinic_bot.domain.profile import parse_profile
from clinic_bot.models import Appointment, OutboxMessage, Reminder
from clinic_bot.settings import EXAMPLE_PROFILE

with EXAMPLE_PROFILE.open("rb") as _fh:
    EXAMPLE = tomllib.load(_fh)


def use_profile(runtime, *, timezone: str | None = None, reminders=None, broadcasts=None):
    """Give the runtime the example profile with a zone and [reminders]/[broadcasts] overrides."""
    data = copy.deepcopy(EXAMPLE)
    data["reminders"].update(reminders or {})
    data["broadcasts"].update(broadcasts or {})
    profile = parse_profile(data)
    if timezone:
        profile = replace(profile, timezone=ZoneInfo(timezone))
    runtime.profile = profile
    return profile


def book(runtime, phone: str, starts_at: datetime, *, name: str = "Ana Lopez", **extra) -> int:
    """Create an appointment as the booking service does (row + hooks), booked at clock time."""
    now = runtime.clock()
    with runtime.db.transaction() as s:
        patient = get_or_create_patient(s, phone, now)
        patient.name = name
        appt = Appointment(
            patient_id=patient.id,
            starts_at=starts_at,
            ends_at=starts_at + timedelta(minutes=20),
            status="booked",
            source="api",
            version=1,
            created_at=now,
            updated_at=now,
            **extra,
        )
        s.add(appt)
        appointment_changed(s, appt, now, "created")
        return appt.id


def move(runtime, appt_id: int, starts_at: datetime) -> None:
    """Reschedule: new start, version up, hooks run."""
    now = runtime.clock()
    with runtime.db.transaction() as s:
        appt = s.get(Appointment, appt_id)
        appt.starts_at, appt.ends_at = starts_at, starts_at + timedelta(minutes=20)
        appt.version += 1
        appointment_changed(s, appt, now, "moved")


def set_status(runtime, appt_id: int, status: str) -> None:
    """Change the status (cancelled, confirmed, no_show, completed) with the hooks."""
    now = runtime.clock()
    with runtime.db.transaction() as s:
        appt = s.get(Appointment, appt_id)
        appt.status = status
        if status == "cancelled":
            appt.cancelled_at = now
        appointment_changed(s, appt, now, "cancelled" if status == "cancelled" else "status")


def reminders(runtime, appt_id: int) -> dict[tuple[int, str], Reminder]:
    """Every reminder row of an appointment by (version, kind)."""
    with runtime.db.Session() as s:
        rows = s.execute(select(Reminder).where(Reminder.appointment_id == appt_id)).scalars()
        return {(r.appointment_version, r.kind): r for r in rows}


def outbox(runtime, prefix: str = "") -> list[OutboxMessage]:
    """Outbox rows whose key starts with `prefix`, oldest first."""
    with runtime.db.Session() as s:
        return list(
            s.execute(
                select(OutboxMessage)
                .where(OutboxMessage.idempotency_key.startswith(prefix))
                .order_by(OutboxMessage.id)
            ).scalars()
        )


def body_text(row: OutboxMessage) -> str:
    """The visible text of an outbox row."""
    body = row.body.get("body")
    return body.get("text", "") if isinstance(body, dict) else str(body)
