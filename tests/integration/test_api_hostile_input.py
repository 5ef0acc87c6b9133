"""Hostile input on every JSON API route, over real HTTP: deep JSON, huge ids, dates at the ends
of the calendar, NUL and lone surrogates. Each gets one clear 4xx in the CONTRACT's error
shape, never a 500, and stores nothing (run with TEST_DATABASE_URL for PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from clinic_bot.models import Appointment, Patient
from clinic_bot.models.broadcasts import Broadcast
from clinic_bot.web.api.auth import create_token

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
PHONE = "+4915112345678"
APPOINTMENT = {"patient": {"phone": PHONE, "name": "Ana"}, "starts_at": "2026-12-01T09:00:00Z"}
JSON_ROUTES = [
    ("POST", "/appointments"),
    ("PATCH", "/appointments/1"),
    ("POST", "/broadcasts"),
    ("POST", "/patients/4915112345678/messages"),
]
ID_ROUTES = [
    ("GET", "/appointments/{}", None),
    ("PATCH", "/appointments/{}", {"status": "confirmed"}),
    ("GET", "/broadcasts/{}", None),
    ("POST", "/broadcasts/{}/pause", None),
    ("POST", "/broadcasts/{}/resume", None),
    ("POST", "/broadcasts/{}/cancel", None),
]
UNSTORABLE = {"NUL": "An\x00a", "lone surrogate": "An\ud800a"}


@pytest.fixture
def api(live_server, clock):
    clock.set(NOW)
    with live_server.runtime.db.transaction() as s:
        live_server.http.headers["Authorization"] = f"Bearer {create_token(s, 'hostile', NOW)}"
    # A patient and an appointment to aim at, so a 400 is never a 404 in disguise.
    r = live_server.http.post(
        f"{live_server.base_url}/api/v1/appointments", json={**APPOINTMENT, "duration_minutes": 20}
    )
    assert r.status_code == 201, r.text
    return live_server


def send(api, method: str, path: str, **kw):
    return api.http.request(method, f"{api.base_url}/api/v1{path}", **kw)


def error_of(r, status: int) -> dict:
    """The CONTRACT's error object of a response that must have `status`."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    body = r.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    assert body["error"]["message"]
    return body["error"]


def counts(api) -> tuple[int, int, int]:
    with api.runtime.db.Session() as s:
        return tuple(
            s.execute(select(func.count()).select_from(m)).scalar_one()
            for m in (Appointment, Patient, Broadcast)
        )


@pytest.mark.parametrize("method, path", JSON_ROUTES)
@pytest.mark.parametrize("depth", [1000, 100_000])
def test_json_nested_thousands_deep_is_a_400(api, method, path, depth):
    before = counts(api)
    body = '{"text": ' + "[" * depth + "]" * depth + "}"
    r = send(api, method, path, data=body, headers={"Content-Type": "application/json"})
    assert error_of(r, 400)["code"] == "invalid_json"
    assert counts(api) == before


@pytest.mark.parametrize("method, path", JSON_ROUTES)
@pytest.mark.parametrize("body", ["[1]", '"text"', "{", "\xff", '{"text": 1' + "0" * 5000 + "}"])
def test_a_body_that_is_no_json_object_is_a_400(api, method, path, body):
    r = send(
        api, method, path, data=body.encode("latin-1"), headers={"Content-Type": "application/json"}
    )
    assert error_of(r, 400)["code"] == "invalid_json"


@pytest.mark.parametrize("method, template, body", ID_ROUTES)
@pytest.mark.parametrize("number", [2**31, 2**63 - 1, 2**63, 10**30, "9" * 5000])
def test_an_id_no_database_column_holds_is_a_404(api, method, template, body, number):
    r = send(api, method, template.format(number), json=body)
    assert error_of(r, 404)["code"] == "not_found"


@pytest.mark.parametrize(
    "when",
    [
        "0001-01-01T00:00:00+01:00",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59-01:00",
        "9999-12-31T23:59:59Z",
        "1899-12-31T23:59:59Z",
        "3000-01-01T00:00:00Z",
    ],
)
def test_instants_outside_the_years_the_api_takes_are_a_400_naming_the_field(api, when):
    before = counts(api)
    r = send(
        api,
        "POST",
        "/appointments",
        json={**APPOINTMENT, "starts_at": when, "duration_minutes": 20},
    )
    assert error_of(r, 400)["fields"] == {"starts_at": ["must be between the years 1900 and 2999"]}
    r = send(api, "PATCH", "/appointments/1", json={"starts_at": when})
    assert "starts_at" in error_of(r, 400)["fields"]
    for bound in ("start", "end"):
        r = send(api, "GET", "/appointments", params={bound: when})
        assert list(error_of(r, 400)["fields"]) == [bound]
    assert counts(api) == before


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31", "2026-02-30", "2026-13-01"])
def test_days_out_of_range_are_a_400(api, day):
    r = send(api, "GET", "/appointments", params={"start": day})
    assert list(error_of(r, 400)["fields"]) == ["start"]
    r = send(api, "POST", "/broadcasts", json={"text": "hi", "appointments_on": day})
    assert list(error_of(r, 400)["fields"]) == ["appointments_on"]


