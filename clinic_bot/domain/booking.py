"""The booking service: book, reschedule, cancel and change status of appointments.

Every source (WhatsApp, API, staff, calendar import) goes through these functions, in the
caller's transaction. Double booking is impossible under concurrency: the practitioner's
`PractitionerLock` row is locked (FOR UPDATE on PostgreSQL; SQLite write transactions already
begin IMMEDIATE, so they are serialized) before the overlap check, so check-then-insert is atomic.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from clinic_bot.core.db import insert_ignore
from clinic_bot.domain.appointment_changes import appointment_changed
from clinic_bot.domain.availability import candidates, free_slots, local_today
from clinic_bot.domain.profile import Profile
from clinic_bot.models import Appointment, Patient, PractitionerLock
from clinic_bot.models.appointments import ACTIVE_STATUSES, SOURCES

# Statuses `set_status` may set; "booked" is only ever the status of a new appointment.
SETTABLE_STATUSES = ("confirmed", "cancelled", "no_show", "completed")


class BookingError(Exception):
    """A booking request that cannot be carried out."""


class SlotTaken(BookingError):
    """The slot is no longer free (race lost, or taken since)."""


class Conflict(BookingError):
    """The time overlaps the practitioner's other appointment (API; `force` overrides)."""


class NotChangeable(BookingError):
    """The appointment is cancelled, finished or past, so it cannot be changed that way."""


class InvalidBooking(BookingError):
    """The request itself is wrong: unknown service or practitioner, a past or naive time."""


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidBooking(f"{name} must carry a UTC offset")
    return value


def lock_practitioner(session: Session, practitioner_id: str) -> None:
    """Take the practitioner's lock row for the rest of the transaction (creating it if missing)."""
    rows = [{"practitioner_id": practitioner_id}]
    insert_ignore(session, PractitionerLock, rows, key="practitioner_id", returning=None)
    # SQLAlchemy drops FOR UPDATE on SQLite, where BEGIN IMMEDIATE already serializes writers.
    session.execute(
        select(PractitionerLock.practitioner_id)
        .where(PractitionerLock.practitioner_id == practitioner_id)
        .with_for_update()
    ).scalar_one()


def lock_appointment(session: Session, appt: Appointment) -> None:
    """Re-read the appointment locked, so a concurrent change cannot interleave with ours."""
    session.flush()
    session.refresh(appt, with_for_update=True)


def overlapping(
    session: Session,
    practitioner_id: str,
    starts_at: datetime,
    ends_at: datetime,
    *,
    ignore_id: int | None = None,
) -> list[Appointment]:
    """Active appointments of the practitioner that overlap [starts_at, ends_at)."""
    stmt = select(Appointment).where(
        Appointment.practitioner_id == practitioner_id,
        Appointment.status.in_(ACTIVE_STATUSES),
        Appointment.starts_at < ends_at,
        Appointment.ends_at > starts_at,
    )
    if ignore_id is not None:
        stmt = stmt.where(Appointment.id != ignore_id)
    return list(session.execute(stmt).scalars())


def _is_free_slot(
    session: Session,
    profile: Profile,
    *,
    service_id: str,
    practitioner_id: str,
    starts_at: datetime,
    now: datetime,
    ignore_id: int | None = None,
) -> bool:
    day = local_today(starts_at, profile.timezone)
    return any(
        slot.starts_at == starts_at
        for slot in free_slots(
            session,
            profile,
            service_id=service_id,
            practitioner_id=practitioner_id,
            day=day,
            now=now,
            ignore_ids=[ignore_id] if ignore_id is not None else (),
        )
    )


def _place(
    session: Session,
    profile: Profile,
    *,
    service_id: str | None,
    practitioner_id: str | None,
    starts_at: datetime,
    duration: timedelta,
    now: datetime,
    enforce_hours: bool,
    force: bool,
    ignore_id: int | None = None,
) -> str | None:
    """Lock, check and return the practitioner the appointment goes to (None = unassigned).

    With `enforce_hours` the start must be one of the free slots (hours, breaks, closures,
    notice, horizon, other appointments); a practitioner of None then means "any", and the
    first practitioner in profile order who is free at that start is taken.
    """
    if enforce_hours:
        if service_id is None:
            raise InvalidBooking("a booking within working hours needs a service")
        pool = [p.id for p in candidates(profile, service_id, practitioner_id)]
        if not pool:
            raise InvalidBooking(f"nobody offers {service_id!r} as asked")
        for pid in pool:
            lock_practitioner(session, pid)
            free = _is_free_slot(
                session,
                profile,
                service_id=service_id,
                practitioner_id=pid,
                starts_at=starts_at,
                now=now,
                ignore_id=ignore_id,
            )
            if free:
                return pid
        raise SlotTaken("that time is no longer free")
    if practitioner_id is None:
        return None  # unassigned: never conflicts
    lock_practitioner(session, practitioner_id)
    clash = overlapping(
        session, practitioner_id, starts_at, starts_at + duration, ignore_id=ignore_id
    )
    if clash and not force:
        raise Conflict(
            f"overlaps appointment {clash[0].id} of {practitioner_id} "
            f"({clash[0].starts_at.isoformat()} to {clash[0].ends_at.isoformat()})"
        )
    return practitioner_id


