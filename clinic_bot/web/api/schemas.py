"""marshmallow schemas of the JSON API (CONTRACT §5): what comes in, what goes out.

Each one validates a request *and* documents it (flask-smorest turns them into the OpenAPI
document), so a rule stated here is both enforced and published.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from marshmallow import Schema, ValidationError, fields, pre_load, validate, validates_schema

from clinic_bot.core.clock import iso_z
from clinic_bot.domain.messages import TEXT_BODY
from clinic_bot.domain.phones import InvalidPhone, normalize_phone
from clinic_bot.models.appointments import SOURCES, STATUSES

PATCH_STATUSES = ("cancelled", "confirmed", "no_show", "completed")
# Instants and days the API takes: wide enough for any booking or filter, narrow enough that
# converting to UTC or adding a day never leaves Python's datetime range.
FIRST_YEAR, LAST_YEAR = 1900, 2999
# Any CONTRACT §7 form: +E.164 or bare digits (spaces, dots, dashes and brackets allowed
# between them), or a one-to-one WhatsApp chat id.
PHONE_PATTERN = r"^\s*\+?[0-9 ().-]{8,30}(@s\.whatsapp\.net|@c\.us)?\s*$"
PHONE_EXAMPLE = "+4915112345678"
ID_LENGTH = validate.Length(min=1, max=100)


class Text(fields.String):
    """A string without NUL characters or unpaired surrogates (no database can store them)."""

    default_error_messages = {
        "unstorable": "must not contain NUL characters or unpaired surrogates",
    }

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise self.make_error("unstorable")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise self.make_error("unstorable") from None
        return text


class UTCInstant(fields.DateTime):
    """An ISO 8601 instant that must carry an offset (or Z); dumped in UTC with Z."""

    default_error_messages = {
        "naive": "must carry a UTC offset or Z, e.g. 2026-12-01T09:00:00+01:00",
        "invalid": "not an ISO 8601 date-time",
        "range": f"must be between the years {FIRST_YEAR} and {LAST_YEAR}",
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
        if not FIRST_YEAR <= parsed.year <= LAST_YEAR:
            raise self.make_error("range")
        return parsed.astimezone(UTC)

    def _serialize(self, value, attr, obj, **kwargs):
        return iso_z(value)


class Day(fields.Date):
    """An ISO 8601 day (clinic-local where a route says so), within the API's years."""

    default_error_messages = {"range": f"must be between the years {FIRST_YEAR} and {LAST_YEAR}"}

    def _deserialize(self, value, attr, data, **kwargs) -> date:
        day = super()._deserialize(value, attr, data, **kwargs)
        if not FIRST_YEAR <= day.year <= LAST_YEAR:
            raise self.make_error("range")
        return day


class Phone(Text):
    """A phone number in any CONTRACT §7 form, loaded as E.164 digits."""

    def __init__(self, **kwargs):
        metadata = {
            "pattern": PHONE_PATTERN,
            "example": PHONE_EXAMPLE,
            **kwargs.pop("metadata", {}),
        }
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        raw = super()._deserialize(value, attr, data, **kwargs)
        try:
            return normalize_phone(raw)
        except InvalidPhone as exc:
            raise ValidationError(str(exc)) from None


class PatientRefSchema(Schema):
    """The patient of an appointment: a phone, optionally a name."""

    phone = Phone(required=True)
    name = Text(
        load_default=None,
        allow_none=True,
        validate=validate.Length(min=1, max=200),
        metadata={"example": "Ana"},
    )


def _given(name: str, json_type: str) -> dict:
    """JSON Schema: `name` is present and not null."""
    return {"required": [name], "properties": {name: {"type": json_type}}}


class AppointmentCreateSchema(Schema):
    """POST /api/v1/appointments; give `duration_minutes` or a `service_id`."""

    # The cross-field rule of `_duration_or_service`, as the document states it.
    openapi_rules = {
        "description": "Give duration_minutes or a service_id (whose duration is used).",
        "anyOf": [_given("duration_minutes", "integer"), _given("service_id", "string")],
    }

    patient = fields.Nested(PatientRefSchema, required=True)
    starts_at = UTCInstant(
        required=True,
        metadata={
            "example": "2026-12-01T09:00:00+01:00",
            "description": f"with an offset or Z; in the future, before {LAST_YEAR + 1}",
        },
    )
    duration_minutes = fields.Integer(
        load_default=None,
        allow_none=True,
        strict=True,
        validate=validate.Range(min=1, max=24 * 60),
        metadata={"description": "defaults to the service's duration", "example": 20},
    )
    service_id = Text(
        load_default=None,
        allow_none=True,
        validate=ID_LENGTH,
        metadata={"description": "a service of the clinic profile"},
    )
    practitioner_id = Text(
        load_default=None,
        allow_none=True,
        validate=ID_LENGTH,
        metadata={"description": "without one the appointment is unassigned and never conflicts"},
    )
    force = fields.Boolean(
        load_default=False,
        metadata={"description": "book even if it overlaps the practitioner's appointments"},
    )
    notes = Text(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=2000),
        metadata={"description": "staff-only; never sent to the patient"},
    )

    @validates_schema
    def _duration_or_service(self, data, **kwargs):
        if data.get("duration_minutes") is None and not data.get("service_id"):
            raise ValidationError("give duration_minutes or a service_id", "duration_minutes")


