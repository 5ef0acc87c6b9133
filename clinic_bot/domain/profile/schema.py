"""The clinic profile's TOML schema: every key's type, default and meaning, declared once.

An unknown or misspelled key is refused (marshmallow's RAISE), so a typo never silently leaves a
setting at its default. `describe()` renders this schema as the reference table in docs/profile.md.
"""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, missing, validate, validates_schema

from clinic_bot.domain.profile.fields import (
    WEEKDAYS,
    Closure,
    Duration,
    Entries,
    Flag,
    Localized,
    Phrases,
    QuietHours,
    Table,
    Text,
    TimeZone,
    Weekly,
    WholeNumber,
    check_placeholders,
    parse_duration,
)

# What an FAQ answer may use; the conversation fills them in when it answers.
FAQ_PLACEHOLDERS = ("address", "map_link", "hours", "phone", "clinic")
FAQ_ID = r"^[a-z0-9][a-z0-9_-]*$"


def _doc(text: str, example: str | None = None) -> dict:
    return {"description": text, **({"example": example} if example else {})}


class Offsets(fields.Field):
    """Reminder offsets like ["24h", "2h"], kept with their labels; no offset twice."""

    def _deserialize(self, value, attr, data, **kwargs) -> list[tuple[str, object]]:
        if not isinstance(value, list):
            raise ValidationError('must be a list like ["24h", "2h"]')
        out, errors = [], {}
        for i, raw in enumerate(value):
            try:
                out.append((raw, parse_duration(raw, positive=True)))
            except ValidationError as exc:
                errors[i] = exc.messages
        if errors:
            raise ValidationError(errors)
        if len({label for label, _ in out}) != len(out):
            raise ValidationError("has the same offset twice")
        return out


class IntakeOption(fields.Field):
    """An intake answer: "Yes", or { id = "yes", title = "Yes" | { en = …, es = … } }."""

    def _deserialize(self, value, attr, data, **kwargs) -> dict:
        if isinstance(value, str):
            return {"id": value, "title": value}
        if isinstance(value, dict) and "id" in value and "title" in value:
            unknown = set(value) - {"id", "title"}
            if unknown:
                raise ValidationError(f"unknown key {sorted(unknown)[0]!r}: use id and title")
            return {
                "id": str(value["id"]),
                "title": Localized()._deserialize(value["title"], "", {}),
            }
        raise ValidationError("must be a text or a table with id and title")


class Texts(fields.Field):
    """[texts.<lang>] tables of key = text; the shipped texts fill whatever a clinic leaves out."""

    def _deserialize(self, value, attr, data, **kwargs) -> dict[str, dict[str, str]]:
        if not isinstance(value, dict):
            raise ValidationError("must be a table of [texts.<language>] tables")
        errors = {}
        for lang, table in value.items():
            if not isinstance(table, dict):
                errors[lang] = ["must be a table of key = text"]
        if errors:
            raise ValidationError(errors)
        return {lang: {k: str(v) for k, v in table.items()} for lang, table in value.items()}


class ClinicSchema(Schema):
    name = Text(required=True, metadata=_doc("The clinic's name, as patients read it"))
    timezone = TimeZone(
        required=True, metadata=_doc("IANA zone of every clinic-local time", "Europe/Berlin")
    )
    language = Text(load_default="en", metadata=_doc("Default language for patients", "en"))
    phone = Text(load_default="", metadata=_doc("The clinic's phone, shown to patients"))
    address = Text(load_default="", metadata=_doc("Street address, shown in reminders"))
    phone_region = Text(
        load_default="",
        metadata=_doc("Region of national numbers in calendar files (default: the phone's)", "DE"),
    )


class RemindersSchema(Schema):
    offsets = Offsets(
        load_default=lambda: ["24h", "2h"],
        metadata=_doc("Reminders before the start instant, in real elapsed time", '["24h", "2h"]'),
    )
    noshow_followup_after = Duration(
        load_default="2h",
        metadata=_doc("A reminder read with no reply this long gets one follow-up", "2h"),
    )
    followup_on_delivered = Flag(
        load_default=False,
        metadata=_doc("Also start that clock on 'delivered' (patients with read receipts off)"),
    )
    late_send_min_before = Duration(
        load_default="30m",
        metadata=_doc("After downtime, a late reminder goes out only this long before start"),
    )
    thank_you_after_visit = Flag(
        load_default=False, metadata=_doc("Send a thank-you when a visit is marked completed")
    )


class BroadcastsSchema(Schema):
    min_interval = Duration(load_default="3s", metadata=_doc("Pacing between two sends", "3s"))
    jitter = Duration(load_default="2s", metadata=_doc("Plus a random 0..jitter", "2s"))
    daily_cap = WholeNumber(1, load_default=1000, metadata=_doc("Broadcast sends per day at most"))
    quiet_hours = QuietHours(
        load_default=lambda: ["21:00", "08:00"],
        metadata=_doc("No broadcast sends between these (may span midnight); [] disables"),
    )


