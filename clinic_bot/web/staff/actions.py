"""Appointment actions from the day view, through the same booking service as WhatsApp and the API.

Create (free slot or forced time), move, cancel, confirm, completed, no-show. The patient is
told of a staff booking, move or cancellation when the profile's `notify_on_staff_booking`
says so. Each action writes an audit row in its own transaction.
"""

from __future__ import annotations

from datetime import date, datetime, time

from flask import flash, g, redirect, render_template, request, url_for
from sqlalchemy import or_, select

from clinic_bot.core.runtime import get_runtime
from clinic_bot.delivery.outbox import Outbox
from clinic_bot.domain import booking
from clinic_bot.domain.availability import free_slots
from clinic_bot.domain.patients import get_or_create_patient
from clinic_bot.domain.phones import InvalidPhone, normalize_phone
from clinic_bot.models import Appointment, Patient
from clinic_bot.web.staff import audit
from clinic_bot.web.staff.blueprint import bp

STATUS_ACTIONS = {"confirm": "confirmed", "complete": "completed", "no_show": "no_show"}


def _when_values(profile, lang, appt: Appointment) -> dict[str, str]:
    local = appt.starts_at.astimezone(profile.timezone)
    weekdays = [w.strip() for w in profile.text("reminder_weekdays", lang).split(",")]
    months = [m.strip() for m in profile.text("reminder_months", lang).split(",")]
    day = profile.text(
        "reminder_date", lang, day=local.day, month=months[local.month - 1], year=local.year
    )
    return {"weekday": weekdays[local.weekday()], "date": day, "time": f"{local:%H:%M}"}


def tell_patient(session, profile, appt: Appointment, change: str, now: datetime) -> bool:
    """Tell the patient staff booked, moved or cancelled their visit (profile switch)."""
    patient = appt.patient or (session.get(Patient, appt.patient_id) if appt.patient_id else None)
    if patient is None or not profile.notify_on_staff_booking:
        return False
    first = (patient.name or patient.push_name or "").split()
    key = {
        "created": "booking_staff_booked",
        "moved": "staff_moved",
        "cancelled": "staff_cancelled",
    }
    text = profile.text(
        key[change],
        patient.language,
        name_part=f" {first[0]}" if first else "",
        **_when_values(profile, patient.language, appt),
    )
    outbox = Outbox(session, now, key_prefix=f"staff-{change}:{appt.id}:{appt.version}")
    return outbox.text(patient, text, purpose="booking")


def _back(default_day: date | None = None):
    target = request.form.get("back", "")
    if target.startswith("/staff") and not target.startswith("//"):
        return redirect(target)
    return redirect(url_for("staff.day", date=default_day.isoformat() if default_day else None))


def _local_day(appt: Appointment) -> date:
    return appt.starts_at.astimezone(get_runtime().profile.timezone).date()


def _parse_local(day_raw: str, time_raw: str) -> datetime:
    """A clinic-local date and HH:MM as an aware instant."""
    tz = get_runtime().profile.timezone
    d = date.fromisoformat(day_raw.strip())
    t = time.fromisoformat(time_raw.strip())
    return datetime.combine(d, t, tzinfo=tz)


def find_patients(session, query: str, limit: int = 20) -> list[Patient]:
    """Patients whose name or phone contains the query (digits match the phone)."""
    query = query.strip()[:100]
    if not query:
        return []
    digits = "".join(ch for ch in query if ch.isdigit())
    cond = [Patient.name.ilike(f"%{query}%"), Patient.push_name.ilike(f"%{query}%")]
    if len(digits) >= 3:
        cond.append(Patient.phone.contains(digits))
    return list(
        session.execute(select(Patient).where(or_(*cond)).order_by(Patient.id).limit(limit))
        .scalars()
        .all()
    )


def _tell_and_audit(s, profile, appt, change: str, now, forced: bool):
    """After staff booked or moved a visit: tell the patient (per profile), audit, its day."""
    told = tell_patient(s, profile, appt, change, now)
    audit.record(
        s,
        f"appointment_{change}",
        f"appointment:{appt.id}",
        starts_at=appt.starts_at.isoformat(),
        forced=forced,
        patient_told=told,
    )
    return told, _local_day(appt)


