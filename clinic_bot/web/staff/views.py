"""The staff pages: the day's appointments and problems (the calendar page: web.staff.calendar)."""

from __future__ import annotations

from datetime import date, timedelta

from flask import g, render_template, request

from clinic_bot.core.runtime import get_runtime
from clinic_bot.web.staff import queries
from clinic_bot.web.staff.blueprint import bp

UNHEALTHY_CHANNEL = ("LOGGED_OUT", "QR", "ERROR", "STOP")


@bp.context_processor
def _staff_page_context():
    """What every staff page's header shows: who is in, how many problems wait, the zone."""
    staff = getattr(g, "staff", None)
    count = 0
    if staff is not None:
        with get_runtime().db.ReadSession() as s:
            count = queries.problem_count(s)
    profile = get_runtime().profile
    return {
        "staff": staff,
        "problem_count": count,
        "clinic": profile,
        "clinic_tz": profile.timezone,
    }


def local_today() -> date:
    """Today's date at the clinic."""
    rt = get_runtime()
    return rt.clock().astimezone(rt.profile.timezone).date()


@bp.get("/")
def day():
    """The appointments of one clinic-local day (today unless ?date=YYYY-MM-DD)."""
    rt = get_runtime()
    error = None
    raw = request.args.get("date", "").strip()
    try:
        shown = date.fromisoformat(raw) if raw else local_today()
    except ValueError:
        shown, error = local_today(), f"{raw!r} is not a date (YYYY-MM-DD); showing today."
    with rt.db.ReadSession() as s:
        rows = queries.appointments_on(s, shown, rt.profile)
    return render_template(
        "staff/day.html",
        day=shown,
        today=local_today(),
        previous=shown - timedelta(days=1),
        following=shown + timedelta(days=1),
        rows=rows,
        error=error,
    )


@bp.get("/problems")
def problems():
    """Dead-lettered events and messages with their errors, the channel and the worker."""
    rt = get_runtime()
    now = rt.clock()
    with rt.db.ReadSession() as s:
        events = queries.dead_inbox_events(s)
        messages = queries.dead_outbox_messages(s)
        state = queries.system_state(s, now)
        previews = {m.id: queries.outbox_preview(m) for m in messages}
    # A worker is late when it missed several ticks; a minute covers slow ticks and restarts.
    late_after = max(timedelta(minutes=1), 6 * timedelta(seconds=rt.settings.worker_tick_seconds))
    return render_template(
        "staff/problems.html",
        events=events,
        messages=messages,
        previews=previews,
        state=state,
        worker_late=state.worker_age is None or state.worker_age > late_after,
        channel_bad=state.channel_status in UNHEALTHY_CHANNEL,
        sandbox=rt.settings.sandbox,
    )
