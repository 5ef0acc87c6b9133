"""The booking service: book, reschedule, cancel, status changes; every change runs the hooks."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from clinic_bot.domain import booking
from clinic_bot.domain.availability import free_slots
from clinic_bot.models import Appointment
from tests.booking_support import make_profile, patient

BERLIN = ZoneInfo("Europe/Berlin")
TUESDAY = date(2026, 12, 1)
NOW = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


def at(hh: int, mm: int = 0, day: date = TUESDAY) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=BERLIN).astimezone(UTC)


@pytest.fixture
def changes(runtime):
    """Record every appointment_changed call through the runtime's hook registry."""
    seen: list[tuple[int, str, int]] = []

    def hook(session, appt, now, change):
        seen.append((appt.id, change, appt.version))

    runtime.registry.on_appointment_change(hook)
    yield seen


@pytest.fixture
def session(runtime):
    with runtime.db.transaction() as s:
        yield s


@pytest.fixture
def ana(session):
    return patient(session, "4915112345678", NOW, name="Ana")


PROFILE = make_profile()
TWO = make_profile(
    practitioners=[
        {"id": "dr-lee", "name": "Dr. Lee", "hours": {"tue": ["09:00-10:00"]}},
        {"id": "dr-ortiz", "name": "Dr. Ortiz", "hours": {"tue": ["09:00-10:00"]}},
    ]
)


def book(session, who, start, profile=PROFILE, **kw):
    kw.setdefault("service_id", "checkup")
    kw.setdefault("practitioner_id", "dr-lee")
    return booking.book(session, profile, patient=who, starts_at=start, now=NOW, **kw)


def test_booking_a_free_slot_stores_it_in_utc_and_runs_the_hooks(session, ana, changes):
    a = book(session, ana, at(9))
    assert (a.starts_at, a.ends_at) == (at(9), at(9, 20))
    assert (a.status, a.source, a.version, a.patient_id) == ("booked", "whatsapp", 1, ana.id)
    assert changes == [(a.id, "created", 1)]
    assert session.get(Appointment, a.id) is a


def test_booking_a_taken_slot_raises_slot_taken_and_stores_nothing(session, ana, changes):
    book(session, ana, at(9))
    with pytest.raises(booking.SlotTaken):
        book(session, ana, at(9, 15))  # overlaps 09:00-09:20
    assert session.query(Appointment).count() == 1
    assert len(changes) == 1


def test_booking_outside_hours_or_within_notice_is_refused_on_whatsapp(session, ana):
    with pytest.raises(booking.SlotTaken):
        book(session, ana, at(12, 15))  # the lunch break
    with pytest.raises(booking.SlotTaken):
        book(session, ana, at(9, 5))  # off the slot grid
    with pytest.raises(booking.SlotTaken):
        booking.book(
            session,
            PROFILE,
            patient=ana,
            service_id="checkup",
            practitioner_id="dr-lee",
            starts_at=at(9),
            now=at(8),
        )  # inside the two hours' notice


def test_any_practitioner_books_the_first_free_one_in_profile_order(session, ana):
    first = book(session, ana, at(9), profile=TWO, practitioner_id=None)
    second = book(session, ana, at(9), profile=TWO, practitioner_id=None)
    assert (first.practitioner_id, second.practitioner_id) == ("dr-lee", "dr-ortiz")
    with pytest.raises(booking.SlotTaken):
        book(session, ana, at(9), profile=TWO, practitioner_id=None)


def test_api_bookings_ignore_hours_but_conflict_with_the_practitioner_unless_forced(session, ana):
    api = dict(source="api", enforce_hours=False, duration=timedelta(minutes=30))
    night = book(session, ana, at(22), service_id=None, **api)
    assert night.ends_at - night.starts_at == timedelta(minutes=30)
    with pytest.raises(booking.Conflict):
        book(session, ana, at(22, 15), service_id=None, **api)
    forced = book(session, ana, at(22, 15), service_id=None, force=True, **api)
    assert forced.practitioner_id == "dr-lee"


def test_unassigned_appointments_never_conflict_and_never_block(session, ana):
    api = dict(source="api", enforce_hours=False, practitioner_id=None)
    a = book(session, ana, at(9), **api)
    b = book(session, ana, at(9), **api)
    assert a.practitioner_id is None and b.practitioner_id is None
    assert book(session, ana, at(9)).practitioner_id == "dr-lee"


def test_bad_requests_raise_invalid_booking(session, ana):
    with pytest.raises(booking.InvalidBooking):
        book(session, ana, datetime(2026, 12, 1, 9, 0))  # naive
    with pytest.raises(booking.InvalidBooking):
        book(session, ana, NOW - timedelta(hours=1), enforce_hours=False)  # past
    with pytest.raises(booking.InvalidBooking):
        book(session, ana, at(9), service_id="massage")
    with pytest.raises(booking.InvalidBooking):
        book(session, ana, at(9), practitioner_id="dr-who")
    with pytest.raises(booking.InvalidBooking):
        book(session, ana, at(9), service_id=None, enforce_hours=False)  # no duration