class AppointmentPatchSchema(Schema):
    """PATCH /api/v1/appointments/<id>: reschedule (`starts_at`) and/or change `status`."""

    openapi_rules = {
        "description": "Send starts_at (to reschedule), status, or both.",
        "anyOf": [{"required": ["starts_at"]}, {"required": ["status"]}],
    }

    starts_at = UTCInstant(metadata={"example": "2026-12-01T10:00:00+01:00"})
    practitioner_id = Text(allow_none=True, validate=ID_LENGTH)
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
            if not FIRST_YEAR <= day.year <= LAST_YEAR:
                raise self.make_error("range")
            return datetime.combine(day, time(0, 0), tzinfo=UTC)
        return super()._deserialize(value, attr, data, **kwargs)


class AppointmentQuerySchema(Schema):
    """GET /api/v1/appointments filters; every one is optional, an empty one is no filter."""

    start = DayOrInstant(
        metadata={
            "description": "appointments starting at or after this (an instant or a day)",
            "example": "2026-12-01",
        }
    )
    end = DayOrInstant(metadata={"description": "appointments starting before this"})
    status = fields.String(validate=validate.OneOf(STATUSES))
    patient_phone = Phone()

    @pre_load
    def _drop_empty(self, data, **kwargs):
        # `?start=&status=` means no filter, as a form that leaves a field blank sends it.
        return {k: data[k] for k in data if not (isinstance(data[k], str) and not data[k].strip())}


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


class PatientSchema(Schema):
    """A patient as the API shows it (intake answers are for staff, shown here too)."""

    phone = fields.String(metadata={"example": "4915112345678"})
    name = fields.String(allow_none=True)
    push_name = fields.String(allow_none=True)
    language = fields.String(allow_none=True)
    opted_out = fields.Boolean()
    opted_out_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    opt_out_message_id = fields.String(allow_none=True)
    state = fields.String(allow_none=True)
    handoff = fields.Boolean()
    intake = fields.Dict()


class StaffMessageSchema(Schema):
    """POST /patients/<phone>/messages: what reception writes to the patient."""

    text = Text(
        required=True,
        validate=[
            validate.Length(min=1, max=TEXT_BODY),
            validate.Regexp(r"\s*\S", error="must not be blank"),
        ],
        metadata={"example": "Hi Ana, Maria from reception here. Which day suits you?"},
    )


class StaffMessageReplySchema(Schema):
    queued = fields.Boolean()
    patient = fields.Nested(PatientSchema)


class HandoffReplySchema(Schema):
    resolved = fields.Boolean(metadata={"description": "false when there was no handoff"})
    patient = fields.Nested(PatientSchema)


class BroadcastCreateSchema(Schema):
    """A text and its audience: listed phones, every opted-in patient and/or a day's patients.

    Give at least one audience; a phone that is no phone number is a 400 `invalid_phone`.
    """

    openapi_rules = {
        "description": (
            "Give an audience: patient_phones (at least one), all_opted_in: true, and/or "
            "appointments_on (a clinic-local day). Opted-out patients are skipped."
        ),
        "anyOf": [
            {"required": ["patient_phones"], "properties": {"patient_phones": {"minItems": 1}}},
            {"required": ["all_opted_in"], "properties": {"all_opted_in": {"enum": [True]}}},
            _given("appointments_on", "string"),
        ],
    }

    text = Text(
        required=True,
        validate=[
            validate.Length(min=1, max=TEXT_BODY),
            validate.Regexp(r"\s*\S", error="must not be blank"),
        ],
        metadata={"example": "The clinic is closed on Friday, December 4."},
    )
    patient_phones = fields.List(
        Text(metadata={"pattern": PHONE_PATTERN, "example": PHONE_EXAMPLE}),
        load_default=list,
        validate=validate.Length(max=10_000),
        metadata={"example": [PHONE_EXAMPLE]},
    )
    all_opted_in = fields.Boolean(load_default=False)
    appointments_on = Day(
        load_default=None, allow_none=True, metadata={"description": "a clinic-local day"}
    )

    @validates_schema
    def _an_audience(self, data, **kwargs):
        if not (
            data.get("patient_phones") or data.get("all_opted_in") or data.get("appointments_on")
        ):
            raise ValidationError("give patient_phones, all_opted_in or appointments_on")


class BroadcastCreatedSchema(Schema):
    id = fields.Integer()
    status = fields.String()
    total = fields.Integer(metadata={"description": "distinct recipients"})


