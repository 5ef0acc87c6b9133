"""Admin pages that look back: the audit log (filters, paginated) and the weekly dashboard."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from flask import render_template, request
from sqlalchemy import func, select

from clinic_bot.core.clock import local_day_bounds
from clinic_bot.core.runtime import get_runtime
from clinic_bot.models import Appointment, AuditEntry, OutboxMessage, Patient
from clinic_bot.models.reminders import SPECIAL_KINDS, Reminder
from clinic_bot.web.staff import queries
from clinic_bot.web.staff.auth import admin_required
from clinic_bot.web.staff.blueprint import bp

WEEKS = 9  # this week and the 8 before it


@bp.get("/audit")
@admin_required
def audit_log():
    """Every staff action, newest first, filtered by who, what and when."""
    rt = get_runtime()
    who = request.args.get("who", "").strip()[:200]
    action = request.args.get("action", "").strip()[:60]
    since_raw = request.args.get("since", "").strip()
    start = None
    try:
        if since_raw:
            start, _ = local_day_bounds(date.fromisoformat(since_raw), rt.profile.timezone)
    except ValueError:
        since_raw = ""
    stmt = queries.audit_entries(who=who, action=action, since=start)
    number = queries.page_number(request.args.get("page"))
    with rt.db.ReadSession() as s:
        page = queries.paginate(s, stmt, number)
        actions = list(
            s.execute(select(AuditEntry.action).distinct().order_by(AuditEntry.action)).scalars()
        )
        rows = [
            {
                "at": e.at,
                "who": e.staff_email,
                "action": e.action,
                "target": e.target,
                "detail": e.detail,
                "address": e.address,
            }
            for e in page.items
        ]
    return render_template(
        "staff/audit.html",
        rows=rows,
        page=page,
        actions=actions,
        who=who,
        action=action,
        since=since_raw,
    )


def _week_start(d: date) -> date:
    return d - timedelta(days=d.weekday())


def weekly_numbers(session, profile, now: datetime) -> list[dict]:
    """Per week (oldest first): appointments, confirmed, no-shows, cancelled, no-show rate."""
    today = now.astimezone(profile.timezone).date()
    first = _week_start(today) - timedelta(weeks=WEEKS - 1)
    weeks = []
    for i in range(WEEKS):
        monday = first + timedelta(weeks=i)
        start, _ = local_day_bounds(monday, profile.timezone)
        _, end = local_day_bounds(monday + timedelta(days=6), profile.timezone)
        counts = dict(
            session.execute(
                select(Appointment.status, func.count())
                .where(Appointment.starts_at >= start, Appointment.starts_at < end)
                .group_by(Appointment.status)
            ).all()
        )
        total = sum(counts.values())
        attended = counts.get("completed", 0) + counts.get("no_show", 0)
        weeks.append(
            {
                "monday": monday,
                "appointments": total,
                "confirmed": counts.get("confirmed", 0),
                "no_show": counts.get("no_show", 0),
                "cancelled": counts.get("cancelled", 0),
                "no_show_rate": round(100 * counts.get("no_show", 0) / attended) if attended else 0,
            }
        )
    return weeks


def reminder_funnel(session, since: datetime) -> list[tuple[str, int]]:
    """Reminders since `since`: sent → delivered → read → replied → confirmed."""
    rows = session.execute(
        select(OutboxMessage, Appointment.status, Patient.last_inbound_at)
        .join(Reminder, Reminder.outbox_key == OutboxMessage.idempotency_key)
        .join(Appointment, Appointment.id == Reminder.appointment_id)
        .outerjoin(Patient, Patient.id == Appointment.patient_id)
        .where(Reminder.kind.not_in(SPECIAL_KINDS), OutboxMessage.created_at >= since)
    ).all()
    sent = [m for m, _, _ in rows if m.sent_at]
    funnel = [
        ("sent", len(sent)),
        ("delivered", sum(1 for m in sent if m.delivered_at)),
        ("read", sum(1 for m in sent if m.read_at)),
        ("replied", sum(1 for m, _, last in rows if m.sent_at and last and last > m.sent_at)),
        ("confirmed", sum(1 for m, st, _ in rows if m.sent_at and st == "confirmed")),
    ]
    return funnel


def bars(values: list[int], width: int = 360, height: int = 120) -> list[dict]:
    """Bar geometry for a server-rendered SVG chart (no script, no inline style)."""
    top = max(values) if values and max(values) > 0 else 1
    step = width / max(1, len(values))
    out = []
    for i, v in enumerate(values):
        h = round(height * v / top)
        out.append(
            {
                "x": round(i * step + 2),
                "y": height - h,
                "w": max(1, round(step - 4)),
                "h": h,
                "v": v,
            }
        )
    return out


@bp.get("/dashboard")
@admin_required
def dashboard():
    """This week and the 8 before: appointments, confirmations, no-shows, cancellations, funnel."""
    rt = get_runtime()
    now = rt.clock()
    with rt.db.ReadSession() as s:
        weeks = weekly_numbers(s, rt.profile, now)
        funnel = reminder_funnel(s, now - timedelta(weeks=WEEKS))
    charts = [
        ("Appointments per week", bars([w["appointments"] for w in weeks])),
        ("No-show rate per week (%)", bars([w["no_show_rate"] for w in weeks])),
    ]
    return render_template(
        "staff/dashboard.html",
        weeks=weeks,
        funnel=funnel,
        funnel_bars=bars([n for _, n in funnel]),
        charts=charts,
    )
