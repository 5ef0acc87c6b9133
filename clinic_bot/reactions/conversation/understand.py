"""Typed requests and questions: intents, FAQ answers and dates/times, from any step.

`understand(turn, text)` answers a message the current prompt could not use, or returns None
(a miss). A date or time jumps into booking at the matching free slots; it never books: the
summary with its Confirm button always comes first.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote_plus

from sqlalchemy import select

from clinic_bot.domain import booking, opening
from clinic_bot.domain.understanding import dates, intents
from clinic_bot.domain.understanding.language import phone_region
from clinic_bot.domain.understanding.text import words_only
from clinic_bot.models import Appointment, StaffAlert
from clinic_bot.models.appointments import ACTIVE_STATUSES
from clinic_bot.reactions.conversation import render, steps, waitlist
from clinic_bot.reactions.conversation.table import RESTING
from clinic_bot.reactions.conversation.turn import Turn

INTENTS = (
    "book",
    "appointments",
    "cancel",
    "reschedule",
    "confirm",
    "late",
    "thanks",
    "wrong_number",
    "waitlist",
)
LATE_WINDOW_BEFORE = timedelta(hours=12)  # "running late" refers to a visit this soon…
LATE_WINDOW_AFTER = timedelta(hours=2)  # …or one that started this recently


def vocabulary(profile, lang: str) -> dict[str, list[str]]:
    """Intent -> phrases for one language: `intent_<name>` texts and the [[faq]] triggers."""
    vocab = {}
    for name in INTENTS:
        vocab[name] = intents.phrases(profile.texts.get(lang, {}).get(f"intent_{name}", ""))
    for entry in profile.faq:
        vocab[f"faq:{entry.id}"] = intents.phrase_list(profile.faq_triggers(entry.id, lang))
    return {k: v for k, v in vocab.items() if v}


def date_order(profile) -> str:
    """DMY or MDY from the clinic's locale (its phone's country unless configured)."""
    configured = getattr(profile, "date_order", None)
    return dates.date_order_for(
        phone_region("".join(c for c in profile.phone if c.isdigit())), configured
    )


def date_orders(profile, patient_phone: str | None) -> tuple[str, str | None]:
    """(order to read 4/12 in, the other order when neither profile nor phones settle it)."""
    return steps.date_orders(profile, patient_phone)


def when_of(turn: Turn, text: str) -> dates.When:
    """The day/time/part of day the message names, relative to the clinic's today."""
    today = turn.now.astimezone(turn.profile.timezone).date()
    order, other = date_orders(turn.profile, turn.patient.phone)
    return dates.parse_when(
        text,
        turn.lang,
        today,
        date_order=order,
        other_order=other,
        timezone=str(turn.profile.timezone),
    )


def mentioned(turn: Turn, text: str) -> tuple[str | None, str | None]:
    """(service id, practitioner id) the message names, each only when it is unambiguous."""
    norm = words_only(text)
    services = set()
    for s in turn.profile.services:
        names = {words_only(s.name), words_only(s.id), words_only(steps.service_title(turn, s))}
        if any(intents.score(norm, n) for n in names if n):
            services.add(s.id)
    people = set()
    for p in turn.profile.practitioners:
        surname = [w for w in words_only(p.name).split() if len(w) >= 3 and w not in ("doctor",)]
        if surname and f" {surname[-1]} " in f" {norm} ":
            people.add(p.id)
    return (
        next(iter(services)) if len(services) == 1 else None,
        next(iter(people)) if len(people) == 1 else None,
    )


def understand(turn: Turn, text: str) -> str | None:
    """Answer what the message asks; None when nothing in it is understood."""
    intent = intents.match(text, vocabulary(turn.profile, turn.lang))
    if intent and intent.startswith("faq:"):
        return faq(turn, intent[4:])
    if intent == "wrong_number":
        turn.say("conv_wrong_number")
        turn.rest("wrong_number")
        return "wrong number"
    if intent == "thanks":
        return thanks(turn)
    if intent == "confirm":
        return about_appointment(turn, "confirm")
    if intent == "late":
        return running_late(turn)
    if intent == "waitlist" and turn.state in steps.BOOKING_STATES:
        joined = waitlist.join_typed(turn)
        if joined:
            return joined
    when = when_of(turn, text)
    if intent in ("cancel", "reschedule"):
        return about_appointment(turn, intent, when=when)
    if intent == "appointments":
        turn.state, turn.data = "menu", {"stack": []}
        steps.choose_menu(turn, "appointments")
        return "menu: appointments"
    service, practitioner = mentioned(turn, text)
    if intent == "book" or when or service or practitioner:
        steps.start_booking(turn, when, service=service, practitioner=practitioner)
        return "booking request"
    return None