class BroadcastSchema(Schema):
    """Progress: CONTRACT §5's id/status/total/sent/failed/skipped, plus what is still due."""

    id = fields.Integer()
    status = fields.String()
    total = fields.Integer()
    sent = fields.Integer()
    failed = fields.Integer()
    skipped = fields.Integer()
    queued = fields.Integer()
    pending = fields.Integer()
    cancelled = fields.Integer()
    reason = fields.String(allow_none=True)
    audience = fields.String(allow_none=True)
    created_at = fields.String(allow_none=True, metadata={"format": "date-time"})


class ReportLineSchema(Schema):
    line = fields.Integer()
    uid = fields.String()
    reason = fields.String()


class ImportReportSchema(Schema):
    """The import report (CONTRACT §6)."""

    created = fields.Integer()
    updated = fields.Integer()
    cancelled = fields.Integer()
    unchanged = fields.Integer()
    skipped = fields.List(fields.Nested(ReportLineSchema))
    warnings = fields.List(fields.Nested(ReportLineSchema))
    errors = fields.List(fields.Nested(ReportLineSchema))
    busy_blocks = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        metadata={"description": "busy time kept from events with no patient phone"},
    )
    patients_created = fields.List(
        fields.Dict(), metadata={"description": "patients found in the file and created"}
    )


class ErrorBodySchema(Schema):
    code = fields.String(metadata={"example": "invalid_request"})
    message = fields.String()
    fields_ = fields.Dict(
        data_key="fields", metadata={"description": "per-field messages of a validation error"}
    )


class ErrorSchema(Schema):
    """Every 4xx: {"error": {"code", "message"}}."""

    error = fields.Nested(ErrorBodySchema)


# ------------------------------------------------------------------ admin routes (paginated)

MAX_PAGE = 1_000_000


class PageQuerySchema(Schema):
    """`?page=`: which page of a list (50 items each, newest first)."""

    page = fields.Integer(
        load_default=1,
        validate=validate.Range(min=1, max=MAX_PAGE),
        metadata={"example": 1, "description": "1 is the newest 50"},
    )


class AuditQuerySchema(PageQuerySchema):
    """Audit log filters; each is optional."""

    who = Text(validate=validate.Length(max=200), metadata={"description": "part of an email"})
    action = Text(validate=validate.Length(max=60), metadata={"example": "staff_added"})
    since = DayOrInstant(metadata={"description": "entries at or after this (an instant or a day)"})

    @pre_load
    def _drop_empty(self, data, **kwargs):
        return {k: data[k] for k in data if not (isinstance(data[k], str) and not data[k].strip())}


class PageSchema(Schema):
    """Which page this is, of how many, and how many items there are in all."""

    page = fields.Integer()
    pages = fields.Integer()
    total = fields.Integer()


class DeadEventSchema(Schema):
    """A webhook event the worker gave up on (its payload stays on the server)."""

    id = fields.Integer()
    kind = fields.String()
    status = fields.String(
        metadata={"description": "dead; pending after Retry, ignored after Dismiss"}
    )
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True)
    received_at = UTCInstant(allow_none=True)


class DeadEventPageSchema(PageSchema):
    items = fields.List(fields.Nested(DeadEventSchema))


class DeadMessageSchema(Schema):
    """A message that could not be sent."""

    id = fields.Integer()
    chat_id = fields.String()
    purpose = fields.String()
    status = fields.String(metadata={"description": "after Retry pending, after Dismiss cancelled"})
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True)
    text = fields.String(metadata={"description": "the visible text, to recognise it"})
    created_at = UTCInstant(allow_none=True)


class DeadMessagePageSchema(PageSchema):
    items = fields.List(fields.Nested(DeadMessageSchema))


class AuditEntrySchema(Schema):
    """One staff action: who, what, when, from where."""

    id = fields.Integer()
    at = UTCInstant()
    who = fields.String(metadata={"description": "the staff email, or the API token"})
    action = fields.String()
    target = fields.String()
    detail = fields.Dict()
    address = fields.String()


class AuditPageSchema(PageSchema):
    items = fields.List(fields.Nested(AuditEntrySchema))


class StaffUserSchema(Schema):
    id = fields.Integer()
    email = fields.String()
    first_name = fields.String(allow_none=True)
    role = fields.String(validate=validate.OneOf(("admin", "reception")))
    disabled = fields.Boolean()
    created_at = UTCInstant(allow_none=True)


class StaffUserPageSchema(PageSchema):
    items = fields.List(fields.Nested(StaffUserSchema))


class ApiTokenSchema(Schema):
    """A token as admins see it: never the token itself, which only its creator saw."""

    id = fields.Integer()
    name = fields.String()
    role = fields.String(validate=validate.OneOf(("admin", "reception")))
    created_at = UTCInstant(allow_none=True)
    last_used_at = UTCInstant(allow_none=True, metadata={"description": "to the minute"})


class ApiTokenPageSchema(PageSchema):
    items = fields.List(fields.Nested(ApiTokenSchema))
