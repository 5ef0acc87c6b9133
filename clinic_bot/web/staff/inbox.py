"""The shared team inbox: who waits for a person, each conversation, reply, notes, Resolve."""

from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for

from clinic_bot.core.runtime import get_runtime
from clinic_bot.domain import booking
from clinic_bot.domain.messages import TEXT_BODY
from clinic_bot.models import Patient, StaffNote
from clinic_bot.models.conversation import StaffAlert
from clinic_bot.reactions.conversation import handoff
from clinic_bot.web.staff import audit, queries
from clinic_bot.web.staff.actions import staff_first_name
from clinic_bot.web.staff.blueprint import bp

QUICK_REPLY_PREFIX = "quick_reply_"
NOTE_MAX = 2000  # characters of one internal note


def quick_replies(profile, lang: str | None) -> list[tuple[str, str]]:
    """Ready-made replies from the profile's texts (`quick_reply_*`), in the patient's language."""
    lang = lang or profile.language
    texts = profile.texts.get(lang) or profile.texts.get(profile.language) or {}
    return [
        (key[len(QUICK_REPLY_PREFIX) :].replace("_", " "), value)
        for key, value in sorted(texts.items())
        if key.startswith(QUICK_REPLY_PREFIX)
    ]


def _list_context():
    rt = get_runtime()
    with rt.db.ReadSession() as s:
        waiting = queries.waiting_patients(s)
        rows = [
            {
                "id": w.patient.id,
                "name": w.patient.name or w.patient.push_name or "",
                "phone": f"+{w.patient.phone}",
                "since": w.since,
                "waited": rt.clock() - w.since,
                "last_text": w.last_text,
            }
            for w in waiting
        ]
        alerts = queries.open_alerts(s, rt.profile.timezone)
    return {"waiting": rows, "alerts": alerts}


@bp.get("/inbox")
def inbox():
    """Patients waiting for a person, the longest-waiting first; the list refreshes itself."""
    return render_template("staff/inbox.html", **_list_context())


@bp.get("/inbox/list")
def inbox_list():
    """The inbox list alone (polled by the page)."""
    return render_template("staff/_inbox_list.html", **_list_context())


@bp.get("/inbox/badge")
def inbox_badge():
    """The header's waiting count alone (polled on every page)."""
    with get_runtime().db.ReadSession() as s:
        count = queries.waiting_count(s)
    return render_template("staff/_badge.html", waiting_count=count)


def _conversation_context(patient_id: int):
    rt = get_runtime()
    now = rt.clock()
    with rt.db.ReadSession() as s:
        p = s.get(Patient, patient_id)
        if p is None:
            return None
        entries = queries.timeline(s, p)
        upcoming = [
            (a.id, a.starts_at.astimezone(rt.profile.timezone), a.service_id, a.status)
            for a in booking.upcoming_for(s, p, now=now)
        ][:10]
        ctx = {
            "patient": {
                "id": p.id,
                "name": p.name or p.push_name or "",
                "phone": f"+{p.phone}",
                "language": p.language or rt.profile.language,
                "opted_out": p.opted_out,
                "handoff": p.handoff_since is not None,
                "handoff_since": p.handoff_since,
            },
            "entries": entries,
            "upcoming": upcoming,
            "quick_replies": quick_replies(rt.profile, p.language),
            "max_text": TEXT_BODY,
            "max_note": NOTE_MAX,
        }
    return ctx


@bp.get("/patients/<int:patient_id>/conversation")
def conversation(patient_id: int):
    """The whole conversation with one patient, a reply box, quick replies and Resolve."""
    ctx = _conversation_context(patient_id)
    if ctx is None:
        return render_template("staff/not_found.html", what="patient"), 404
    with get_runtime().db.transaction() as s:
        audit.record(s, "patient_viewed", f"patient:{patient_id}", page="conversation")
    return render_template("staff/conversation.html", **ctx)


@bp.get("/patients/<int:patient_id>/timeline")
def conversation_timeline(patient_id: int):
    """The timeline alone (polled by the conversation page)."""
    ctx = _conversation_context(patient_id)
    if ctx is None:
        return "", 404
    return render_template("staff/_timeline.html", **ctx)