class RetentionSchema(Schema):
    keep = Duration(
        positive=True,
        load_default="180d",
        metadata=_doc(
            "Message bodies, webhook payloads and intake answers older than this are removed "
            "daily (metadata stays)",
            "180d",
        ),
    )


class BookingSchema(Schema):
    slot_step = Duration(
        positive=True, load_default="15m", metadata=_doc("Distance between offered start times")
    )
    horizon_days = WholeNumber(
        1, 365, load_default=30, metadata=_doc("How many days ahead patients can book")
    )
    min_notice = Duration(load_default="2h", metadata=_doc("Earliest bookable start from now"))
    idle_reset = Duration(
        load_default="30m", metadata=_doc("A patient idle this long starts again at the menu")
    )
    handoff_idle = Duration(
        load_default="24h", metadata=_doc("A handoff nobody resolved ends after this long")
    )
    notify_patient_on_staff_booking = Flag(
        load_default=True, metadata=_doc("Tell the patient when staff book, move or cancel")
    )
    notify_patient_on_import = Flag(
        load_default=False,
        metadata=_doc("Tell the patient about an appointment a calendar import created"),
    )
    sign_staff_replies = Flag(
        load_default=True,
        metadata=_doc('End a staff reply with the staff member\'s first name ("— Rita")'),
    )
    intake_per_visit = Flag(
        load_default=False,
        metadata=_doc("Ask the intake questions at every booking and keep them on the visit"),
    )
    date_order = Text(
        load_default=None,
        validate=validate.OneOf(["DMY", "MDY", "YMD"], error="must be one of DMY, MDY, YMD"),
        metadata=_doc("How patients write 4/12 (default: MDY for a US clinic phone, else DMY)"),
    )
    waitlist_batch = WholeNumber(
        1,
        10,
        load_default=1,
        metadata=_doc("Waiting patients one freed time is offered to at once"),
    )
    waitlist_offer_ttl = Duration(
        positive=True,
        load_default="1h",
        metadata=_doc("How long a waitlist offer stays open before it passes on"),
    )
    closures = fields.List(
        Closure(),
        load_default=list,
        metadata=_doc("Closed days", '["2026-12-24..2026-12-26", "2026-12-31"]'),
    )


class ServiceSchema(Schema):
    id = Text(required=True, metadata=_doc("Stable id (used in calendars and the API)"))
    name = Text(required=True, metadata=_doc("Name shown to patients"))
    duration = Duration(positive=True, required=True, metadata=_doc("Length of a visit", "20m"))


class PractitionerSchema(Schema):
    id = Text(required=True, metadata=_doc("Stable id; 'any' is reserved"))
    name = Text(required=True, metadata=_doc("Name shown to patients"))
    services = fields.List(
        Text(),
        load_default=None,
        error_messages={"invalid": 'must be a list of service ids like ["checkup"]'},
        metadata=_doc("Service ids offered (default: all)"),
    )
    hours = Weekly(required=True, metadata=_doc("Opening hours per weekday", WEEKDAYS[0]))
    breaks = Weekly(load_default=dict, metadata=_doc("Breaks per weekday"))
    email = Text(
        load_default="", metadata=_doc("Organizer/attendee address naming them in calendar files")
    )
    calendar_names = fields.List(
        Text(),
        load_default=list,
        error_messages={"invalid": 'must be a list of calendar names like ["Dr. Lee"]'},
        metadata=_doc("Imported calendars (X-WR-CALNAME) that are theirs", '["Praxis Lee"]'),
    )

    @validates_schema
    def _id_not_reserved(self, data, **kwargs):
        if data.get("id") == "any":
            raise ValidationError(f"{data['id']!r} is reserved or used twice", "id")


class IntakeSchema(Schema):
    id = Text(required=True, metadata=_doc("Stable id of the question"))
    kind = Text(
        load_default="text",
        validate=validate.OneOf(
            ("buttons", "list", "text"), error="must be one of buttons, list, text"
        ),
        metadata=_doc("buttons (≤ 3 answers), list (≤ 10) or text"),
    )
    prompt = Localized(required=True, metadata=_doc("The question, per language"))
    options = fields.List(IntakeOption(), load_default=list, metadata=_doc("The answers"))

    @validates_schema
    def _options_fit_whatsapp(self, data, **kwargs):
        kind, options = data.get("kind"), data.get("options") or []
        if kind in ("buttons", "list") and not options:
            raise ValidationError(f"a {kind} question needs options", "options")
        if kind == "buttons" and len(options) > 3:
            raise ValidationError("WhatsApp shows at most 3 buttons: use kind 'list'", "options")
        if kind == "list" and len(options) > 10:
            raise ValidationError("WhatsApp lists hold at most 10 rows", "options")


