"""The patient's side of the waitlist: joining, an offer's message, and its Book it / No taps."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from clinic_bot.delivery.outbox import Outbox
from clinic_bot.domain import booking
from clinic_bot.domain import waitlist as wl
from clinic_bot.domain.messages import BUTTON_TITLE, Button, shorten
from clinic_bot.models import Patient, WaitlistOffer
from clinic_bot.reactions.conversation import ids, render, steps
from clinic_bot.reactions.conversation.turn import Turn

WEEK = timedelta(days=6)


def join_from_flow(turn: Turn, first: date, last: date) -> None:
    """Join the waitlist with what the booking flow knows (service, practitioner, part)."""
    practitioner = turn.data.get("practitioner")
    entry = wl.join(
        turn.session,
        turn.profile,
        turn.patient,
        service_id=turn.data["service"],
        practitioner_id=None if practitioner in (None, "any") else practitioner,
        first_day=first,
        last_day=last,
        part=turn.data.get("part"),
        now=turn.now,
    )
    span = render.day_long(turn.profile, turn.lang, first)
    if last != first:
        span = f"{span} – {render.day_long(turn.profile, turn.lang, last)}"
    turn.say("conv_waitlist_joined", days=span)
    turn.rest("waitlisted")
    turn.data["waitlist"] = entry.id


def choose_full(turn: Turn, value: str) -> None:
    """On a full day: join its waitlist, or see the nearest days with free times."""
    day = date.fromisoformat(turn.data["full_day"])
    if value == "waitlist":
        join_from_flow(turn, day, day)
    else:
        steps.enter_day(turn, arg=day.isoformat())


CHOOSE = {"full": choose_full}


def join_typed(turn: Turn) -> str:
    """ "None of these" / "waitlist" typed while choosing a day or a time."""
    if not turn.data.get("service"):
        return ""
    if turn.state in ("time", "part") and turn.data.get("day"):
        day = date.fromisoformat(turn.data["day"])
        join_from_flow(turn, day, day)
    else:
        today = turn.now.astimezone(turn.profile.timezone).date()
        join_from_flow(turn, today, today + WEEK)
    return "waitlist joined"


def send_offer(session, profile, outbox: Outbox, patient: Patient, offer: WaitlistOffer) -> None:
    """The offer: what, who, when, until when; Book it / No thanks."""
    lang = patient.language or profile.language
    if lang not in profile.texts:
        lang = profile.language
    service = profile.service(offer.entry.service_id)
    who = profile.practitioner(offer.practitioner_id)
    body = profile.text(
        "conv_waitlist_offer",
        lang,
        service=service.name if service else profile.text("conv_service_default", lang),
        practitioner=who.name if who else "",
        when=render.when(profile, lang, offer.slot_at),
        until=render.clock(profile, offer.expires_at),
    )
    outbox.buttons(
        patient,
        body,
        [
            Button(
                ids.waitlist_id(offer.id, "yes"),
                shorten(profile.text("conv_waitlist_yes", lang), BUTTON_TITLE),
            ),
            Button(
                ids.waitlist_id(offer.id, "no"),
                shorten(profile.text("conv_waitlist_no", lang), BUTTON_TITLE),
            ),
        ],
        key=f"waitlist:{offer.id}:offer",
        purpose="waitlist",
    )


def tell(session, profile, outbox: Outbox, patient: Patient, key: str, offer, **values) -> None:
    """A waitlist notice (gone, expired) to a patient who is not the one writing."""
    lang = patient.language or profile.language
    if lang not in profile.texts:
        lang = profile.language
    when = render.when(profile, lang, offer.slot_at)
    outbox.text(
        patient,
        profile.text(key, lang, when=when, **values),
        key=f"waitlist:{offer.id}:{key}",
        purpose="waitlist",
    )


def answer(turn: Turn, offer_id: int, action: str) -> str:
    """Book it (the first one wins) or No thanks, on an offer this patient got."""
    offer = turn.session.get(WaitlistOffer, offer_id)
    if offer is None or offer.patient_id != turn.patient.id:
        turn.say("conv_stale")
        steps.repeat_or_menu(turn)
        return "waitlist: not this patient's offer"
    when = render.when(turn.profile, turn.lang, offer.slot_at)
    if offer.status != "open" or offer.expires_at <= turn.now:
        key = (
            "conv_waitlist_gone" if offer.status in ("gone", "accepted") else "conv_waitlist_closed"
        )
        turn.say(key, when=when)
        steps.repeat_or_menu(turn)
        return f"waitlist: offer {offer.status}"
    if action == "no":
        wl.pass_slot(offer, "declined", turn.now)
        turn.say("conv_waitlist_declined")
        return "waitlist: declined"
    try:
        appt = booking.book(
            turn.session,
            turn.profile,
            patient=turn.patient,
            service_id=offer.entry.service_id,
            practitioner_id=offer.practitioner_id,
            starts_at=offer.slot_at,
            now=turn.now,
        )
    except booking.BookingError:
        wl.pass_slot(offer, "gone", turn.now)
        turn.say("conv_waitlist_gone", when=when)
        steps.repeat_or_menu(turn)
        return "waitlist: slot gone"
    offer.status, offer.answered_at = "accepted", turn.now
    wl.leave(turn.session, turn.patient, "booked")
    outbox = turn.ctx.outbox
    for rival in wl.rivals(turn.session, offer):
        wl.pass_slot(rival, "gone", turn.now)
        patient = turn.session.get(Patient, rival.patient_id)
        if patient is not None and not patient.opted_out:
            tell(turn.session, turn.profile, outbox, patient, "conv_waitlist_gone", rival)
    turn.state, turn.data = "summary", {"mode": "book"}
    steps.enter_booked(turn, appt=appt)
    return "waitlist: booked"


def expire_and_offer(session, profile, now: datetime, limit: int = 20) -> int:
    """One waitlist tick: close expired offers, then offer free slots in the patients' order."""
    from sqlalchemy import select

    from clinic_bot.models import WaitlistEntry

    sent = 0
    expired = session.execute(
        select(WaitlistOffer).where(WaitlistOffer.status == "open", WaitlistOffer.expires_at <= now)
    ).scalars()
    for offer in list(expired):
        wl.pass_slot(offer, "expired", now)
        patient = session.get(Patient, offer.patient_id)
        if patient is not None and not patient.opted_out:
            tell(
                session,
                profile,
                Outbox(session, now, "waitlist"),
                patient,
                "conv_waitlist_expired",
                offer,
            )
    waiting = session.execute(
        select(WaitlistEntry)
        .where(WaitlistEntry.status == "waiting")
        .order_by(WaitlistEntry.created_at, WaitlistEntry.id)
    ).scalars()
    for entry in list(waiting):
        if sent >= limit:
            break
        if entry.last_day < now.astimezone(profile.timezone).date():
            entry.status = "left"
            continue
        if wl.open_offer_of(session, entry) is not None:
            continue
        patient = session.get(Patient, entry.patient_id)
        if patient is None or patient.opted_out:
            continue
        slot = wl.next_slot(session, profile, entry, now)
        if slot is None:
            continue
        offer = WaitlistOffer(
            entry_id=entry.id,
            patient_id=entry.patient_id,
            slot_at=slot.starts_at,
            practitioner_id=slot.practitioner_id,
            status="open",
            created_at=now,
            expires_at=now + wl.offer_ttl(profile),
        )
        offer.entry = entry
        session.add(offer)
        session.flush()
        send_offer(session, profile, Outbox(session, now, "waitlist"), patient, offer)
        sent += 1
    return sent