@bp.post("/patients/<int:patient_id>/reply")
def reply(patient_id: int):
    """Send a staff reply through the outbox; writing starts (or keeps) a handoff."""
    rt = get_runtime()
    text = request.form.get("text", "").strip()
    if not text:
        flash("Write a message first.", "error")
        return redirect(url_for("staff.conversation", patient_id=patient_id))
    if len(text) > TEXT_BODY:
        flash(f"The message is longer than {TEXT_BODY} characters.", "error")
        return redirect(url_for("staff.conversation", patient_id=patient_id))
    sign = rt.profile.sign_staff_replies
    with rt.db.transaction() as s:
        p = s.get(Patient, patient_id)
        if p is None:
            return render_template("staff/not_found.html", what="patient"), 404
        if p.opted_out:
            flash("This patient opted out of messages: nothing was sent.", "error")
            return redirect(url_for("staff.conversation", patient_id=patient_id))
        queued = handoff.staff_message(
            s, rt.profile, p, text, rt.clock(), signature=staff_first_name() if sign else ""
        )
        audit.record(s, "message_sent", f"patient:{patient_id}", length=len(text))
    rt.waker.wake()
    flash("Sent." if queued else "Not sent.")
    return redirect(url_for("staff.conversation", patient_id=patient_id))


@bp.post("/patients/<int:patient_id>/notes")
def add_note(patient_id: int):
    """Add an internal note to the conversation: staff see it, the patient is never sent it."""
    rt = get_runtime()
    text = request.form.get("text", "").strip()
    back = redirect(url_for("staff.conversation", patient_id=patient_id))
    if not text:
        flash("Write the note first.", "error")
        return back
    if len(text) > NOTE_MAX:
        flash(f"The note is longer than {NOTE_MAX} characters.", "error")
        return back
    with rt.db.transaction() as s:
        if s.get(Patient, patient_id) is None:
            return render_template("staff/not_found.html", what="patient"), 404
        s.add(
            StaffNote(
                patient_id=patient_id,
                staff_user_id=g.staff.id,
                author=g.staff.display_name[:200],
                text=text,
                created_at=rt.clock(),
            )
        )
        audit.record(s, "note_added", f"patient:{patient_id}", length=len(text))
    flash("Note added (staff only; the patient does not see it).")
    return back


@bp.post("/patients/<int:patient_id>/take-over")
def take_over(patient_id: int):
    """Reception takes the chat without writing yet: the bot keeps quiet."""
    rt = get_runtime()
    with rt.db.transaction() as s:
        p = s.get(Patient, patient_id)
        if p is None:
            return render_template("staff/not_found.html", what="patient"), 404
        handoff.take_over(p, rt.clock())
        audit.record(s, "handoff_started", f"patient:{patient_id}")
    flash("You have the chat: the bot keeps quiet until you resolve it.")
    return redirect(url_for("staff.conversation", patient_id=patient_id))


@bp.post("/patients/<int:patient_id>/resolve")
def resolve(patient_id: int):
    """Hand the patient back to the bot; the patient is told."""
    rt = get_runtime()
    with rt.db.transaction() as s:
        p = s.get(Patient, patient_id)
        if p is None:
            return render_template("staff/not_found.html", what="patient"), 404
        done = handoff.resolve(s, rt.profile, p, rt.clock())
        if done:
            audit.record(s, "handoff_resolved", f"patient:{patient_id}")
    rt.waker.wake()
    flash("Resolved: the bot answers this patient again." if done else "There was no handoff.")
    return redirect(url_for("staff.inbox"))


@bp.post("/alerts/<int:alert_id>/seen")
def dismiss_alert(alert_id: int):
    """Mark a staff alert as seen; it leaves the inbox for everyone."""
    rt = get_runtime()
    with rt.db.transaction() as s:
        alert = s.get(StaffAlert, alert_id)
        if alert is not None and alert.seen_at is None:
            alert.seen_at = rt.clock()
            audit.record(s, "alert dismissed", f"patient:{alert.patient_id}", kind=alert.kind)
    return redirect(url_for("staff.inbox"))
