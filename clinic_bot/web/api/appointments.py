"""/api/v1/appointments: create, list, get, reschedule and change status (CONTRACT §5)."""

from __future__ import annotations

from datetime import timedelta

from flask import jsonify, request
from marshmallow import EXCLUDE, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from clinic_bot.core.runtime import get_runtime
from clinic_bot.delivery.outbox import Outbox
from clinic_bot.domain import booking
from clinic_bot.domain.patients import get_or_create_patient
from clinic_bot.domain.profile import Profile
from clinic_bot.domain.reminder_trail import reminders_for
from clinic_bot.models import Appointment, Patient
from clinic_bot.web.api.auth import api_error
from clinic_bot.web.api.blueprint import bp
from clinic_bot.web.api.openapi import document, error_response
from clinic_bot.web.api.schemas import (
    AppointmentCreateSchema,
    AppointmentListSchema,
    AppointmentPatchSchema,
    AppointmentQuerySchema,
    AppointmentSchema,
)


def appointment_json(session: Session, appt: Appointment) -> dict:
    """The CONTRACT's appointment object."""
    patient = appt.patient
    return AppointmentSchema().dump(
        {
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
    )


def _invalid(exc: ValidationError):
    return api_error(400, "invalid_request", _flatten(exc.messages))


def _flatten(messages, prefix: str = "") -> str:
    """marshmallow's nested messages as one readable line: 'patient.phone: ...; starts_at: ...'."""
    if isinstance(messages, dict):
        parts = []
        for key, value in messages.items():
            name = prefix if key == "_schema" else (f"{prefix}.{key}" if prefix else str(key))
            parts.append(_flatten(value, name))
        return "; ".join(parts)
    if isinstance(messages, list):
        text = " ".join(str(m) for m in messages)
        return f"{prefix}: {text}" if prefix else text
    return f"{prefix}: {messages}" if prefix else str(messages)


def _json_body():
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else None


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


@bp.post("/appointments")
def create_appointment():
    """Book an appointment for a patient; any future time, hours not enforced."""
    runtime = get_runtime()
    body = _json_body()
    if body is None:
        return api_error(400, "invalid_json", "send a JSON object")
    try:
        data = AppointmentCreateSchema().load(body)
    except ValidationError as exc:
        return _invalid(exc)
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
            out = appointment_json(s, appt)
    except booking.Conflict as exc:
        return api_error(409, "conflict", str(exc))
    except booking.BookingError as exc:
        return api_error(400, "invalid_request", str(exc))
    response = jsonify(out)
    response.status_code = 201
    response.headers["Location"] = f"{request.script_root}{bp.url_prefix}/appointments/{out['id']}"
    return response


@bp.get("/appointments")
def list_appointments():
    """Appointments by start range, status and patient, soonest first."""
    runtime = get_runtime()
    try:
        # An empty filter (`?start=&status=`) means no filter.
        args = {k: v for k, v in request.args.items() if v.strip()}
        q = AppointmentQuerySchema().load(args, unknown=EXCLUDE)
    except ValidationError as exc:
        return _invalid(exc)
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
        items = [appointment_json(s, a) for a in s.execute(stmt).scalars()]
    return jsonify(items=items)


@bp.get("/appointments/<int:appointment_id>")
def get_appointment(appointment_id: int):
    """One appointment."""
    runtime = get_runtime()
    with runtime.db.ReadSession() as s:
        appt = s.get(Appointment, appointment_id)
        if appt is None:
            return api_error(404, "not_found", f"no appointment {appointment_id}")
        return jsonify(appointment_json(s, appt))


@bp.patch("/appointments/<int:appointment_id>")
def patch_appointment(appointment_id: int):
    """Reschedule (`starts_at`, the version goes up) and/or change the status."""
    runtime = get_runtime()
    body = _json_body()
    if body is None:
        return api_error(400, "invalid_json", "send a JSON object")
    try:
        data = AppointmentPatchSchema().load(body)
    except ValidationError as exc:
        return _invalid(exc)
    now = runtime.clock()
    try:
        with runtime.db.transaction() as s:
            appt = s.get(Appointment, appointment_id)
            if appt is None:
                return api_error(404, "not_found", f"no appointment {appointment_id}")
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
            out = appointment_json(s, appt)
    except booking.Conflict as exc:
        return api_error(409, "conflict", str(exc))
    except booking.NotChangeable as exc:
        return api_error(409, "not_changeable", str(exc))
    except booking.BookingError as exc:
        return api_error(400, "invalid_request", str(exc))
    return jsonify(out)


_ID = [{"in": "path", "name": "appointment_id", "required": True, "schema": {"type": "integer"}}]
_ONE = {
    "200": {
        "description": "the appointment",
        "content": {"application/json": {"schema": "Appointment"}},
    }
}

document(
    "/appointments",
    {
        "post": {
            "summary": "Book an appointment (any future time; working hours are not enforced)",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": "AppointmentCreate"}},
            },
            "responses": {
                "201": {
                    "description": "booked",
                    "content": {"application/json": {"schema": "Appointment"}},
                },
                "400": error_response("invalid body, phone, naive or past starts_at"),
                "401": error_response("missing or unknown token"),
                "409": error_response("overlaps the practitioner's appointment (no force)"),
            },
        },
        "get": {
            "summary": "List appointments (every filter optional; start/end unbounded if omitted)",
            "parameters": [{"in": "query", "schema": AppointmentQuerySchema}],
            "responses": {
                "200": {
                    "description": "the appointments, soonest first",
                    "content": {"application/json": {"schema": "AppointmentList"}},
                },
                "400": error_response("invalid filter"),
            },
        },
    },
    schemas={
        "Appointment": AppointmentSchema,
        "AppointmentCreate": AppointmentCreateSchema,
        "AppointmentPatch": AppointmentPatchSchema,
        "AppointmentList": AppointmentListSchema,
    },
)
document(
    "/appointments/{appointment_id}",
    {
        "get": {
            "summary": "One appointment",
            "responses": {**_ONE, "404": error_response("no such appointment")},
        },
        "patch": {
            "summary": "Reschedule (starts_at) or change status",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": "AppointmentPatch"}},
            },
            "responses": {
                **_ONE,
                "400": error_response("invalid body"),
                "404": error_response("no such appointment"),
                "409": error_response("overlap (no force), or cancelled/past appointment"),
            },
        },
    },
    parameters=_ID,
)
