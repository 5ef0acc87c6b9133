"""The staff calendar page: upload an .ics, preview it (a dry run), apply it; history; feeds.

The uploaded bytes are kept with the preview, so Apply imports exactly the file that was
previewed, with the same practitioner and mode. The preview and the apply both read the file
outside the write transaction (see web.calendar_sync).
"""

from __future__ import annotations

import secrets
from datetime import date

from flask import abort, flash, g, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from clinic_bot.adapters.ical.importer import MAX_IMPORT_BYTES, MODES
from clinic_bot.core.runtime import get_runtime
from clinic_bot.models import Appointment, BusyBlock, CalendarImport
from clinic_bot.models.calendar import ImportedEvent
from clinic_bot.web.calendar_sync import CalendarRefused, run_import
from clinic_bot.web.feeds import active_feeds, create_feed, rotate_feed
from clinic_bot.web.staff import audit
from clinic_bot.web.staff.blueprint import bp

HISTORY = 20
# Room for the other form fields (practitioner, mode, CSRF token) beside the file itself.
FORM_OVERHEAD = 64 * 1024


@bp.url_value_preprocessor
def _upload_limit(endpoint, values):
    """Raise the body limit for the upload, before the CSRF check reads the form.

    URL value preprocessors run before any before_request hook, and the app-wide limit (1 MiB,
    for webhooks) would otherwise answer a calendar of a busy year with 413.
    """
    if endpoint == "staff.calendar_preview":
        request.max_content_length = MAX_IMPORT_BYTES + FORM_OVERHEAD


def _staff_email() -> str | None:
    staff = getattr(g, "staff", None)
    return staff.email if staff is not None else None


def _page(**extra):
    rt = get_runtime()
    with rt.db.ReadSession() as s:
        history = list(
            s.execute(
                select(CalendarImport)
                .where(CalendarImport.status != "preview")
                .order_by(CalendarImport.created_at.desc(), CalendarImport.id.desc())
                .limit(HISTORY)
            ).scalars()
        )
        feeds = active_feeds(s)
        for row in history + feeds:
            s.expunge(row)
    names = {p.id: p.name for p in rt.profile.practitioners}
    return render_template(
        "staff/calendar.html",
        practitioners=rt.profile.practitioners,
        practitioner_names=names,
        modes=MODES,
        history=history,
        feeds=feeds,
        max_mib=MAX_IMPORT_BYTES // (1024 * 1024),
        base_url=request.host_url.rstrip("/"),
        **extra,
    )


@bp.get("/calendar")
def calendar():
    """Upload form, import history and the subscription feeds."""
    return _page()


def _options() -> tuple[str | None, str]:
    rt = get_runtime()
    practitioner = request.form.get("practitioner_id", "").strip() or None
    if practitioner is not None and rt.profile.practitioner(practitioner) is None:
        raise CalendarRefused(f"unknown practitioner {practitioner!r}")
    mode = request.form.get("mode", "merge")
    if mode not in MODES:
        raise CalendarRefused(f"mode must be one of {', '.join(MODES)}")
    return practitioner, mode


@bp.post("/calendar/preview")
def calendar_preview():
    """Dry-run the uploaded file and show what it would do."""
    rt = get_runtime()
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _page(error="Choose an .ics file to upload."), 400
    raw = upload.read()
    details: dict = {}
    try:
        practitioner, mode = _options()
        report = run_import(
            rt, raw, mode=mode, practitioner_id=practitioner, dry_run=True, details=details
        )
    except CalendarRefused as exc:
        return _page(error=f"The file was refused: {exc.reason}. Nothing was changed."), 422
    except OperationalError:
        return _page(error="The database is busy; please try again in a moment."), 503
    token = secrets.token_urlsafe(24)
    with rt.db.transaction() as s:
        s.add(
            CalendarImport(
                token=token,
                staff_email=_staff_email(),
                filename=(upload.filename or "calendar.ics")[:300],
                size=len(raw),
                mode=mode,
                practitioner_id=practitioner,
                source=details.get("source"),
                status="preview",
                raw=raw,
                report=report,
                created_at=rt.clock(),
            )
        )
    return redirect(url_for("staff.calendar_import", token=token), code=303)


