"""/api/v1/appointments: create, list, get, reschedule and change status (CONTRACT §5)."""

from __future__ import annotations

from datetime import timedelta

from flask import request
from sqlalchemy import select
from sqlalchemy.orm import Session

from clinic_bot.core.runtime import get_runtime
from clinic_bot.delivery.outbox import Outbox
from clinic_bot.domain import booking
from clinic_bot.domain.patients import get_or_create_patient
from clinic_bot.domain.profile import Profile
from clinic_bot.domain.reminder_trail import reminders_for
from clinic_bot.models import Appointment, Patient
from clinic_bot.web.api.base import ID, Blueprint
from clinic_bot.web.api.errors import fail
from clinic_bot.web.api.schemas import (
    AppointmentCreateSchema,
    AppointmentListSchema,
    AppointmentPatchSchema,
    AppointmentQuerySchema,
    AppointmentSchema,
    ErrorSchema,
)

blp = Blueprint("api_appointments", __name__, description="Book, list, move and close appointments")

CREATE_EXAMPLE = {
    "patient": {"phone": "+4915112345678", "name": "Ana"},
    "starts_at": "2026-12-01T09:00:00+01:00",
    "duration_minutes": 20,
}


def appointment_data(session: Session, appt: Appointment) -> dict:
    """The CONTRACT's appointment object, before AppointmentSchema dumps it."""
    patient = appt.patient
    return {
        "id": appt.id,
        "patient": {"phone": patient.phone, "name": patient.name} if patient else None,
        "starts_at": appt.starts_at,
        "ends_at": appt.ends_at,
        "status": appt.status,
        "source": appt.source,
        "reminders": reminders_for(session, appt),
        "external_uid": appt.external_uid,
        "service_id": appt.service_id,
        "practitioner_id": appt.practitioner_id,
        "version": appt.version,
    }


def _when_values(profile: Profile, lang: str | None, appt: Appointment) -> dict[str, str]:
    local = appt.starts_at.astimezone(profile.timezone)
    weekdays = [w.strip() for w in profile.text("reminder_weekdays", lang).split(",")]
    months = [m.strip() for m in profile.text("reminder_months", lang).split(",")]
    day = profile.text(
        "reminder_date", lang, day=local.day, month=months[local.month - 1], year=local.year
    )
    return {"weekday": weekdays[local.weekday()], "date": day, "time": f"{local:%H:%M}"}


def notify_patient(session: Session, profile: Profile, patient: Patient, appt: Appointment, now):
    """Tell the patient about an appointment staff booked for them (opted-out: nothing)."""
    if not profile.notify_on_staff_booking:
        return False
    first = (patient.name or patient.push_name or "").split()
    text = profile.text(
        "booking_staff_booked",
        patient.language,
        name_part=f" {first[0]}" if first else "",
        **_when_values(profile, patient.language, appt),
    )
    outbox = Outbox(session, now, key_prefix=f"api-booking:{appt.id}:{appt.version}")
    return outbox.text(patient, text, purpose="booking")


@blp.route("/appointments", methods=["POST"])
@blp.arguments(AppointmentCreateSchema, example=CREATE_EXAMPLE)
@blp.response(
    201,
    AppointmentSchema,
    description="booked",
    headers={
        "Location": {"description": "the new appointment's URL", "schema": {"type": "string"}}
    },
)
@blp.alt_response(409, schema=ErrorSchema, description="overlaps the practitioner (no force)")
def create_appointment(data):
    """Book an appointment for a patient

    Any future time is accepted; working hours are not enforced. Without `practitioner_id`
    the appointment is unassigned.
    """
    runtime = get_runtime()
    now = runtime.clock()
    duration = data["duration_minutes"]
    try:
        with runtime.db.transaction() as s:
            patient = get_or_create_patient(s, data["patient"]["phone"], now)
            if data["patient"]["name"]:
                patient.name = data["patient"]["name"].strip()[:200] or patient.name
            appt = booking.book(
                s,
                runtime.profile,
                patient=patient,
                service_id=data["service_id"],
                practitioner_id=data["practitioner_id"],
                starts_at=data["starts_at"],
                now=now,
                source="api",
                duration=None if duration is None else timedelta(minutes=duration),
                enforce_hours=False,
                force=data["force"],
            )
            if data["notes"]:
                appt.notes = data["notes"]
            notify_patient(s, runtime.profile, patient, appt, now)
            out = appointment_data(s, appt)
    except booking.Conflict as exc:
        fail(409, "conflict", str(exc))
    except booking.BookingError as exc:
        fail(400, "invalid_request", str(exc))
    location = f"{request.script_root}{blp.url_prefix}/appointments/{out['id']}"
    return out, 201, {"Location": location}


