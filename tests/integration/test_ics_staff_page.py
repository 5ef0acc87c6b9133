"""The staff calendar page over real HTTP: upload, preview, apply, history, feeds, notify."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from clinic_bot.models import Appointment, CalendarImport, OutboxMessage, Patient, StaffUser
from clinic_bot.web.calendar_sync import run_import

NOW = datetime(2026, 11, 24, 9, tzinfo=UTC)
EMAIL, PASSWORD = "reception@clinic.test", "correct horse battery"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def calendar(*events: str) -> bytes:
    body = "".join(f"BEGIN:VEVENT\r\n{e}\r\nEND:VEVENT\r\n" for e in events)
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nX-WR-CALNAME:Desk\r\n"
        f"{body}END:VCALENDAR\r\n"
    ).encode()


ANA = (
    "UID:ana@x\r\nDTSTART:20261201T141500Z\r\nDTEND:20261201T143500Z\r\nSUMMARY:Check-up\r\n"
    "ATTENDEE;CN=Ana Example:tel:+4915111110001"
)
TEAM = "UID:team@x\r\nDTSTART:20261201T080000Z\r\nDTEND:20261201T090000Z\r\nSUMMARY:Team meeting"


@pytest.fixture
def clock(clock):
    clock.set(NOW)
    return clock


@pytest.fixture
def staff(live_server, clock):
    with live_server.runtime.db.transaction() as s:
        s.add(StaffUser(email=EMAIL, password_hash=generate_password_hash(PASSWORD),
                        role="reception", created_at=NOW))  # fmt: skip
    http = live_server.http
    token = CSRF.search(http.get(f"{live_server.base_url}/staff/login").text).group(1)
    r = http.post(f"{live_server.base_url}/staff/login",
                  data={"email": EMAIL, "password": PASSWORD, "csrf_token": token})  # fmt: skip
    assert r.status_code == 200
    return live_server


def upload(live, raw: bytes, **form):
    page = live.http.get(f"{live.base_url}/staff/calendar")
    token = CSRF.search(page.text).group(1)
    return live.http.post(
        f"{live.base_url}/staff/calendar/preview",
        data={"csrf_token": token, "mode": "merge", **form},
        files={"file": ("desk.ics", raw, "text/calendar")},
    )


def apply(live, preview):
    token = CSRF.search(preview.text).group(1)
    action = re.search(r'action="(/staff/calendar/imports/[^"]+/apply)"', preview.text).group(1)
    return live.http.post(f"{live.base_url}{action}", data={"csrf_token": token})


def test_upload_previews_then_apply_imports_and_the_day_shows_the_patient(staff):
    preview = upload(staff, calendar(ANA, TEAM), practitioner_id="dr-lee")
    assert preview.status_code == 200, preview.text
    assert "Preview: desk.ics" in preview.text
    assert "Ana Example (+4915111110001)" in preview.text  # the patient who would be created
    assert "no patient phone: kept as busy time" in preview.text
    assert re.search(r"<strong>1</strong> new appointments", preview.text)
    assert re.search(r"<strong>1</strong> new busy blocks", preview.text)
    with staff.runtime.db.Session() as s:
        assert s.execute(select(Appointment)).first() is None
    done = apply(staff, preview)
    assert done.status_code == 200 and "Imported: desk.ics" in done.text
    day = staff.http.get(f"{staff.base_url}/staff/?date=2026-12-01")
    assert "Ana Example" in day.text and "15:15" in day.text
    # The history names who imported what.
    page = staff.http.get(f"{staff.base_url}/staff/calendar")
    assert EMAIL in page.text and "desk.ics" in page.text and "1 new, 0 moved" in page.text
    # Apply again (a double click): nothing more happens.
    again = staff.http.post(done.url + "/apply", data={"csrf_token": CSRF.search(done.text)[1]})
    assert again.status_code == 200
    with staff.runtime.db.Session() as s:
        assert len(s.execute(select(Appointment)).all()) == 1


def test_a_refused_file_says_why_and_changes_nothing(staff):
    r = upload(staff, calendar(ANA)[:-30])
    assert r.status_code == 422
    assert "cut off" in r.text and "Nothing was changed" in r.text
    with staff.runtime.db.Session() as s:
        assert s.execute(select(CalendarImport)).first() is None


def test_a_file_larger_than_the_webhook_limit_can_be_uploaded(staff):
    filler = "DESCRIPTION:" + "x" * 4000
    events = [ANA.replace("ana@x", f"a{i}@x") + "\r\n" + filler for i in range(400)]
    raw = calendar(*events)
    assert len(raw) > 1024 * 1024
    preview = upload(staff, raw)
    assert preview.status_code == 200, preview.status_code
    assert re.search(r"<strong>400</strong> new appointments", preview.text)


def test_feed_links_are_made_and_rotated_from_the_page(staff):
    page = staff.http.get(f"{staff.base_url}/staff/calendar")
    token = CSRF.search(page.text).group(1)
    made = staff.http.post(f"{staff.base_url}/staff/calendar/feeds",
                           data={"csrf_token": token, "practitioner_id": "dr-lee"})  # fmt: skip
    url = re.search(r'<code id="new-feed-url">([^<]+)</code>', made.text).group(1)
    assert staff.http.get(url).status_code == 200
    rotate = re.search(r'action="(/staff/calendar/feeds/\d+/rotate)"', made.text).group(1)
    rotated = staff.http.post(f"{staff.base_url}{rotate}", data={"csrf_token": token})
    new_url = re.search(r'<code id="new-feed-url">([^<]+)</code>', rotated.text).group(1)
    assert staff.http.get(url).status_code == 404
    assert staff.http.get(new_url).status_code == 200


def test_patients_are_told_about_an_imported_visit_only_when_the_profile_says_so(runtime, clock):
    run_import(runtime, calendar(ANA))
    with runtime.db.Session() as s:
        assert s.execute(select(OutboxMessage)).first() is None
    runtime.profile.notify_on_import = True
    other = ANA.replace("ana@x", "ana2@x").replace("20261201T14", "20261202T14")
    run_import(runtime, calendar(other))
    with runtime.db.Session() as s:
        (msg,) = s.execute(select(OutboxMessage)).scalars()
        patient = s.execute(select(Patient)).scalar_one()
        assert msg.chat_id == patient.chat_id and msg.purpose == "booking"
