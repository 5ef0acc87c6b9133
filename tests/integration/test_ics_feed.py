"""Calendar over HTTP: the import API (multipart), the export and the token-guarded .ics feed."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from icalendar import Calendar
from sqlalchemy import select

from clinic_bot.adapters.ical.export import appointment_uid, export_calendar
from clinic_bot.adapters.ical.importer import import_calendar
from clinic_bot.domain import booking
from clinic_bot.models import Appointment
from clinic_bot.web.api.auth import create_token

NOW = datetime(2026, 11, 24, 9, tzinfo=UTC)


def ics(*events: str, method: str = "PUBLISH") -> bytes:
    body = "".join(f"BEGIN:VEVENT\r\n{e.strip()}\r\nEND:VEVENT\r\n" for e in events)
    return (
        f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nMETHOD:{method}\r\n"
        f"{body}END:VCALENDAR\r\n"
    ).encode()


def vevent(uid: str, start: str, end: str, extra: str = "") -> str:
    lines = [f"UID:{uid}", f"DTSTART:{start}", f"DTEND:{end}", "SUMMARY:Visit"]
    lines.append("ATTENDEE;CN=Ana Example:tel:+4915111110001")
    return "\r\n".join(lines + ([extra] if extra else []))


@pytest.fixture
def clock(clock):
    clock.set(NOW)
    return clock


@pytest.fixture
def token(runtime) -> str:
    with runtime.db.transaction() as s:
        return create_token(s, "calendar tests", NOW)


def appointments(runtime) -> list[Appointment]:
    with runtime.db.Session() as s:
        return list(s.execute(select(Appointment).order_by(Appointment.starts_at)).scalars())


def upload(live, token, raw: bytes, **form):
    return live.http.post(
        f"{live.base_url}/api/v1/calendar/imports",
        headers={"Authorization": f"Bearer {token}"},
        files={"file": ("calendar.ics", raw, "text/calendar")},
        data=form,
    )


# --------------------------------------------------------------------- the import API


def test_api_import_of_a_multipart_file_answers_with_the_report(live_server, clock, token):
    raw = ics(vevent("a@x", "20261201T090000Z", "20261201T093000Z"))
    r = upload(live_server, token, raw, practitioner_id="dr-lee")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "created": 1,
        "updated": 0,
        "cancelled": 0,
        "unchanged": 0,
        "skipped": [],
        "warnings": [],
        "errors": [],
        "busy_blocks": {"created": 0, "updated": 0, "cancelled": 0, "unchanged": 0},
        "patients_created": [{"phone": "4915111110001", "name": "Ana Example"}],
    }
    (a,) = appointments(live_server.runtime)
    assert (a.source, a.external_uid, a.starts_at) == (
        "ics",
        "a@x",
        datetime(2026, 12, 1, 9, tzinfo=UTC),
    )
    again = upload(live_server, token, raw, practitioner_id="dr-lee")
    assert again.json()["unchanged"] == 1


def test_api_dry_run_changes_nothing(live_server, clock, token):
    raw = ics(vevent("a@x", "20261201T090000Z", "20261201T093000Z"))
    r = upload(live_server, token, raw, dry_run="true")
    assert r.status_code == 200 and r.json()["created"] == 1
    assert appointments(live_server.runtime) == []


def test_api_full_mode_cancels_what_is_gone(live_server, clock, token):
    two = ics(
        vevent("a@x", "20261201T090000Z", "20261201T093000Z"),
        vevent("b@x", "20261202T090000Z", "20261202T093000Z"),
    )
    upload(live_server, token, two, source="desk")
    one = ics(vevent("a@x", "20261201T090000Z", "20261201T093000Z"))
    r = upload(live_server, token, one, source="desk", mode="full")
    assert r.json()["cancelled"] == 1


def test_api_refuses_an_unreadable_file_with_422_and_a_reason(live_server, clock, token):
    r = upload(live_server, token, b"(EBEGIN:\nU:\nTJDAT\xdfEBEGIN:VEV:\n")
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "calendar_refused"
    assert "not a valid iCalendar file" in r.json()["error"]["message"]
    assert appointments(live_server.runtime) == []


def test_api_without_a_file_or_with_a_bad_mode_is_400(live_server, clock, token):
    url = f"{live_server.base_url}/api/v1/calendar/imports"
    r = live_server.http.post(url, headers={"Authorization": f"Bearer {token}"}, data={})
    assert r.status_code == 400
    assert "file" in r.json()["error"]["message"]
    raw = ics(vevent("a@x", "20261201T090000Z", "20261201T093000Z"))
    assert upload(live_server, token, raw, mode="sometimes").status_code == 400


def test_api_import_needs_a_token(live_server, clock):
    r = upload(live_server, "wrong", ics())
    assert r.status_code == 401


def test_api_accepts_a_calendar_larger_than_the_webhook_limit(live_server, clock, token):
    # Over 2 MiB: the 1 MiB app-wide limit is for webhooks, not calendar files.
    filler = "DESCRIPTION:" + "x" * 5000
    events = [
        vevent(f"e{i}@x", "20261201T090000Z", "20261201T093000Z", extra=filler) for i in range(500)
    ]
    raw = ics(*events)
    assert len(raw) > 2 * 1024 * 1024
    r = upload(live_server, token, raw, dry_run="1")
    assert r.status_code == 200, r.text[:200]
    assert r.json()["created"] == 500


def test_openapi_documents_the_calendar_import(live_server):
    doc = live_server.http.get(f"{live_server.base_url}/api/v1/openapi.json").json()
    assert (
        "multipart/form-data" in doc["paths"]["/calendar/imports"]["post"]["requestBody"]["content"]
    )


# --------------------------------------------------------------------- export and feed


def book(runtime, start: datetime, **kw) -> Appointment:
    with runtime.db.transaction() as s:
        appt = booking.book(
            s,
            runtime.profile,
            patient=None,
            service_id=None,
            practitioner_id=kw.get("practitioner_id"),
            starts_at=start,
            duration=timedelta(minutes=20),
            now=NOW,
            source="api",
            enforce_hours=False,
            force=True,
        )
        appt.notes = "private staff note"
        appt.title = "imported title"
        s.flush()
        return appt.id


def test_export_round_trip_keeps_uid_sequence_status_and_instants(runtime, clock):
    first = book(runtime, NOW + timedelta(days=3))
    second = book(runtime, NOW + timedelta(days=4))
    with runtime.db.transaction() as s:
        appt = s.get(Appointment, second)
        booking.reschedule(
            s, runtime.profile, appt, starts_at=NOW + timedelta(days=5), now=NOW,
            enforce_hours=False,
        )  # fmt: skip
    with runtime.db.transaction() as s:
        booking.cancel(s, s.get(Appointment, first), now=NOW)
    with runtime.db.Session() as s:
        data = export_calendar(s, runtime.profile, now=NOW)
        expected = {
            appointment_uid(a, runtime.profile): a for a in s.execute(select(Appointment)).scalars()
        }
    cal = Calendar.from_ical(data)
    events = {str(e["UID"]): e for e in cal.walk("VEVENT")}
    assert set(events) == set(expected)
    for uid, event in events.items():
        appt = expected[uid]
        assert int(event["SEQUENCE"]) == appt.version
        assert event["DTSTART"].dt == appt.starts_at
        assert event["DTEND"].dt == appt.ends_at
        assert "DTSTAMP" in event
        assert str(event["STATUS"]) == ("CANCELLED" if appt.status == "cancelled" else "CONFIRMED")
    assert cal.walk("VTIMEZONE"), "the clinic's VTIMEZONE is included"
    assert b"private staff note" not in data and b"imported title" not in data
    # Re-importing the export elsewhere gives the same instants.
    with runtime.db.transaction() as s:
        report = import_calendar(s, runtime.profile, data, now=NOW, source="round trip")
    # No patient on these visits: the other calendar keeps them as busy time.
    assert report["busy_blocks"]["created"] == 1 and report["errors"] == []


def test_export_filters_by_practitioner_and_leaves_out_old_visits(runtime, clock):
    pid = runtime.profile.practitioners[0].id
    book(runtime, NOW + timedelta(days=1), practitioner_id=pid)
    book(runtime, NOW + timedelta(days=2))
    with runtime.db.Session() as s:
        mine = Calendar.from_ical(export_calendar(s, runtime.profile, pid, now=NOW))
        later = Calendar.from_ical(
            export_calendar(s, runtime.profile, now=NOW + timedelta(days=90))
        )
    assert len(mine.walk("VEVENT")) == 1
    assert later.walk("VEVENT") == []


def test_feed_with_the_right_token_serves_the_calendar_and_any_other_is_404(live_server, clock):
    book(live_server.runtime, NOW + timedelta(days=2))
    good = live_server.runtime.settings.calendar_feed_token
    assert len(good) >= 32
    r = live_server.http.get(f"{live_server.base_url}/calendar/{good}.ics")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/calendar")
    assert len(Calendar.from_ical(r.content).walk("VEVENT")) == 1
    for bad in ("nope", good[:-1], good + "x"):
        assert live_server.http.get(f"{live_server.base_url}/calendar/{bad}.ics").status_code == 404


def test_feed_token_comes_from_the_environment_when_set(tmp_path, database_url):
    from clinic_bot.settings import Settings

    env = {"DATABASE_URL": database_url, "CALENDAR_FEED_TOKEN": "feed-token-from-env"}
    settings = Settings.from_env(env=env, instance_path=tmp_path / "inst")
    assert settings.calendar_feed_token == "feed-token-from-env"
    kept = Settings.from_env(env={"DATABASE_URL": database_url}, instance_path=tmp_path / "inst2")
    again = Settings.from_env(env={"DATABASE_URL": database_url}, instance_path=tmp_path / "inst2")
    assert kept.calendar_feed_token and kept.calendar_feed_token == again.calendar_feed_token


def test_cli_export_writes_an_ics_file(runtime, settings, tmp_path):
    import os

    soon = datetime.now(UTC) + timedelta(days=3)
    with runtime.db.transaction() as s:
        booking.book(
            s, runtime.profile, patient=None, service_id=None, practitioner_id=None,
            starts_at=soon, duration=timedelta(minutes=20), now=datetime.now(UTC),
            source="api", enforce_hours=False,
        )  # fmt: skip
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "CLINIC_BOT_INSTANCE": str(settings.instance_path),
        "SECRET_KEY": settings.secret_key,
        "WHAPI_WEBHOOK_SECRET": settings.webhook_secret,
    }
    out = tmp_path / "out.ics"
    result = subprocess.run(
        [sys.executable, "-m", "clinic_bot.cli", "calendar", "export", "-o", str(out)],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert len(Calendar.from_ical(out.read_bytes()).walk("VEVENT")) == 1
    to_stdout = subprocess.run(
        [sys.executable, "-m", "clinic_bot.cli", "calendar", "export"],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert to_stdout.stdout.startswith(b"BEGIN:VCALENDAR")