class FaqSchema(Schema):
    id = Text(
        required=True,
        validate=validate.Regexp(
            FAQ_ID, error="must be lower-case letters, digits, - or _ (like 'parking')"
        ),
        metadata=_doc("Stable id of the question", "parking"),
    )
    triggers = Phrases(
        required=True,
        metadata=_doc(
            "What patients type, per language (typo-tolerant)",
            'triggers.en = ["parking", "where can I park"]',
        ),
    )
    answer = Localized(
        required=True,
        metadata=_doc(
            "The answer, per language; may use {address}, {map_link}, {hours}, {phone}, {clinic}"
        ),
    )

    @validates_schema
    def _answer_placeholders(self, data, **kwargs):
        answer = data.get("answer")
        answers = answer.items() if isinstance(answer, dict) else [(None, answer)]
        for lang, text in answers:
            try:
                check_placeholders(text or "", FAQ_PLACEHOLDERS)
            except ValidationError as exc:
                messages = {lang: exc.messages} if lang else exc.messages
                raise ValidationError(messages, "answer") from None


def _unique(items: list[dict], field_name: str, what: str, table: str) -> None:
    seen = set()
    for i, item in enumerate(items):
        if item[field_name] in seen:
            raise ValidationError(
                {table: {i: {field_name: [f"duplicate {what} {item[field_name]!r}"]}}}
            )
        seen.add(item[field_name])


class ProfileSchema(Schema):
    """The whole profile (CONTRACT §3); tables missing from the file take their defaults."""

    clinic = Table(
        ClinicSchema,
        required=True,
        error_messages={"required": "the [clinic] table is required"},
        metadata=_doc("Who the clinic is"),
    )
    reminders = Table(RemindersSchema, metadata=_doc("Appointment reminders and follow-ups"))
    broadcasts = Table(BroadcastsSchema, metadata=_doc("Pacing of broadcasts"))
    booking = Table(BookingSchema, metadata=_doc("What patients can book over WhatsApp"))
    retention = Table(RetentionSchema, metadata=_doc("How long message content is kept"))
    services = Entries(
        ServiceSchema,
        required=True,
        error_messages={"required": "at least one [[services]] entry is required"},
        metadata=_doc("What can be booked"),
    )
    practitioners = Entries(
        PractitionerSchema,
        required=True,
        error_messages={"required": "at least one [[practitioners]] entry is required"},
        metadata=_doc("Who sees patients, and when"),
    )
    intake = Entries(
        IntakeSchema, load_default=list, metadata=_doc("Questions asked at a first booking")
    )
    closures = fields.List(
        Closure(), load_default=None, metadata=_doc("Closed days (also allowed in [booking])")
    )
    faq = Entries(
        FaqSchema,
        load_default=None,
        metadata=_doc("Questions patients ask, and the answers (default: the shipped ones)"),
    )
    texts = Texts(load_default=dict, metadata=_doc("Patient-facing texts per language"))

    @validates_schema
    def _references_hold(self, data, **kwargs):
        services, practitioners = data["services"], data["practitioners"]
        if not services:
            raise ValidationError("at least one [[services]] entry is required", "services")
        if not practitioners:
            raise ValidationError(
                "at least one [[practitioners]] entry is required", "practitioners"
            )
        _unique(services, "id", "service id", "services")
        _unique(data["intake"], "id", "question id", "intake")
        _unique(data["faq"] or [], "id", "FAQ id", "faq")
        known = {s["id"] for s in services}
        for i, p in enumerate(practitioners):
            if any(p["id"] == q["id"] for q in practitioners[:i]):
                raise ValidationError(
                    {"practitioners": {i: {"id": [f"{p['id']!r} is reserved or used twice"]}}}
                )
            for sid in p["services"] or []:
                if sid not in known:
                    raise ValidationError(
                        {"practitioners": {i: {"services": [f"unknown service {sid!r}"]}}}
                    )


# The tables a file may leave out; they are loaded as empty tables so their defaults apply.
OPTIONAL_TABLES = ("reminders", "broadcasts", "booking", "retention")


def describe() -> str:
    """The schema as a Markdown reference: key, type/default and meaning, table by table."""
    lines = ["| key | default | meaning |", "|---|---|---|"]

    def walk(schema: Schema, prefix: str) -> None:
        for name, field in schema.fields.items():
            key = f"{prefix}{name}"
            nested = getattr(field, "nested", None) or getattr(
                getattr(field, "inner", None), "nested", None
            )
            default = field.load_default
            default = default() if callable(default) else default
            empty = default is None or default is missing or default in ({}, [])
            shown = "required" if field.required else ("" if empty else repr(default))
            lines.append(f"| `{key}` | {shown} | {field.metadata.get('description', '')} |")
            if nested is not None:
                walk(nested() if isinstance(nested, type) else nested, f"{key}.")

    walk(ProfileSchema(), "")
    return "\n".join(lines) + "\n"