@blp.route("/appointments", methods=["GET"])
@blp.arguments(AppointmentQuerySchema, location="query")
@blp.response(200, AppointmentListSchema, description="the appointments, soonest first")
def list_appointments(q):
    """List appointments

    Every filter is optional; an omitted `start` or `end` is unbounded.
    """
    runtime = get_runtime()
    stmt = select(Appointment).order_by(Appointment.starts_at, Appointment.id)
    if "start" in q:
        stmt = stmt.where(Appointment.starts_at >= q["start"])
    if "end" in q:
        stmt = stmt.where(Appointment.starts_at < q["end"])
    if "status" in q:
        stmt = stmt.where(Appointment.status == q["status"])
    if "patient_phone" in q:
        stmt = stmt.join(Patient, Appointment.patient_id == Patient.id).where(
            Patient.phone == q["patient_phone"]
        )
    with runtime.db.ReadSession() as s:
        items = [appointment_data(s, a) for a in s.execute(stmt).scalars()]
    return {"items": items}


@blp.route(f"/appointments/<{ID}:appointment_id>", methods=["GET"])
@blp.response(200, AppointmentSchema, description="the appointment")
@blp.alt_response(404, schema=ErrorSchema, description="no such appointment")
def get_appointment(appointment_id: int):
    """One appointment"""
    runtime = get_runtime()
    with runtime.db.ReadSession() as s:
        appt = s.get(Appointment, appointment_id)
        if appt is None:
            fail(404, "not_found", f"no appointment {appointment_id}")
        return appointment_data(s, appt)


@blp.route(f"/appointments/<{ID}:appointment_id>", methods=["PATCH"])
@blp.arguments(AppointmentPatchSchema, example={"status": "confirmed"})
@blp.response(200, AppointmentSchema, description="the appointment")
@blp.alt_response(404, schema=ErrorSchema, description="no such appointment")
@blp.alt_response(
    409, schema=ErrorSchema, description="overlap (no force), or a cancelled or past appointment"
)
def patch_appointment(data, appointment_id: int):
    """Reschedule or change the status

    `starts_at` moves the appointment (its version goes up); `status` is one of cancelled,
    confirmed, no_show, completed.
    """
    runtime = get_runtime()
    now = runtime.clock()
    try:
        with runtime.db.transaction() as s:
            appt = s.get(Appointment, appointment_id)
            if appt is None:
                fail(404, "not_found", f"no appointment {appointment_id}")
            if "starts_at" in data:
                booking.reschedule(
                    s,
                    runtime.profile,
                    appt,
                    starts_at=data["starts_at"],
                    practitioner_id=data.get("practitioner_id"),
                    now=now,
                    enforce_hours=False,
                    force=data["force"],
                )
            if "status" in data:
                booking.set_status(s, appt, data["status"], now=now)
            out = appointment_data(s, appt)
    except booking.Conflict as exc:
        fail(409, "conflict", str(exc))
    except booking.NotChangeable as exc:
        fail(409, "not_changeable", str(exc))
    except booking.BookingError as exc:
        fail(400, "invalid_request", str(exc))
    return out