def test_an_appointment_late_in_2999_is_booked_and_listed(api):
    r = send(
        api,
        "POST",
        "/appointments",
        json={**APPOINTMENT, "starts_at": "2999-12-31T23:50:00Z", "duration_minutes": 20},
    )
    assert r.status_code == 201, r.text
    assert r.json()["ends_at"] == "3000-01-01T00:10:00Z"
    r = send(api, "GET", "/appointments", params={"start": "2999-12-31"})
    assert [a["starts_at"] for a in r.json()["items"]] == ["2999-12-31T23:50:00Z"]


def _string_fields(bad: str):
    """(method, path, body, field) for every string a JSON body takes."""
    appt = {**APPOINTMENT, "duration_minutes": 20}
    yield "POST", "/appointments", {**appt, "patient": {"phone": bad}}, "patient"
    yield "POST", "/appointments", {**appt, "patient": {"phone": PHONE, "name": bad}}, "patient"
    yield "POST", "/appointments", {**appt, "notes": bad}, "notes"
    yield "POST", "/appointments", {**appt, "service_id": bad}, "service_id"
    yield "POST", "/appointments", {**appt, "practitioner_id": bad}, "practitioner_id"
    yield "POST", "/appointments", {**appt, "starts_at": f"2026-12-01T09:00:00{bad}"}, "starts_at"
    yield "PATCH", "/appointments/1", {"status": bad}, "status"
    yield (
        "PATCH",
        "/appointments/1",
        {"status": "confirmed", "practitioner_id": bad},
        "practitioner_id",
    )
    yield "POST", "/broadcasts", {"text": bad, "patient_phones": [PHONE]}, "text"
    yield "POST", "/broadcasts", {"text": "hi", "patient_phones": [bad]}, "patient_phones"
    yield "POST", "/patients/4915112345678/messages", {"text": bad}, "text"


@pytest.mark.parametrize("kind", list(UNSTORABLE))
def test_nul_and_lone_surrogates_in_any_json_string_are_a_400_naming_the_field(api, kind):
    before = counts(api)
    for method, path, body, field in _string_fields(UNSTORABLE[kind]):
        raw = json.dumps(body)  # escapes them as \\u0000 and \\ud800, as a client would
        r = send(api, method, path, data=raw, headers={"Content-Type": "application/json"})
        assert list(error_of(r, 400)["fields"]) == [field], (path, body)
    assert counts(api) == before


def test_nul_in_query_path_and_form_values_is_a_400(api):
    r = send(api, "GET", "/appointments", params={"patient_phone": "49151\x001234567"})
    assert list(error_of(r, 400)["fields"]) == ["patient_phone"]
    r = send(api, "GET", "/appointments", params={"status": "booked\x00"})
    assert list(error_of(r, 400)["fields"]) == ["status"]
    r = send(api, "GET", "/patients/49151%00234567")
    assert error_of(r, 400)["code"] == "invalid_phone"
    ics = b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"
    r = send(
        api,
        "POST",
        "/calendar/imports",
        files={"file": ("a.ics", ics)},
        data={"source": "desk\x00"},
    )
    assert list(error_of(r, 400)["fields"]) == ["source"]


def test_a_calendar_file_with_nul_bytes_is_refused_and_changes_nothing(api):
    before = counts(api)
    ics = (
        b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:a\x00b\r\nSUMMARY:x\x00y\r\n"
        b"DTSTART:20261201T090000Z\r\nDTEND:20261201T100000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    r = send(api, "POST", "/calendar/imports", files={"file": ("a.ics", ics)})
    assert error_of(r, 422)["code"] == "calendar_refused"
    assert counts(api) == before


def test_unknown_routes_and_methods_answer_in_the_contract_shape(api):
    assert error_of(send(api, "GET", "/nothing-here"), 404)["code"] == "not_found"
    assert error_of(send(api, "DELETE", "/appointments"), 405)["code"] == "method_not_allowed"
    assert error_of(send(api, "POST", "/broadcasts/1/explode"), 404)["code"] == "not_found"
