"""The waitlist over real HTTP: a full day, patients waiting in order, a freed slot offered,
the first Book it wins, the others are told; an unanswered offer expires and passes on."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from clinic_bot.domain import availability, booking
from clinic_bot.domain.patients import get_or_create_patient
from clinic_bot.models import Appointment, Patient, WaitlistEntry
from clinic_bot.models.appointments import ACTIVE_STATUSES
from clinic_bot.schedules import waitlist
from tests.conversations.http_chat import HttpChat

START = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)  # Tuesday 09:00 in Berlin
FULL_DAY = date(2026, 11, 25)


@pytest.fixture
def phones(live_server, clock):
    clock.set(START)
    live_server.http.put(f"{live_server.base_url}/sandbox/api/settings", json={"auto_read": False})
    chats = [
        HttpChat(live_server, phone=p, name=n)
        for p, n in (("4915111111111", "Ana"), ("4915122222222", "Ben"))
    ]
    yield chats
    for chat in chats:
        chat.close()


def fill(runtime, day: date) -> list[int]:
    """Book every free slot of `day` for other patients; returns their appointment ids."""
    profile, now = runtime.profile, runtime.clock()
    ids = []
    with runtime.db.transaction() as s:
        for i in range(200):
            slots = availability.free_slots(
                s, profile, service_id="checkup", practitioner_id=None, day=day, now=now
            )
            if not slots:
                break
            other = get_or_create_patient(s, f"49160000{i:05d}", now)
            appt = booking.book(
                s,
                profile,
                patient=other,
                service_id="checkup",
                practitioner_id=slots[0].practitioner_id,
                starts_at=slots[0].starts_at,
                now=now,
            )
            ids.append(appt.id)
    return ids


def join(chat: HttpChat) -> None:
    """A known patient asks for the full day and joins its waitlist."""
    with chat.runtime.db.transaction() as s:
        p = get_or_create_patient(s, chat.phone, chat.runtime.clock())
        p.name, p.intake = chat.push_name, {"reason": "routine"}
    full = chat.text("tomorrow")
    assert full[-1].titles == ["Join the waitlist", "Other days"]
    joined = chat.choose("Join the waitlist")
    assert "waitlist for Wednesday, 25 November 2026" in joined[-1].text


def cancel(runtime, appt_id: int) -> None:
    with runtime.db.transaction() as s:
        booking.cancel(s, s.get(Appointment, appt_id), now=runtime.clock())


def active(runtime, phone: str) -> list[Appointment]:
    with runtime.db.Session() as s:
        return list(
            s.execute(
                select(Appointment)
                .join(Patient, Patient.id == Appointment.patient_id)
                .where(Patient.phone == phone, Appointment.status.in_(ACTIVE_STATUSES))
            ).scalars()
        )


def offer_of(chat: HttpChat, sent):
    [offer] = [m for m in sent if m.kind == "buttons"]
    assert offer.titles == ["Book it", "No, thanks"]
    return offer


def test_two_waiting_patients_one_freed_slot_exactly_one_books_and_the_other_is_told(
    live_server, phones
):
    rt = live_server.runtime
    rt.profile.waitlist_batch = 2
    taken = fill(rt, FULL_DAY)
    ana, ben = phones
    join(ana)
    join(ben)
    assert waitlist.tick(rt) == 0  # nothing free yet
    cancel(rt, taken[3])
    assert waitlist.tick(rt) == 2
    ana_offer = offer_of(ana, ana.flush())
    ben_offer = offer_of(ben, ben.flush())
    assert "Wednesday, 25 November 2026 at 10:30" in ana_offer.text

    booked = ana.choose("Book it", ana_offer)
    assert "You are booked" in booked[0].text and booked[-1].kind == "document"
    told = ben.flush()
    assert any("just been taken by someone else" in m.text for m in told)
    late = ben.choose("Book it", ben_offer)
    assert "just been taken" in late[0].text
    assert len(active(rt, ana.phone)) == 1 and active(rt, ben.phone) == []
    with rt.db.Session() as s:
        statuses = {e.patient_id: e.status for e in s.execute(select(WaitlistEntry)).scalars()}
    assert sorted(statuses.values()) == ["booked", "waiting"]
    assert waitlist.tick(rt) == 0  # the slot is gone: nobody else is offered it


def test_an_unanswered_offer_expires_and_passes_to_the_next_patient(live_server, phones, clock):
    rt = live_server.runtime
    rt.profile.waitlist_offer_ttl = timedelta(minutes=30)
    taken = fill(rt, FULL_DAY)
    ana, ben = phones
    join(ana)
    join(ben)
    cancel(rt, taken[0])
    assert waitlist.tick(rt) == 1  # one at a time, in the order they joined
    ana_offer = offer_of(ana, ana.flush())
    assert ben.flush() == []

    clock.advance(minutes=31)
    assert waitlist.tick(rt) == 1
    assert any("has expired" in m.text for m in ana.flush())
    ben_offer = offer_of(ben, ben.flush())
    assert ben.choose("Book it", ben_offer)[-1].kind == "document"
    stale = ana.choose("Book it", ana_offer)
    assert "no longer open" in stale[0].text
    assert active(rt, ana.phone) == [] and len(active(rt, ben.phone)) == 1


def test_a_waiting_patient_who_books_otherwise_leaves_the_list(live_server, phones):
    rt = live_server.runtime
    taken = fill(rt, FULL_DAY)
    ana, _ = phones
    join(ana)
    ana.text("menu")
    ana.choose("Book")
    ana.choose("Next available")
    ana.choose("Confirm")
    with rt.db.Session() as s:
        [entry] = s.execute(select(WaitlistEntry)).scalars()
    assert entry.status == "booked"
    cancel(rt, taken[0])
    assert waitlist.tick(rt) == 0
    assert all(m.kind != "buttons" or "Book it" not in m.titles for m in ana.flush())


def test_typed_none_of_these_joins_the_waitlist_for_the_day_shown(live_server, phones):
    rt = live_server.runtime
    ana, _ = phones
    with rt.db.transaction() as s:
        p = get_or_create_patient(s, ana.phone, rt.clock())
        p.name, p.intake = "Ana", {"reason": "routine"}
    ana.text("hi")
    ana.choose("Book")
    ana.choose(3)  # tomorrow
    out = ana.text("none of these")
    assert "waitlist for Wednesday, 25 November 2026" in out[-1].text
    # What was free when joining is not news: only a time that opens later is offered.
    assert waitlist.tick(rt) == 0
