"""The broadcasts page: compose with a preview and recipient counts, then watch, pause, cancel."""

from __future__ import annotations

import re
from datetime import date

from flask import flash, g, redirect, render_template, request, url_for
from sqlalchemy import func, select

from clinic_bot.core.clock import local_day_bounds
from clinic_bot.core.runtime import get_runtime
from clinic_bot.domain import broadcasts as service
from clinic_bot.domain.messages import TEXT_BODY
from clinic_bot.domain.phones import InvalidPhone, normalize_phone
from clinic_bot.models import Appointment, Patient
from clinic_bot.models.appointments import ACTIVE_STATUSES
from clinic_bot.models.broadcasts import Broadcast
from clinic_bot.web.staff import audit, queries
from clinic_bot.web.staff.blueprint import bp

TEMPLATE_PREFIX = "broadcast_template_"
MAX_PHONES = 5000


def templates(profile) -> list[tuple[str, str]]:
    """Ready-made broadcast texts from the profile (`broadcast_template_*`, clinic language)."""
    texts = profile.texts.get(profile.language) or {}
    return [
        (k[len(TEMPLATE_PREFIX) :].replace("_", " "), v)
        for k, v in sorted(texts.items())
        if k.startswith(TEMPLATE_PREFIX)
    ]


def _audience(form) -> tuple[service.Audience, list[str]]:
    kind = form.get("audience", "day")
    errors = []
    if kind == "all":
        return service.Audience(all_opted_in=True), errors
    if kind == "list":
        raw = [x for x in re.split(r"[\n,;]+", form.get("phones", "")) if x.strip()]
        if len(raw) > MAX_PHONES:
            errors.append(f"At most {MAX_PHONES} phones at once.")
        phones = []
        for x in raw[:MAX_PHONES]:
            try:
                phones.append(normalize_phone(x.strip()))
            except InvalidPhone as exc:
                errors.append(f"{x.strip()[:40]}: {exc}")
        if not phones and not errors:
            errors.append("Paste at least one phone number.")
        return service.Audience(phones=phones), errors
    try:
        day = date.fromisoformat(form.get("day", ""))
    except ValueError:
        return service.Audience(), ["Choose the day whose patients get the message."]
    return service.Audience(appointments_on=day), errors


def count_audience(session, profile, audience: service.Audience) -> tuple[int, int]:
    """(recipients, of whom opted out) without creating anything."""
    if audience.all_opted_in:
        n = session.execute(
            select(func.count()).select_from(Patient).where(Patient.opted_out.is_(False))
        ).scalar_one()
        return n, 0
    if audience.appointments_on:
        start, end = local_day_bounds(audience.appointments_on, profile.timezone)
        ids = select(Appointment.patient_id).where(
            Appointment.starts_at >= start,
            Appointment.starts_at < end,
            Appointment.status.in_(ACTIVE_STATUSES),
        )
        rows = session.execute(select(Patient.opted_out).where(Patient.id.in_(ids))).scalars()
        flags = list(rows)
        return len(flags), sum(1 for f in flags if f)
    phones = set(audience.phones or [])
    out = session.execute(
        select(func.count()).where(Patient.phone.in_(phones), Patient.opted_out.is_(True))
    ).scalar_one()
    return len(phones), out


@bp.route("/broadcasts", methods=["GET", "POST"])
def broadcasts():
    """Compose: text, audience, preview and counts; a second step sends."""
    rt = get_runtime()
    form = request.form if request.method == "POST" else request.args
    text = form.get("text", "").strip()
    errors, preview = [], None
    if request.method == "POST":
        audience, errors = _audience(form)
        if not text:
            errors.append("Write the message.")
        if len(text) > TEXT_BODY:
            errors.append(f"The message is longer than {TEXT_BODY} characters.")
        if not errors:
            with rt.db.ReadSession() as s:
                total, skipped = count_audience(s, rt.profile, audience)
            preview = {"total": total, "skipped": skipped, "audience": audience.describe()}
            if form.get("send") == "1":
                try:
                    with rt.db.transaction() as s:
                        b = service.create(
                            s,
                            rt.profile,
                            text=text,
                            audience=audience,
                            now=rt.clock(),
                            created_by=g.staff.email[:100],
                        )
                        audit.record(
                            s,
                            "broadcast_sent",
                            f"broadcast:{b.id}",
                            total=b.total,
                            audience=b.audience,
                        )
                        bid = b.id
                    rt.waker.wake()
                    return redirect(url_for("staff.broadcast", broadcast_id=bid))
                except service.BroadcastError as exc:
                    errors.append(str(exc))
    number = queries.page_number(request.args.get("page"))
    with rt.db.ReadSession() as s:
        page = queries.paginate(s, select(Broadcast).order_by(Broadcast.id.desc()), number, 20)
        recent = [service.progress(s, b) for b in page.items]
    return (
        render_template(
            "staff/broadcasts.html",
            text=text,
            form=form,
            errors=errors,
            preview=preview,
            templates=templates(rt.profile),
            recent=recent,
            page=page,
            max_text=TEXT_BODY,
        ),
        400 if errors else 200,
    )


def _progress(broadcast_id: int):
    with get_runtime().db.ReadSession() as s:
        b = s.get(Broadcast, broadcast_id)
        if b is None:
            return None
        p = service.progress(s, b)
        p["text"] = b.text
    p["done"] = p["sent"] + p["failed"] + p["skipped"] + p.get("cancelled", 0)
    p["remaining"] = max(0, p["total"] - p["done"])
    p["percent"] = 100 if not p["total"] else int(100 * p["done"] / p["total"])
    return p


@bp.get("/broadcasts/<int:broadcast_id>")
def broadcast(broadcast_id: int):
    """One broadcast's live progress, with pause, resume and cancel."""
    p = _progress(broadcast_id)
    if p is None:
        return render_template("staff/not_found.html", what="broadcast"), 404
    return render_template("staff/broadcast.html", b=p)


@bp.get("/broadcasts/<int:broadcast_id>/progress")
def broadcast_progress(broadcast_id: int):
    """The progress block alone (polled by the page)."""
    p = _progress(broadcast_id)
    if p is None:
        return "", 404
    return render_template("staff/_broadcast_progress.html", b=p)


@bp.post("/broadcasts/<int:broadcast_id>/<action>")
def broadcast_control(broadcast_id: int, action: str):
    """Pause, resume or cancel."""
    if action not in ("pause", "resume", "cancel"):
        return render_template("staff/not_found.html", what="action"), 404
    rt = get_runtime()
    now = rt.clock()
    try:
        with rt.db.transaction() as s:
            b = s.get(Broadcast, broadcast_id)
            if b is None:
                return render_template("staff/not_found.html", what="broadcast"), 404
            if action == "pause":
                service.pause(s, b, f"paused by {g.staff.email}", now)
            elif action == "resume":
                service.resume(s, b, now)
            else:
                service.cancel(s, b, f"cancelled by {g.staff.email}", now)
            audit.record(s, f"broadcast_{action}", f"broadcast:{broadcast_id}")
    except service.BroadcastError as exc:
        flash(str(exc), "error")
    rt.waker.wake()
    return redirect(url_for("staff.broadcast", broadcast_id=broadcast_id))
