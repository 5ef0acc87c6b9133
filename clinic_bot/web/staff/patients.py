"""Patient pages: search, and one patient's details, visits, opt-out history and edits."""

from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for
from sqlalchemy import select

from clinic_bot.core.runtime import get_runtime
from clinic_bot.domain.patients import opt_out
from clinic_bot.models import Appointment, Patient
from clinic_bot.web.staff import audit, queries
from clinic_bot.web.staff.actions import find_patients
from clinic_bot.web.staff.blueprint import bp


@bp.get("/patients")
def patients():
    """Find a patient by name or phone; without a query, the newest patients (one page)."""
    rt = get_runtime()
    query = request.args.get("q", "").strip()[:100]
    number = queries.page_number(request.args.get("page"))
    with rt.db.ReadSession() as s:
        if query:
            page = queries.Page(find_patients(s, query, limit=50), 1, 50, 0)
            page.total = len(page.items)
        else:
            page = queries.paginate(s, select(Patient).order_by(Patient.id.desc()), number)
        rows = [
            {
                "id": p.id,
                "name": p.name or p.push_name or "",
                "phone": f"+{p.phone}",
                "opted_out": p.opted_out,
                "handoff": p.handoff_since is not None,
            }
            for p in page.items
        ]
    return render_template("staff/patients.html", rows=rows, page=page, query=query)


@bp.get("/patients/<int:patient_id>")
def patient(patient_id: int):
    """One patient: details, opt-out history, intake answers, visits past and future."""
    rt = get_runtime()
    tz = rt.profile.timezone
    number = queries.page_number(request.args.get("page"))
    with rt.db.transaction() as s:
        p = s.get(Patient, patient_id)
        if p is None:
            return render_template("staff/not_found.html", what="patient"), 404
        visits = queries.paginate(
            s,
            select(Appointment)
            .where(Appointment.patient_id == p.id)
            .order_by(Appointment.starts_at.desc()),
            number,
            size=25,
        )
        ctx = {
            "p": {
                "id": p.id,
                "name": p.name or "",
                "push_name": p.push_name or "",
                "phone": f"+{p.phone}",
                "language": p.language or "",
                "opted_out": p.opted_out,
                "opted_out_at": p.opted_out_at,
                "opt_out_message_id": p.opt_out_message_id or "",
                "opted_in_at": p.opted_in_at,
                "opt_in_message_id": p.opt_in_message_id or "",
                "intake": dict(p.intake or {}),
                "handoff": p.handoff_since is not None,
            },
            "visits": [
                {
                    "id": a.id,
                    "starts": a.starts_at.astimezone(tz),
                    "service": a.service_id or "",
                    "practitioner": a.practitioner_id or "",
                    "status": a.status,
                    "past": a.starts_at <= rt.clock(),
                }
                for a in visits.items
            ],
            "page": visits,
            "languages": rt.profile.languages,
        }
        audit.record(s, "patient_viewed", f"patient:{patient_id}", page="patient")
    return render_template("staff/patient.html", **ctx)


@bp.post("/patients/<int:patient_id>/edit")
def edit_patient(patient_id: int):
    """Change the patient's name and language."""
    rt = get_runtime()
    name = request.form.get("name", "").strip()[:200]
    language = request.form.get("language", "").strip()
    if language and language not in rt.profile.languages:
        flash(f"Unknown language {language[:10]!r}.", "error")
        return redirect(url_for("staff.patient", patient_id=patient_id))
    with rt.db.transaction() as s:
        p = s.get(Patient, patient_id)
        if p is None:
            return render_template("staff/not_found.html", what="patient"), 404
        p.name = name or None
        p.language = language or None
        audit.record(s, "patient_edited", f"patient:{patient_id}", language=language)
    flash("Saved.")
    return redirect(url_for("staff.patient", patient_id=patient_id))


@bp.post("/patients/<int:patient_id>/opt-out")
def opt_out_patient(patient_id: int):
    """Opt a patient out on their request (at the desk); recorded with the staff member."""
    rt = get_runtime()
    with rt.db.transaction() as s:
        p = s.get(Patient, patient_id)
        if p is None:
            return render_template("staff/not_found.html", what="patient"), 404
        done = opt_out(s, p, f"staff:{g.staff.email}"[:200], rt.clock())
        if done:
            audit.record(s, "opt_out_changed", f"patient:{patient_id}", opted_out=True)
    flash("Opted out: no more messages to this patient." if done else "Already opted out.")
    return redirect(url_for("staff.patient", patient_id=patient_id))
