"""/api/v1/calendar/imports: upload an .ics file (multipart) and get the import report."""

from __future__ import annotations

from flask import jsonify, request
from sqlalchemy.exc import OperationalError

from clinic_bot.adapters.ical.importer import MAX_IMPORT_BYTES, MODES, CalendarRefused
from clinic_bot.core.runtime import get_runtime
from clinic_bot.web.api.auth import api_error
from clinic_bot.web.api.blueprint import bp
from clinic_bot.web.api.openapi import document, error_response
from clinic_bot.web.calendar_sync import run_import

TRUE = ("1", "true", "yes", "on")


@bp.post("/calendar/imports")
def import_calendar_file():
    """Import the uploaded .ics; 200 with the report, 422 when the file is refused."""
    request.max_content_length = MAX_IMPORT_BYTES
    runtime = get_runtime()
    upload = request.files.get("file")
    if upload is None:
        return api_error(400, "invalid_request", "send the .ics file as multipart field 'file'")
    mode = request.form.get("mode", "merge")
    if mode not in MODES:
        return api_error(400, "invalid_request", f"mode must be one of {', '.join(MODES)}")
    dry_run = request.form.get("dry_run", "false").strip().lower() in TRUE
    raw = upload.read()
    try:
        # Read and expanded outside the write transaction; the write itself is short.
        report = run_import(
            runtime,
            raw,
            mode=mode,
            source=request.form.get("source") or None,
            practitioner_id=request.form.get("practitioner_id") or None,
            dry_run=dry_run,
        )
    except CalendarRefused as exc:
        return api_error(422, "calendar_refused", exc.reason)
    except OperationalError:
        return api_error(503, "database_busy", "the database is busy; try the import again")
    return jsonify(report), 200


document(
    "/calendar/imports",
    {
        "post": {
            "summary": "Import an .ics calendar file into appointments",
            "description": (
                "Events become appointments (source `ics`), upserted by UID (an occurrence of a "
                "series: `UID#<RECURRENCE-ID in UTC>`). Recurring series are expanded for the "
                "next 90 days; all-day events are skipped. `mode=full` treats the file as a "
                "snapshot and cancels this source's future appointments missing from it."
            ),
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file"],
                            "properties": {
                                "file": {"type": "string", "format": "binary"},
                                "dry_run": {"type": "boolean", "default": False},
                                "mode": {"type": "string", "enum": list(MODES)},
                                "source": {
                                    "type": "string",
                                    "description": "default: X-WR-CALNAME, else PRODID",
                                },
                                "practitioner_id": {"type": "string"},
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "The import report (CONTRACT §6)",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    **{
                                        k: {"type": "integer"}
                                        for k in ("created", "updated", "cancelled", "unchanged")
                                    },
                                    **{
                                        k: {"type": "array", "items": {"type": "object"}}
                                        for k in ("skipped", "warnings", "errors")
                                    },
                                },
                            }
                        }
                    },
                },
                "400": error_response("No file, or a bad mode"),
                "401": error_response("Missing or unknown token"),
                "413": error_response("The file is over 10 MiB"),
                "422": error_response("The file is refused (nothing was changed)"),
            },
        }
    },
)
