"""/api/v1/calendar/imports: upload an .ics file (multipart) and get the import report."""

from __future__ import annotations

from flask import request
from flask_smorest.fields import Upload
from marshmallow import Schema, fields, pre_load, validate
from sqlalchemy.exc import OperationalError

from clinic_bot.adapters.ical.importer import MAX_IMPORT_BYTES, MODES, CalendarRefused
from clinic_bot.core.runtime import get_runtime
from clinic_bot.web.api.base import Blueprint
from clinic_bot.web.api.errors import fail
from clinic_bot.web.api.schemas import ID_LENGTH, ErrorSchema, ImportReportSchema, Text
from clinic_bot.web.calendar_sync import run_import

blp = Blueprint("api_calendar", __name__, description="Import .ics calendars into appointments")

IMPORT_EXAMPLE = {
    "file": (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Front desk//EN\r\nBEGIN:VEVENT\r\n"
        "UID:example-1@front-desk\r\nDTSTART:20261201T090000Z\r\nDTEND:20261201T093000Z\r\n"
        "SUMMARY:Check-up\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    ),
    "dry_run": True,
}


class ImportFormSchema(Schema):
    """The multipart form: the .ics file and how to read it."""

    file = Upload(required=True, metadata={"description": "the .ics file"})
    dry_run = fields.Boolean(load_default=False, metadata={"description": "change nothing"})
    mode = fields.String(load_default="merge", validate=validate.OneOf(MODES))
    source = Text(
        load_default=None,
        validate=ID_LENGTH,
        metadata={"description": "default: X-WR-CALNAME, else PRODID"},
    )
    practitioner_id = Text(load_default=None, validate=ID_LENGTH)

    @pre_load
    def _drop_blank(self, data, **kwargs):
        # A form field left empty (`-F source=`) means "not given", as it did before.
        return {k: data[k] for k in data if not (isinstance(data[k], str) and not data[k].strip())}


@blp.before_request
def _allow_calendar_sized_bodies():
    # Before the form is parsed: the arguments decorator reads it ahead of the view.
    request.max_content_length = MAX_IMPORT_BYTES


@blp.route("/calendar/imports", methods=["POST"])
@blp.arguments(ImportFormSchema, location="multipart", example=IMPORT_EXAMPLE)
@blp.response(200, ImportReportSchema, description="the import report (CONTRACT §6)")
@blp.alt_response(413, schema=ErrorSchema, description="the file is over 10 MiB")
@blp.alt_response(422, schema=ErrorSchema, description="the file is refused (nothing was changed)")
@blp.alt_response(503, schema=ErrorSchema, description="the database is busy; try again")
def import_calendar_file(form):
    """Import an .ics calendar file into appointments

    Events become appointments (source `ics`), upserted by UID (an occurrence of a series:
    `UID#<RECURRENCE-ID in UTC>`). Recurring series are expanded for the next 90 days; all-day
    events are skipped. `mode=full` treats the file as a snapshot and cancels this source's
    future appointments missing from it.
    """
    runtime = get_runtime()
    raw = form["file"].read()
    try:
        # Read and expanded outside the write transaction; the write itself is short.
        report = run_import(
            runtime,
            raw,
            mode=form["mode"],
            source=form["source"] or None,
            practitioner_id=form["practitioner_id"] or None,
            dry_run=form["dry_run"],
        )
    except CalendarRefused as exc:
        fail(422, "calendar_refused", exc.reason)
    except OperationalError:
        fail(503, "database_busy", "the database is busy; try the import again")
    return report