def book(
    session: Session,
    profile: Profile,
    *,
    patient: Patient | None,
    service_id: str | None,
    practitioner_id: str | None,
    starts_at: datetime,
    now: datetime,
    source: str = "whatsapp",
    duration: timedelta | None = None,
    enforce_hours: bool = True,
    force: bool = False,
) -> Appointment:
    """Create an appointment; raises SlotTaken / Conflict / InvalidBooking instead of overlapping.

    WhatsApp bookings keep `enforce_hours` (only free slots); the API passes False (any future
    time, overlaps refused unless `force`).
    """
    starts_at = _aware(starts_at, "starts_at")
    if source not in SOURCES:
        raise InvalidBooking(f"unknown source {source!r}")
    service = profile.service(service_id) if service_id is not None else None
    if service_id is not None and service is None:
        raise InvalidBooking(f"unknown service {service_id!r}")
    if practitioner_id is not None and profile.practitioner(practitioner_id) is None:
        raise InvalidBooking(f"unknown practitioner {practitioner_id!r}")
    if duration is None:
        if service is None:
            raise InvalidBooking("give a service or a duration")
        duration = service.duration
    if duration <= timedelta(0):
        raise InvalidBooking("the duration must be positive")
    if starts_at <= now:
        raise InvalidBooking("starts_at is in the past")
    pid = _place(
        session,
        profile,
        service_id=service_id,
        practitioner_id=practitioner_id,
        starts_at=starts_at,
        duration=duration,
        now=now,
        enforce_hours=enforce_hours,
        force=force,
    )
    appt = Appointment(
        patient_id=patient.id if patient is not None else None,
        service_id=service_id,
        practitioner_id=pid,
        starts_at=starts_at,
        ends_at=starts_at + duration,
        status="booked",
        source=source,
        version=1,
        created_at=now,
        updated_at=now,
    )
    session.add(appt)
    appointment_changed(session, appt, now, "created")
    return appt


def _require_changeable(appt: Appointment, now: datetime) -> None:
    if appt.status not in ACTIVE_STATUSES:
        raise NotChangeable(f"the appointment is {appt.status}")
    if appt.starts_at <= now:
        raise NotChangeable("the appointment has already started")


def reschedule(
    session: Session,
    profile: Profile,
    appt: Appointment,
    *,
    starts_at: datetime,
    practitioner_id: str | None = None,
    now: datetime,
    enforce_hours: bool = True,
    force: bool = False,
    service_id: str | None = None,
) -> Appointment:
    """Move the same appointment to a new start (same duration); its version goes up.

    `practitioner_id` None keeps the current practitioner (or, within hours and unassigned,
    takes any practitioner free at that start). `service_id` is the service whose slots
    apply when the appointment has none yet (one staff booked without a service).
    """
    starts_at = _aware(starts_at, "starts_at")
    lock_appointment(session, appt)
    _require_changeable(appt, now)
    if starts_at <= now:
        raise InvalidBooking("starts_at is in the past")
    if practitioner_id is not None and profile.practitioner(practitioner_id) is None:
        raise InvalidBooking(f"unknown practitioner {practitioner_id!r}")
    target = practitioner_id if practitioner_id is not None else appt.practitioner_id
    duration = appt.ends_at - appt.starts_at
    service = appt.service_id or service_id
    pid = _place(
        session,
        profile,
        service_id=service,
        practitioner_id=target,
        starts_at=starts_at,
        duration=duration,
        now=now,
        enforce_hours=enforce_hours,
        force=force,
        ignore_id=appt.id,
    )
    appt.starts_at = starts_at
    appt.ends_at = starts_at + duration
    appt.practitioner_id = pid
    appt.service_id = service
    appt.version += 1
    appt.updated_at = now
    appointment_changed(session, appt, now, "moved")
    return appt


def cancel(session: Session, appt: Appointment, *, now: datetime) -> Appointment:
    """Cancel an active, future appointment."""
    lock_appointment(session, appt)
    _require_changeable(appt, now)
    appt.status = "cancelled"
    appt.cancelled_at = now
    appt.updated_at = now
    appointment_changed(session, appt, now, "cancelled")
    return appt


def set_status(session: Session, appt: Appointment, status: str, *, now: datetime) -> Appointment:
    """Set confirmed / cancelled / no_show / completed; setting the current status is a no-op."""
    if status not in SETTABLE_STATUSES:
        raise InvalidBooking(f"status must be one of {', '.join(SETTABLE_STATUSES)}")
    lock_appointment(session, appt)
    if status == appt.status:
        return appt
    if status == "cancelled":
        return cancel(session, appt, now=now)
    if status == "confirmed":
        _require_changeable(appt, now)
    elif appt.status == "cancelled":
        # Staff may correct no_show <-> completed, but a cancelled visit did not happen.
        raise NotChangeable("the appointment is cancelled")
    elif appt.starts_at > now:
        # A patient must never hear "we missed you" before the visit: only after its start.
        raise NotChangeable(f"a visit can be marked {status} only after it has started")
    appt.status = status
    appt.updated_at = now
    appointment_changed(session, appt, now, "status")
    return appt


def upcoming_for(session: Session, patient: Patient, *, now: datetime) -> list[Appointment]:
    """The patient's active appointments that have not started yet, soonest first."""
    return list(
        session.execute(
            select(Appointment)
            .where(
                Appointment.patient_id == patient.id,
                Appointment.status.in_(ACTIVE_STATUSES),
                Appointment.starts_at > now,
            )
            .order_by(Appointment.starts_at, Appointment.id)
        ).scalars()
    )