def _first_day(token: str) -> date | None:
    """The first clinic-local day the applied import put something on (for the day link)."""
    rt = get_runtime()
    with rt.db.ReadSession() as s:
        item = s.get(CalendarImport, _import_id(s, token))
        source = item.source or None
        if source is None:
            return None
        starts = s.execute(
            select(Appointment.starts_at)
            .join(ImportedEvent, ImportedEvent.appointment_id == Appointment.id)
            .where(ImportedEvent.source == source, Appointment.starts_at >= rt.clock())
            .order_by(Appointment.starts_at)
            .limit(1)
        ).scalar()
        if starts is None:
            starts = s.execute(
                select(BusyBlock.starts_at)
                .join(ImportedEvent, ImportedEvent.busy_block_id == BusyBlock.id)
                .where(ImportedEvent.source == source, BusyBlock.starts_at >= rt.clock())
                .order_by(BusyBlock.starts_at)
                .limit(1)
            ).scalar()
    return starts.astimezone(rt.profile.timezone).date() if starts else None


def _import_id(session, token: str) -> int:
    found = session.execute(select(CalendarImport.id).where(CalendarImport.token == token)).scalar()
    if found is None:
        abort(404)
    return found


@bp.get("/calendar/imports/<token>")
def calendar_import(token: str):
    """A preview waiting for Apply, or the result of an applied import."""
    rt = get_runtime()
    with rt.db.ReadSession() as s:
        item = s.get(CalendarImport, _import_id(s, token))
        s.expunge(item)
    names = {p.id: p.name for p in rt.profile.practitioners}
    first_day = _first_day(token) if item.status == "applied" else None
    return render_template(
        "staff/calendar_import.html",
        item=item,
        report=item.report or {},
        practitioner_name=names.get(item.practitioner_id or "", "found in the file"),
        first_day=first_day,
    )


@bp.post("/calendar/imports/<token>/apply")
def calendar_apply(token: str):
    """Import the previewed file for real; a second Apply changes nothing."""
    rt = get_runtime()
    with rt.db.ReadSession() as s:
        item = s.get(CalendarImport, _import_id(s, token))
        status, raw = item.status, item.raw
        mode, practitioner, source = item.mode, item.practitioner_id, item.source
    if status != "preview" or raw is None:
        return redirect(url_for("staff.calendar_import", token=token), code=303)
    try:
        report = run_import(rt, raw, mode=mode, source=source, practitioner_id=practitioner)
        outcome = "applied"
    except CalendarRefused as exc:
        report, outcome = {"refused": exc.reason}, "refused"
    except OperationalError:
        return redirect(url_for("staff.calendar_import", token=token, busy=1), code=303)
    with rt.db.transaction() as s:
        item = s.get(CalendarImport, _import_id(s, token))
        item.status, item.report, item.raw = outcome, report, None
        item.applied_at = rt.clock()
        item.staff_email = _staff_email() or item.staff_email
    return redirect(url_for("staff.calendar_import", token=token), code=303)


@bp.post("/calendar/feeds")
def calendar_feed_create():
    """A new feed link for the whole clinic or one practitioner, shown once."""
    rt = get_runtime()
    practitioner = request.form.get("practitioner_id", "").strip() or None
    if practitioner is not None and rt.profile.practitioner(practitioner) is None:
        return _page(error=f"Unknown practitioner {practitioner!r}."), 400
    with rt.db.transaction() as s:
        token = create_feed(s, practitioner, _staff_email(), rt.clock())
        audit.record(s, "feed_token_created", f"practitioner:{practitioner or 'all'}")
    return _page(new_feed_url=url_for("calendar_feed.feed", token=token, _external=True))


@bp.post("/calendar/feeds/<int:feed_id>/rotate")
def calendar_feed_rotate(feed_id: int):
    """Revoke a feed link and make a new one; the old link stops working at once.

    The operations page's Rotate buttons post here too (`from=operations`): one code path,
    and the new link is shown once on the page the button was on.
    """
    rt = get_runtime()
    from_operations = request.form.get("from") == "operations"
    with rt.db.transaction() as s:
        token = rotate_feed(s, feed_id, _staff_email(), rt.clock())
        if token is not None:
            audit.record(s, "feed_token_rotated", f"calendar_feed:{feed_id}")
    if token is None:
        if from_operations:
            flash("That feed link no longer exists.", "error")
            return redirect(url_for("staff.admin"))
        return _page(error="That feed link no longer exists."), 404
    url = url_for("calendar_feed.feed", token=token, _external=True)
    if from_operations:
        return render_template("staff/shown_once.html", title="New calendar feed link", secret=url)
    return _page(new_feed_url=url)