@bp.route("/appointments/new", methods=["GET", "POST"])
def new_appointment():
    """Book for a patient: pick patient, service, practitioner and a free slot (or force a time)."""
    rt = get_runtime()
    profile = rt.profile
    now = rt.clock()
    form = request.values
    errors = []
    service_id = form.get("service_id") or (profile.services[0].id if profile.services else "")
    practitioner_id = form.get("practitioner_id") or ""
    try:
        day = date.fromisoformat(form.get("date", "")) if form.get("date") else None
    except ValueError:
        day, _ = None, errors.append("The date is not a date (YYYY-MM-DD).")
    day = day or now.astimezone(profile.timezone).date()
    if request.method == "POST":
        phone_raw = form.get("phone", "").strip()
        name = form.get("name", "").strip()[:200]
        force = form.get("force") == "1"
        try:
            phone = normalize_phone(phone_raw)
        except InvalidPhone as exc:
            phone, _ = None, errors.append(f"Phone: {exc}")
        starts = None
        try:
            if form.get("slot"):
                starts = datetime.fromisoformat(form["slot"])
            else:
                starts = _parse_local(form.get("date", ""), form.get("time", ""))
        except ValueError:
            errors.append("Choose a free time, or give a date and a time (HH:MM).")
        if not errors:
            try:
                with rt.db.transaction() as s:
                    patient = get_or_create_patient(s, phone, now)
                    if name:
                        patient.name = name
                    appt = booking.book(
                        s,
                        profile,
                        patient=patient,
                        service_id=service_id or None,
                        practitioner_id=practitioner_id or None,
                        starts_at=starts,
                        now=now,
                        source="staff",
                        enforce_hours=not force,
                        force=force,
                    )
                    told, appt_day = _tell_and_audit(s, profile, appt, "created", now, force)
                rt.waker.wake()
                flash("Appointment booked." + (" The patient is told." if told else ""))
                return redirect(url_for("staff.day", date=appt_day.isoformat()))
            except booking.BookingError as exc:
                errors.append(str(exc))
    slots = []
    if service_id and profile.service(service_id):
        with rt.db.ReadSession() as s:
            slots = free_slots(
                s,
                profile,
                service_id=service_id,
                practitioner_id=practitioner_id or None,
                day=day,
                now=now,
            )
    query = form.get("q", "")
    matches = []
    if query:
        with rt.db.ReadSession() as s:
            matches = [
                (p.name or p.push_name or "", f"+{p.phone}") for p in find_patients(s, query)
            ]
    return (
        render_template(
            "staff/new_appointment.html",
            errors=errors,
            form=form,
            day=day,
            service_id=service_id,
            practitioner_id=practitioner_id,
            slots=[
                (local.isoformat(), local, sl)
                for sl in slots
                for local in [sl.starts_at.astimezone(profile.timezone)]
            ],
            matches=matches,
            query=query,
        ),
        400 if errors else 200,
    )


def _load(s, appointment_id: int) -> Appointment | None:
    return s.get(Appointment, appointment_id)


