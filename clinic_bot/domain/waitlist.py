"""The waitlist: patients waiting for a time that had none free, and the slots offered to them.

Offers go out in the order patients joined, a small batch per slot at a time (profile
`waitlist_batch`, default 1); an offer expires after `waitlist_offer_ttl` (default 1 hour)
and the slot passes to the next patient. The first "Book it" books through the same
booking service as any other booking, so two patients can never both get the slot.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clinic_bot.core.clock import local_today
from clinic_bot.domain import availability
from clinic_bot.domain.profile import Profile
from clinic_bot.domain.understanding.dates import part_of
from clinic_bot.models import Patient, WaitlistEntry, WaitlistOffer

DEFAULT_TTL = timedelta(hours=1)
MAX_RANGE_DAYS = 14


def batch_size(profile: Profile) -> int:
    """How many waiting patients one freed slot is offered to at once."""
    return max(1, int(getattr(profile, "waitlist_batch", 1)))


def offer_ttl(profile: Profile) -> timedelta:
    """How long an offer stays open before it passes to the next patient."""
    return getattr(profile, "waitlist_offer_ttl", DEFAULT_TTL)


def join(
    session: Session,
    profile: Profile,
    patient: Patient,
    *,
    service_id: str,
    practitioner_id: str | None,
    first_day: date,
    last_day: date,
    part: str | None,
    now: datetime,
) -> WaitlistEntry:
    """Put the patient on the waitlist (replacing an earlier wish); free slots now are passed."""
    leave(session, patient, "left")
    last_day = min(last_day, first_day + timedelta(days=MAX_RANGE_DAYS))
    entry = WaitlistEntry(
        patient_id=patient.id,
        service_id=service_id,
        practitioner_id=practitioner_id,
        first_day=first_day,
        last_day=last_day,
        part=part,
        status="waiting",
        created_at=now,
    )
    # What is free now was there to book: only a time that opens later is news.
    entry.passed = [s.starts_at.isoformat() for s in _free(session, profile, entry, now)]
    session.add(entry)
    session.flush()
    return entry


def leave(session: Session, patient: Patient, status: str = "booked") -> int:
    """Take the patient off the waitlist (they booked, joined again, or opted out)."""
    entries = session.execute(
        select(WaitlistEntry).where(
            WaitlistEntry.patient_id == patient.id, WaitlistEntry.status == "waiting"
        )
    ).scalars()
    n = 0
    for entry in entries:
        entry.status = status
        n += 1
    return n


def _free(session: Session, profile: Profile, entry: WaitlistEntry, now: datetime):
    today = local_today(now, profile.timezone)
    day = max(entry.first_day, today)
    out = []
    while day <= entry.last_day:
        for slot in availability.free_slots(
            session,
            profile,
            service_id=entry.service_id,
            practitioner_id=entry.practitioner_id,
            day=day,
            now=now,
        ):
            local = slot.starts_at.astimezone(profile.timezone).time()
            if entry.part is None or part_of(local) == entry.part:
                out.append(slot)
        day += timedelta(days=1)
    return out


def next_slot(session: Session, profile: Profile, entry: WaitlistEntry, now: datetime):
    """The earliest free slot this entry wants that it was not offered yet, or None."""
    passed = set(entry.passed or [])
    offered = {
        at.isoformat()
        for at in session.execute(
            select(WaitlistOffer.slot_at).where(WaitlistOffer.entry_id == entry.id)
        ).scalars()
    }
    batch = batch_size(profile)
    for slot in _free(session, profile, entry, now):
        key = slot.starts_at.isoformat()
        if key in passed or key in offered:
            continue
        open_offers = session.execute(
            select(func.count()).where(
                WaitlistOffer.slot_at == slot.starts_at,
                WaitlistOffer.practitioner_id == slot.practitioner_id,
                WaitlistOffer.status == "open",
            )
        ).scalar()
        if open_offers < batch:
            return slot
    return None


def open_offer_of(session: Session, entry: WaitlistEntry) -> WaitlistOffer | None:
    """The entry's offer still waiting for an answer, if any."""
    return session.execute(
        select(WaitlistOffer).where(
            WaitlistOffer.entry_id == entry.id, WaitlistOffer.status == "open"
        )
    ).scalar()


def pass_slot(offer: WaitlistOffer, status: str, now: datetime) -> None:
    """Close an offer (declined, expired, gone); the entry keeps waiting for another time."""
    offer.status = status
    offer.answered_at = now
    entry = offer.entry
    entry.passed = [*(entry.passed or []), offer.slot_at.isoformat()]


def rivals(session: Session, offer: WaitlistOffer) -> list[WaitlistOffer]:
    """The other open offers of the same slot (told it is gone when one is accepted)."""
    return list(
        session.execute(
            select(WaitlistOffer).where(
                WaitlistOffer.slot_at == offer.slot_at,
                WaitlistOffer.practitioner_id == offer.practitioner_id,
                WaitlistOffer.status == "open",
                WaitlistOffer.id != offer.id,
            )
        ).scalars()
    )


def leave_on_opt_out(session: Session, patient: Patient, now: datetime) -> None:
    """STOP takes the patient off the waitlist and closes their open offers."""
    leave(session, patient, "left")
    for offer in session.execute(
        select(WaitlistOffer).where(
            WaitlistOffer.patient_id == patient.id, WaitlistOffer.status == "open"
        )
    ).scalars():
        pass_slot(offer, "declined", now)
