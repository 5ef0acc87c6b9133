"""marshmallow schemas of the JSON API (CONTRACT §5): what comes in, what goes out."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from clinic_bot.core.clock import iso_z
from clinic_bot.domain.phones import InvalidPhone, normalize_phone
from clinic_bot.models.appointments import SOURCES, STATUSES

PATCH_STATUSES = ("cancelled", "confirmed", "no_show", "completed")


class UTCInstant(fields.DateTime):
    """An ISO 8601 instant that must carry an offset (or Z); dumped in UTC with Z."""

    default_error_messages = {
        "naive": "must carry a UTC offset or Z, e.g. 2026-12-01T09:00:00+01:00",
        "invalid": "not an ISO 8601 date-time",
    }

    def _deserialize(self, value, attr, data, **kwargs) -> datetime:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        # A "+" in a query string arrives as a space when the client did not encode it.
        text = value.strip().replace(" ", "+") if "T" in value else value.strip()
        try:
            parsed = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            raise self.make_error("invalid") from None
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise self.make_error("naive")
        return parsed.astimezone(UTC)

    def _serialize(self, value, attr, obj, **kwargs):
        return iso_z(value)


class Phone(fields.String):
    """A phone number in any CONTRACT §7 form, loaded as E.164 digits."""

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        raw = super()._deserialize(value, attr, data, **kwargs)
        try:
            return normalize_phone(raw)
        except InvalidPhone as exc:
            raise ValidationError(str(exc)) from None


class PatientRefSchema(Schema):
    """The patient of an appointment: a phone, optionally a name."""

    phone = Phone(required=True, metadata={"example": "+4915112345678"})
    name = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))


class AppointmentCreateSchema(Schema):
    """POST /api/v1/appointments."""

    patient = fields.Nested(PatientRefSchema, required=True)
    starts_at = UTCInstant(required=True, metadata={"example": "2026-12-01T09:00:00+01:00"})
    duration_minutes = fields.Integer(
        load_default=None,
        allow_none=True,
        strict=True,
        validate=validate.Range(min=1, max=24 * 60),
        metadata={"description": "defaults to the service's duration"},
    )
    service_id = fields.String(load_default=None, allow_none=True)
    practitioner_id = fields.String(
        load_default=None,
        allow_none=True,
        metadata={"description": "without one the appointment is unassigned and never conflicts"},
    )
    force = fields.Boolean(
        load_default=False,
        metadata={"description": "book even if it overlaps the practitioner's appointments"},
    )
    notes = fields.String(
        load_default=None,
        allow_none=True,
        metadata={"description": "staff-only; never sent to the patient"},
    )

    @validates_schema
    def _duration_or_service(self, data, **kwargs):
        if data.get("duration_minutes") is None and not data.get("service_id"):
            raise ValidationError("give duration_minutes or a service_id", "duration_minutes")


class AppointmentPatchSchema(Schema):
    """PATCH /api/v1/appointments/<id>: reschedule (`starts_at`) and/or change `status`."""

    starts_at = UTCInstant()
    practitioner_id = fields.String(allow_none=True)
    force = fields.Boolean(load_default=False)
    status = fields.String(validate=validate.OneOf(PATCH_STATUSES))

    @validates_schema
    def _something(self, data, **kwargs):
        if "starts_at" not in data and "status" not in data:
            raise ValidationError("send starts_at (to reschedule) or status")


class DayOrInstant(UTCInstant):
    """A query bound: an instant with an offset, or a date (midnight UTC)."""

    def _deserialize(self, value, attr, data, **kwargs) -> datetime:
        if isinstance(value, str) and len(value.strip()) == 10:
            try:
                day = date.fromisoformat(value.strip())
            except ValueError:
                raise self.make_error("invalid") from None
            return datetime.combine(day, time(0, 0), tzinfo=UTC)
        return super()._deserialize(value, attr, data, **kwargs)


class AppointmentQuerySchema(Schema):
    """GET /api/v1/appointments filters; every one is optional."""

    start = DayOrInstant(metadata={"description": "appointments starting at or after this"})
    end = DayOrInstant(metadata={"description": "appointments starting before this"})
    status = fields.String(validate=validate.OneOf(STATUSES))
    patient_phone = Phone()


class PatientOutSchema(Schema):
    phone = fields.String()
    name = fields.String(allow_none=True)


class ReminderSchema(Schema):
    """One planned reminder of the appointment's current version."""

    kind = fields.String(metadata={"example": "24h"})
    due_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    status = fields.String()
    sent_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    read_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    reason = fields.String(allow_none=True)


class AppointmentSchema(Schema):
    """An appointment as the API shows it; instants in UTC with Z."""

    id = fields.Integer()
    patient = fields.Nested(PatientOutSchema, allow_none=True)
    starts_at = UTCInstant()
    ends_at = UTCInstant()
    status = fields.String(validate=validate.OneOf(STATUSES))
    source = fields.String(validate=validate.OneOf(SOURCES))
    reminders = fields.List(fields.Nested(ReminderSchema))
    external_uid = fields.String(allow_none=True)
    service_id = fields.String(allow_none=True)
    practitioner_id = fields.String(allow_none=True)
    version = fields.Integer()


class AppointmentListSchema(Schema):
    items = fields.List(fields.Nested(AppointmentSchema))


class ErrorBodySchema(Schema):
    code = fields.String()
    message = fields.String()


class ErrorSchema(Schema):
    """Every 4xx: {"error": {"code", "message"}}."""

    error = fields.Nested(ErrorBodySchema)