@bp.route("/appointments/<int:appointment_id>/move", methods=["GET", "POST"])
def move_appointment(appointment_id: int):
    """Move an appointment to a free slot (or a forced time) of the same or another practitioner."""
    rt = get_runtime()
    profile = rt.profile
    now = rt.clock()
    errors = []
    with rt.db.ReadSession() as s:
        appt = _load(s, appointment_id)
        if appt is None:
            return render_template("staff/not_found.html", what="appointment"), 404
        current = appt.starts_at.astimezone(profile.timezone)
        service_id = appt.service_id
        practitioner_id = request.values.get("practitioner_id") or appt.practitioner_id or ""
        label = (appt.patient.name or appt.patient.push_name or "") if appt.patient else ""
    try:
        day = (
            date.fromisoformat(request.values.get("date", ""))
            if request.values.get("date")
            else current.date()
        )
    except ValueError:
        day = current.date()
    if request.method == "POST":
        force = request.form.get("force") == "1"
        try:
            if request.form.get("slot"):
                starts = datetime.fromisoformat(request.form["slot"])
            else:
                starts = _parse_local(request.form.get("date", ""), request.form.get("time", ""))
        except ValueError:
            starts = None
            errors.append("Choose a free time, or give a date and a time (HH:MM).")
        if starts is not None:
            try:
                with rt.db.transaction() as s:
                    appt = _load(s, appointment_id)
                    booking.reschedule(
                        s,
                        profile,
                        appt,
                        starts_at=starts,
                        practitioner_id=practitioner_id or None,
                        now=now,
                        enforce_hours=not force and bool(appt.service_id),
                        force=force,
                    )
                    told, appt_day = _tell_and_audit(s, profile, appt, "moved", now, force)
                rt.waker.wake()
                flash("Appointment moved." + (" The patient is told." if told else ""))
                return redirect(url_for("staff.day", date=appt_day.isoformat()))
            except booking.BookingError as exc:
                errors.append(str(exc))
    slots = []
    if service_id:
        with rt.db.ReadSession() as s:
            slots = free_slots(
                s,
                profile,
                service_id=service_id,
                practitioner_id=practitioner_id or None,
                day=day,
                now=now,
                ignore_ids=[appointment_id],
            )
    return (
        render_template(
            "staff/move_appointment.html",
            appointment_id=appointment_id,
            label=label,
            current=current,
            day=day,
            practitioner_id=practitioner_id,
            slots=[
                (local.isoformat(), local)
                for local in (sl.starts_at.astimezone(profile.timezone) for sl in slots)
            ],
            errors=errors,
        ),
        400 if errors else 200,
    )


@bp.post("/appointments/<int:appointment_id>/cancel")
def cancel_appointment(appointment_id: int):
    """Cancel (the page asked once, with a confirm step, before posting here)."""
    rt = get_runtime()
    now = rt.clock()
    if request.form.get("confirmed") != "yes":
        with rt.db.ReadSession() as s:
            appt = _load(s, appointment_id)
            if appt is None:
                return render_template("staff/not_found.html", what="appointment"), 404
            when = appt.starts_at.astimezone(rt.profile.timezone)
            label = (appt.patient.name or f"+{appt.patient.phone}") if appt.patient else appt.title
        return render_template(
            "staff/confirm_cancel.html",
            appointment_id=appointment_id,
            when=when,
            label=label or "",
            back=request.form.get("back", ""),
        )
    try:
        with rt.db.transaction() as s:
            appt = _load(s, appointment_id)
            if appt is None:
                return render_template("staff/not_found.html", what="appointment"), 404
            booking.cancel(s, appt, now=now)
            told = tell_patient(s, rt.profile, appt, "cancelled", now)
            audit.record(s, "appointment_cancelled", f"appointment:{appt.id}", patient_told=told)
            appt_day = _local_day(appt)
    except booking.BookingError as exc:
        flash(f"Not cancelled: {exc}", "error")
        return _back()
    rt.waker.wake()
    flash("Appointment cancelled." + (" The patient is told." if told else ""))
    return _back(appt_day)


@bp.post("/appointments/<int:appointment_id>/status")
def set_appointment_status(appointment_id: int):
    """Confirm, mark completed or no-show (the last two only after the start, in the service)."""
    rt = get_runtime()
    now = rt.clock()
    status = STATUS_ACTIONS.get(request.form.get("action", ""))
    if status is None:
        flash("Unknown action.", "error")
        return _back(), 303
    try:
        with rt.db.transaction() as s:
            appt = _load(s, appointment_id)
            if appt is None:
                return render_template("staff/not_found.html", what="appointment"), 404
            booking.set_status(s, appt, status, now=now)
            audit.record(s, "appointment_status", f"appointment:{appt.id}", status=status)
            appt_day = _local_day(appt)
    except booking.BookingError as exc:
        flash(f"Not changed: {exc}", "error")
        return _back()
    rt.waker.wake()
    flash(f"Marked {status.replace('_', '-')}.")
    return _back(appt_day)


def staff_first_name() -> str:
    """The signature for staff replies: the staff member's first name."""
    return g.staff.display_name if getattr(g, "staff", None) else ""
