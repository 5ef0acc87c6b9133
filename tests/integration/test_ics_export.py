"""The .ics invitation: parses back with icalendar and holds the appointment's instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from icalendar import Calendar

from clinic_bot.adapters.ical.export import appointment_invitation, clinic_slug
from clinic_bot.domain import booking
from tests.booking_support import make_profile, patient

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
PROFILE = make_profile(booking={"horizon_days": 365})


def book(runtime, start: datetime, **kw):
    with runtime.db.transaction() as s:
        ana = patient(s, "4915112345678", NOW, name="Ana")
        ana.intake = {"reason": "symptoms"}
        a = booking.book(
            s,
            PROFILE,
            patient=ana,
            service_id="checkup",
            practitioner_id="dr-lee",
            starts_at=start,
            now=NOW,
            **kw,
        )
        a.notes = "allergic to penicillin"
        a.title = "Imported: Ana M. – knee pain"
    return a


def parse(raw: bytes):
    cals = Calendar.from_ical(raw, multiple=True)
    assert len(cals) == 1
    cal = cals[0]
    events = cal.events
    assert len(events) == 1
    return cal, events[0]


def test_the_invitation_is_a_request_with_one_event_at_the_right_instant(runtime):
    a = book(runtime, datetime(2026, 12, 1, 8, 0, tzinfo=UTC))  # 09:00 in Berlin
    cal, ev = parse(appointment_invitation(a, PROFILE))
    assert str(cal["METHOD"]) == "REQUEST" and str(cal["VERSION"]) == "2.0"
    assert str(ev["UID"]) == f"appt-{a.id}@sunrise-family-clinic"
    assert int(ev["SEQUENCE"]) == 1
    assert ev.start == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert ev.end - ev.start == timedelta(minutes=20)
    assert ev["DTSTART"].params["TZID"] == "Europe/Berlin"
    assert ev.start.utcoffset() == timedelta(hours=1)
    assert str(ev["SUMMARY"]) == "General check-up – Sunrise Family Clinic"
    assert str(ev["LOCATION"]) == "Lindenstr. 1, Berlin"
    assert ev.errors == []


def test_the_invitation_carries_its_own_vtimezone_with_summer_time(runtime):
    a = book(runtime, datetime(2027, 7, 6, 7, 0, tzinfo=UTC), enforce_hours=False)
    cal, ev = parse(appointment_invitation(a, PROFILE))
    assert [tz.tz_name for tz in cal.timezones] == ["Europe/Berlin"]
    assert cal.get_missing_tzids() == set()
    # Read the wall time with the file's VTIMEZONE itself, not the system's zone database.
    own_zone = cal.timezones[0].to_tz()
    wall = ev["DTSTART"].dt.replace(tzinfo=None)
    assert wall == datetime(2027, 7, 6, 9, 0)
    assert wall.replace(tzinfo=own_zone).astimezone(UTC) == a.starts_at


def test_the_uid_is_stable_and_the_sequence_follows_the_version(runtime):
    a = book(runtime, datetime(2026, 12, 1, 8, 0, tzinfo=UTC))
    before = parse(appointment_invitation(a, PROFILE))[1]
    with runtime.db.transaction() as s:
        a = s.merge(a)
        booking.reschedule(
            s, PROFILE, a, starts_at=datetime(2026, 12, 2, 9, 0, tzinfo=UTC), now=NOW
        )
    after = parse(appointment_invitation(a, PROFILE))[1]
    assert str(after["UID"]) == str(before["UID"])
    assert (int(before["SEQUENCE"]), int(after["SEQUENCE"])) == (1, 2)
    assert after.start == datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def test_no_notes_intake_or_imported_title_leak_into_the_invitation(runtime):
    a = book(runtime, datetime(2026, 12, 1, 8, 0, tzinfo=UTC))
    raw = appointment_invitation(a, PROFILE).decode()
    for secret in ("penicillin", "symptoms", "knee", "Ana", "4915112345678"):
        assert secret not in raw
    assert "DESCRIPTION" not in raw


def test_the_clinic_slug_is_ascii_and_never_empty():
    assert clinic_slug(make_profile(clinic={"name": "Clínica Año Nuevo"})) == "clinica-ano-nuevo"
    assert clinic_slug(make_profile(clinic={"name": "診所"})) == "clinic"