def test_rescheduling_moves_the_same_row_and_raises_its_version(session, ana, changes):
    a = book(session, ana, at(9))
    moved = booking.reschedule(session, PROFILE, a, starts_at=at(9, 15), now=NOW)
    assert moved is a and a.version == 2
    assert (a.starts_at, a.ends_at) == (at(9, 15), at(9, 35))  # its own old time does not block
    assert changes == [(a.id, "created", 1), (a.id, "moved", 2)]
    assert session.query(Appointment).count() == 1
    free = free_slots(
        session, PROFILE, service_id="checkup", practitioner_id="dr-lee", day=TUESDAY, now=NOW
    )
    assert free[0].starts_at == at(9, 45) and at(9, 15) not in [s.starts_at for s in free]
    # the 09:00 slot is not free: 09:00-09:20 would overlap the moved 09:15-09:35
    assert at(9) not in [s.starts_at for s in free]


def test_rescheduling_onto_a_taken_slot_raises_and_keeps_the_appointment(session, ana, changes):
    a = book(session, ana, at(9))
    book(session, ana, at(10))
    with pytest.raises(booking.SlotTaken):
        booking.reschedule(session, PROFILE, a, starts_at=at(10), now=NOW)
    assert (a.starts_at, a.version) == (at(9), 1)
    api = booking.reschedule(
        session, PROFILE, a, starts_at=at(10), now=NOW, enforce_hours=False, force=True
    )
    assert api.version == 2


def test_rescheduling_to_another_practitioner_checks_that_practitioner(session, ana):
    a = book(session, ana, at(9), profile=TWO)
    book(session, ana, at(9, 30), profile=TWO, practitioner_id="dr-ortiz")
    with pytest.raises(booking.SlotTaken):
        booking.reschedule(
            session, TWO, a, starts_at=at(9, 30), practitioner_id="dr-ortiz", now=NOW
        )
    booking.reschedule(session, TWO, a, starts_at=at(9, 0), practitioner_id="dr-ortiz", now=NOW)
    assert (a.practitioner_id, a.version) == ("dr-ortiz", 2)


def test_cancelled_or_past_appointments_cannot_be_moved_or_cancelled_again(session, ana, changes):
    a = book(session, ana, at(9))
    booking.cancel(session, a, now=NOW)
    assert (a.status, a.cancelled_at) == ("cancelled", NOW)
    assert changes[-1] == (a.id, "cancelled", 1)
    with pytest.raises(booking.NotChangeable):
        booking.cancel(session, a, now=NOW)
    with pytest.raises(booking.NotChangeable):
        booking.reschedule(session, PROFILE, a, starts_at=at(10), now=NOW)
    b = book(session, ana, at(10))
    with pytest.raises(booking.NotChangeable):
        booking.cancel(session, b, now=at(10, 5))
    with pytest.raises(booking.NotChangeable):
        booking.reschedule(session, PROFILE, b, starts_at=at(11), now=at(10, 5))


def test_a_cancelled_slot_is_free_again(session, ana):
    a = book(session, ana, at(9))
    booking.cancel(session, a, now=NOW)
    assert book(session, ana, at(9)).id != a.id


def test_status_changes_run_the_hooks_once_and_respect_what_happened(session, ana, changes):
    a = book(session, ana, at(9))
    booking.set_status(session, a, "confirmed", now=NOW)
    booking.set_status(session, a, "confirmed", now=NOW)  # a repeat is a no-op
    assert a.status == "confirmed"
    assert [c for _, c, _ in changes] == ["created", "status"]
    late = book(session, ana, at(11))
    with pytest.raises(booking.NotChangeable):
        booking.set_status(session, late, "confirmed", now=at(11, 5))  # it already started
    booking.set_status(session, a, "no_show", now=at(9, 30))
    booking.set_status(session, a, "completed", now=at(9, 40))  # staff correct themselves
    assert a.status == "completed"
    with pytest.raises(booking.InvalidBooking):
        booking.set_status(session, a, "booked", now=NOW)
    b = book(session, ana, at(10))
    booking.set_status(session, b, "cancelled", now=NOW)
    assert b.status == "cancelled" and changes[-1] == (b.id, "cancelled", 1)
    with pytest.raises(booking.NotChangeable):
        booking.set_status(session, b, "no_show", now=at(11))


def test_upcoming_lists_only_the_patients_active_future_appointments_soonest_first(session, ana):
    ben = patient(session, "4915199999999", NOW)
    later = book(session, ana, at(11))
    soon = book(session, ana, at(9))
    gone = book(session, ana, at(10))
    booking.cancel(session, gone, now=NOW)
    book(session, ben, at(13))
    assert booking.upcoming_for(session, ana, now=NOW) == [soon, later]
    assert booking.upcoming_for(session, ana, now=at(9, 5)) == [later]


def test_an_appointment_booked_without_a_service_moves_into_the_slots_of_a_given_one(session, ana):
    api = dict(source="api", enforce_hours=False, service_id=None)
    a = book(session, ana, at(22), duration=timedelta(minutes=20), **api)
    with pytest.raises(booking.InvalidBooking):
        booking.reschedule(session, PROFILE, a, starts_at=at(9), now=NOW)
    booking.reschedule(session, PROFILE, a, starts_at=at(9), now=NOW, service_id="checkup")
    assert (a.starts_at, a.service_id, a.version) == (at(9), "checkup", 2)
