"""The staff pages: day and week views, problems (dead letters, channel, worker), calendar."""

from __future__ import annotations

from datetime import date, timedelta

from flask import g, render_template, request, url_for

from clinic_bot.core.runtime import get_runtime
from clinic_bot.models.statuses import AppointmentStatus
from clinic_bot.web.staff import queries
from clinic_bot.web.staff.auth import admin_required
from clinic_bot.web.staff.blueprint import bp

UNHEALTHY_CHANNEL = ("LOGGED_OUT", "QR", "ERROR", "STOP")
STATUSES = [s.value for s in AppointmentStatus]


@bp.context_processor
def _staff_page_context():
    """What every staff page's header shows: who is in, who waits, problems, the channel."""
    staff = getattr(g, "staff", None)
    count = waiting = 0
    banner = None
    profile = get_runtime().profile
    if staff is not None:
        with get_runtime().db.ReadSession() as s:
            count = queries.problem_count(s)
            waiting = queries.waiting_count(s)
            banner = queries.channel_banner(s, profile)
    return {
        "page_url": page_url,
        "staff": staff,
        "problem_count": count,
        "waiting_count": waiting,
        "channel_banner": banner,
        "clinic": profile,
        "clinic_tz": profile.timezone,
    }


def page_url(param: str, number: int) -> str:
    """This page's URL with one page number changed and every filter kept."""
    args = request.args.to_dict()
    args[param] = number
    return url_for(request.endpoint, **(request.view_args or {}), **args)


def local_today() -> date:
    """Today's date at the clinic."""
    rt = get_runtime()
    return rt.clock().astimezone(rt.profile.timezone).date()


def _shown_day() -> tuple[date, str | None]:
    raw = request.args.get("date", "").strip()
    try:
        return (date.fromisoformat(raw) if raw else local_today()), None
    except ValueError:
        return local_today(), f"{raw[:40]!r} is not a date (YYYY-MM-DD); showing today."


def _filters() -> tuple[str | None, str | None]:
    rt = get_runtime()
    practitioner = request.args.get("practitioner", "").strip() or None
    if practitioner not in {p.id for p in rt.profile.practitioners} | {"-", None}:
        practitioner = None
    status = request.args.get("status", "").strip() or None
    if status not in STATUSES:
        status = None
    return practitioner, status


def _columns(rows, busy):
    """One column per practitioner (profile order), then unassigned, each with its rows."""
    rt = get_runtime()
    cols = [{"id": p.id, "name": p.name, "rows": [], "busy": []} for p in rt.profile.practitioners]
    cols.append({"id": None, "name": "Unassigned", "rows": [], "busy": []})
    by_id = {c["id"]: c for c in cols}
    for r in rows:
        by_id.get(r.practitioner_id, by_id[None])["rows"].append(r)
    for b in busy:
        if b.practitioner_id is None:
            for c in cols:
                c["busy"].append(b)
        else:
            by_id.get(b.practitioner_id, by_id[None])["busy"].append(b)
    return [c for c in cols if c["id"] is not None or c["rows"]]


@bp.get("/")
def day():
    """One clinic-local day's appointments (today unless ?date=YYYY-MM-DD), per practitioner."""
    rt = get_runtime()
    shown, error = _shown_day()
    practitioner, status = _filters()
    with rt.db.ReadSession() as s:
        rows = queries.appointments_on(
            s, shown, rt.profile, practitioner_id=practitioner, status=status, now=rt.clock()
        )
        busy = queries.busy_blocks(s, shown, rt.profile)
    return render_template(
        "staff/day.html",
        day=shown,
        today=local_today(),
        previous=shown - timedelta(days=1),
        following=shown + timedelta(days=1),
        rows=rows,
        truncated=len(rows) >= queries.DAY_LIMIT,
        columns=_columns(rows, busy),
        busy=busy,
        error=error,
        practitioner=practitioner,
        status=status,
        statuses=STATUSES,
    )


@bp.get("/week")
def week():
    """Seven days from the Monday of the week shown, one block per day."""
    rt = get_runtime()
    shown, error = _shown_day()
    practitioner, status = _filters()
    monday = shown - timedelta(days=shown.weekday())
    with rt.db.ReadSession() as s:
        rows = queries.appointments_on(
            s,
            monday,
            rt.profile,
            days=7,
            practitioner_id=practitioner,
            status=status,
            now=rt.clock(),
        )
        busy = queries.busy_blocks(s, monday, rt.profile, days=7)
    days = []
    for i in range(7):
        d = monday + timedelta(days=i)
        days.append(
            {
                "date": d,
                "rows": [r for r in rows if r.starts.date() == d],
                "busy": [b for b in busy if b.starts.date() <= d <= b.ends.date()],
            }
        )
    return render_template(
        "staff/week.html",
        monday=monday,
        days=days,
        today=local_today(),
        previous=monday - timedelta(days=7),
        following=monday + timedelta(days=7),
        truncated=len(rows) >= queries.DAY_LIMIT,
        error=error,
        practitioner=practitioner,
        status=status,
        statuses=STATUSES,
    )


@bp.get("/problems")
@admin_required
def problems():
    """Dead-lettered events and messages with their errors, the channel and the worker."""
    rt = get_runtime()
    now = rt.clock()
    page_in = queries.page_number(request.args.get("events_page"))
    page_out = queries.page_number(request.args.get("messages_page"))
    with rt.db.ReadSession() as s:
        events = queries.dead_inbox_events(s, page_in)
        messages = queries.dead_outbox_messages(s, page_out)
        state = queries.system_state(s, now)
        previews = {m.id: queries.outbox_preview(m) for m in messages.items}
        backlog = {"outbox": queries.pending_outbox(s), "inbox": queries.pending_inbox(s)}
    # A worker is late when it missed several ticks; a minute covers slow ticks and restarts.
    late_after = max(timedelta(minutes=1), 6 * timedelta(seconds=rt.settings.worker_tick_seconds))
    return render_template(
        "staff/problems.html",
        events=events,
        messages=messages,
        previews=previews,
        state=state,
        backlog=backlog,
        worker_late=state.worker_age is None or state.worker_age > late_after,
        channel_bad=state.channel_status in UNHEALTHY_CHANNEL,
        sandbox=rt.settings.sandbox,
    )