def way_on(turn: Turn) -> None:
    """After an answer: the prompt the patient was at again, or the menu."""
    if turn.state in RESTING or turn.state in ("handoff",) or not turn.data.get("prompt"):
        steps.enter_menu(turn)
    else:
        turn.send_prompt()


def faq(turn: Turn, faq_id: str) -> str:
    """A clinic-edited [[faq]] answer, with the address, map link and hours filled in."""
    profile = turn.profile
    address = profile.address or ""
    answer = profile.faq_answer(
        faq_id,
        turn.lang,
        address=address,
        map_link="https://www.google.com/maps/search/?api=1&query=" + quote_plus(address),
        hours=hours_text(turn),
        phone=profile.phone,
    )
    turn.ctx.outbox.text(turn.patient, answer)
    way_on(turn)
    return f"faq {faq_id}"


def hours_text(turn: Turn) -> str:
    """The weekly opening hours, one line a weekday: 'Mon 09:00–12:00, 13:00–17:00'."""
    names = [n.strip() for n in turn.t("conv_weekdays").split(",")]
    lines = []
    for weekday, ranges in opening.weekly_hours(turn.profile):
        spans = ", ".join(f"{a.strftime('%H:%M')}–{b.strftime('%H:%M')}" for a, b in ranges)
        lines.append(f"{names[weekday]} {spans}")
    return "\n".join(lines)


def thanks(turn: Turn) -> str:
    """A short, friendly acknowledgement; never an error."""
    if turn.state in RESTING or not turn.data.get("prompt"):
        turn.say("conv_thanks_reply")
        return "thanks"
    turn.say("conv_thanks_short")
    turn.send_prompt()
    return "thanks: prompt repeated"


def _next_appointments(turn: Turn) -> list[Appointment]:
    return booking.upcoming_for(turn.session, turn.patient, now=turn.now)


def about_appointment(turn: Turn, action: str, when: dates.When | None = None) -> str:
    """Confirm / cancel / reschedule typed: the one upcoming visit directly, else the list."""
    appts = _next_appointments(turn)
    if not appts:
        turn.say("conv_no_appointments")
        steps.enter_menu(turn)
        return f"{action}: no appointments"
    if len(appts) > 1:
        turn.state, turn.data = "menu", {"stack": []}
        steps.choose_menu(turn, "appointments")
        return f"{action}: which appointment"
    if action == "reschedule" and when:
        steps.reschedule_to(turn, appts[0], when)
        return "appointment reschedule to a typed time"
    steps.appointment_action(turn, appts[0], action)
    return f"appointment {action} (typed)"


def running_late(turn: Turn) -> str:
    """Acknowledge, and leave reception an alert naming the appointment."""
    now = turn.now
    appt = turn.session.execute(
        select(Appointment)
        .where(
            Appointment.patient_id == turn.patient.id,
            Appointment.status.in_(ACTIVE_STATUSES),
            Appointment.starts_at >= now - LATE_WINDOW_AFTER,
            Appointment.starts_at <= now + LATE_WINDOW_BEFORE,
        )
        .order_by(Appointment.starts_at)
        .limit(1)
    ).scalar()
    if appt is None:
        turn.say("conv_late_no_appointment")
        way_on(turn)
        return "late: no appointment soon"
    turn.session.add(
        StaffAlert(
            patient_id=turn.patient.id, appointment_id=appt.id, kind="running_late", created_at=now
        )
    )
    turn.say("conv_late_ack", when=render.when(turn.profile, turn.lang, appt.starts_at))
    if turn.state not in RESTING and turn.data.get("prompt"):
        turn.send_prompt()
    return "late: staff alerted"


def alert(turn: Turn, kind: str, appointment_id: int | None = None) -> None:
    """Leave reception an alert about this patient."""
    turn.session.add(
        StaffAlert(
            patient_id=turn.patient.id,
            appointment_id=appointment_id,
            kind=kind,
            created_at=turn.now,
        )
    )


closed_note = steps.closed_note
