"""Staff feeds: tokens per clinic and practitioner, rotation, ETag / 304, patient names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from icalendar import Calendar

from clinic_bot.adapters.ical.export import export_calendar
from clinic_bot.adapters.ical.importer import import_calendar
from clinic_bot.domain import booking
from clinic_bot.domain.patients import get_or_create_patient
from clinic_bot.models import Appointment, Patient
from clinic_bot.web.feeds import create_feed, rotate_feed

NOW = datetime(2026, 11, 24, 9, tzinfo=UTC)


@pytest.fixture
def clock(clock):
    clock.set(NOW)
    return clock


def book(runtime, start: datetime, *, name="Ana Example", phone="4915111110001", pid=None) -> int:
    with runtime.db.transaction() as s:
        patient = get_or_create_patient(s, phone, NOW)
        patient.name = name
        patient.intake = {"reason": "secret intake answer"}
        appt = booking.book(
            s, runtime.profile, patient=patient, service_id="checkup", practitioner_id=pid,
            starts_at=start, now=NOW, source="api", enforce_hours=False, force=True,
        )  # fmt: skip
        appt.notes = "private staff note"
        s.flush()
        return appt.id


def feed_url(live, token: str) -> str:
    return f"{live.base_url}/calendar/{token}.ics"


def new_feed(runtime, pid=None) -> str:
    with runtime.db.transaction() as s:
        return create_feed(s, pid, "admin@clinic.test", NOW)


def test_the_staff_feed_shows_service_and_patient_name_never_intake_or_notes(live_server, clock):
    book(live_server.runtime, NOW + timedelta(days=2))
    r = live_server.http.get(feed_url(live_server, new_feed(live_server.runtime)))
    assert r.status_code == 200
    (event,) = Calendar.from_ical(r.content).walk("VEVENT")
    assert str(event["SUMMARY"]) == "General check-up – Ana Example"
    assert b"secret intake answer" not in r.content and b"private staff note" not in r.content


def test_a_practitioner_feed_shows_only_theirs(live_server, clock):
    book(live_server.runtime, NOW + timedelta(days=2), pid="dr-lee")
    book(live_server.runtime, NOW + timedelta(days=3), phone="4915111110002", name="Bo")
    r = live_server.http.get(feed_url(live_server, new_feed(live_server.runtime, "dr-lee")))
    (event,) = Calendar.from_ical(r.content).walk("VEVENT")
    assert "Ana Example" in str(event["SUMMARY"])


def test_a_rotated_token_is_404_at_once_and_the_new_one_works(live_server, clock):
    runtime = live_server.runtime
    old = new_feed(runtime)
    assert live_server.http.get(feed_url(live_server, old)).status_code == 200
    with runtime.db.transaction() as s:
        from clinic_bot.models import CalendarFeed

        feed_id = s.query(CalendarFeed.id).scalar()
        new = rotate_feed(s, feed_id, "admin@clinic.test", NOW)
    assert live_server.http.get(feed_url(live_server, old)).status_code == 404
    assert live_server.http.get(feed_url(live_server, new)).status_code == 200


def test_a_conditional_get_of_an_unchanged_feed_is_304_and_a_change_is_200(live_server, clock):
    runtime = live_server.runtime
    appt_id = book(runtime, NOW + timedelta(days=2))
    url = feed_url(live_server, new_feed(runtime))
    first = live_server.http.get(url)
    etag, last = first.headers["ETag"], first.headers["Last-Modified"]
    assert etag and last
    again = live_server.http.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    since = live_server.http.get(url, headers={"If-Modified-Since": last})
    assert since.status_code == 304
    with runtime.db.transaction() as s:
        appt = s.get(Appointment, appt_id)
        booking.reschedule(s, runtime.profile, appt, starts_at=NOW + timedelta(days=4), now=NOW,
                           enforce_hours=False)  # fmt: skip
    moved = live_server.http.get(url, headers={"If-None-Match": etag})
    assert moved.status_code == 200 and moved.headers["ETag"] != etag
    # A patient renamed: the feed changes too.
    with runtime.db.transaction() as s:
        s.query(Patient).one().name = "Ana Renamed"
    renamed = live_server.http.get(url, headers={"If-None-Match": moved.headers["ETag"]})
    assert renamed.status_code == 200 and b"Ana Renamed" in renamed.content


def test_an_export_imported_again_keeps_its_patient(runtime, clock):
    book(runtime, NOW + timedelta(days=2))
    with runtime.db.Session() as s:
        data = export_calendar(s, runtime.profile, now=NOW)
    with runtime.db.transaction() as s:
        report = import_calendar(s, runtime.profile, data, now=NOW, source="elsewhere")
    assert report["created"] == 1 and report["patients_created"] == []
    with runtime.db.Session() as s:
        imported = s.query(Appointment).filter(Appointment.source == "ics").one()
        assert imported.patient.name == "Ana Example"
