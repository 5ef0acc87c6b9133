"""The appointments API over real HTTP: create, list, get, reschedule, status, errors, OpenAPI."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests
from sqlalchemy import select

from clinic_bot.models import Appointment, OutboxMessage, Patient
from clinic_bot.web.api.auth import create_token

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
PHONE = "4915112345678"


@pytest.fixture
def api(live_server, clock):
    """An authenticated HTTP session against the live server; the clock is set to today."""
    clock.set(NOW)
    with live_server.runtime.db.transaction() as s:
        token = create_token(s, "tests", NOW)
    live_server.http.headers["Authorization"] = f"Bearer {token}"
    return live_server


def post(api, **body):
    body.setdefault("patient", {"phone": "+" + PHONE, "name": "Ana"})
    body.setdefault("starts_at", "2026-12-01T09:00:00+01:00")
    body.setdefault("duration_minutes", 20)
    return api.http.post(f"{api.base_url}/api/v1/appointments", json=body)


def outbox_texts(api) -> list[tuple[str, str]]:
    with api.runtime.db.Session() as s:
        rows = s.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars()
        return [(r.idempotency_key, r.body.get("body", "")) for r in rows]


def test_creating_an_appointment_answers_201_with_the_contract_shape(api):
    r = post(api)
    assert r.status_code == 201, r.text
    a = r.json()
    assert {"id", "patient", "starts_at", "ends_at", "status", "source", "reminders"} <= set(a)
    assert a["patient"] == {"phone": PHONE, "name": "Ana"}
    assert (a["starts_at"], a["ends_at"]) == ("2026-12-01T08:00:00Z", "2026-12-01T08:20:00Z")
    assert (a["status"], a["source"], a["external_uid"], a["version"]) == (
        "booked",
        "api",
        None,
        1,
    )
    # One entry per [reminders].offsets value, in the same answer.
    assert sorted(x["kind"] for x in a["reminders"]) == ["24h", "2h"]
    assert {"kind", "due_at", "status", "sent_at", "read_at", "reason"} <= set(a["reminders"][0])
    assert r.headers["Location"].endswith(f"/api/v1/appointments/{a['id']}")
    with api.runtime.db.Session() as s:
        stored = s.get(Appointment, a["id"])
        assert (stored.source, stored.practitioner_id) == ("api", None)


def test_any_future_time_is_accepted_and_a_service_gives_the_duration(api):
    r = post(
        api, starts_at="2026-12-06T22:00:00+01:00", duration_minutes=None, service_id="checkup"
    )
    assert r.status_code == 201, r.text  # a Sunday night: hours are not enforced by the API
    assert r.json()["ends_at"] == "2026-12-06T21:20:00Z"


def test_an_overlap_with_the_practitioner_is_409_unless_forced(api):
    assert post(api, practitioner_id="dr-lee").status_code == 201
    r = post(api, practitioner_id="dr-lee", starts_at="2026-12-01T09:10:00+01:00")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "conflict" and r.json()["error"]["message"]
    r = post(api, practitioner_id="dr-lee", starts_at="2026-12-01T09:10:00+01:00", force=True)
    assert r.status_code == 201 and r.json()["practitioner_id"] == "dr-lee"
    # right after the first one ends is no overlap
    assert post(api, practitioner_id="dr-lee", starts_at="2026-12-01T08:30:00Z").status_code == 201


def test_unassigned_appointments_never_conflict(api):
    assert post(api).status_code == 201
    assert post(api).status_code == 201


@pytest.mark.parametrize(
    "body, field",
    [
        ({"patient": {"phone": "12"}}, "phone"),
        ({"patient": {"phone": "hello"}}, "phone"),
        ({"patient": {"phone": "120363025246125888@g.us"}}, "phone"),
        ({"starts_at": "2026-12-01T09:00:00"}, "offset"),
        ({"starts_at": "2026-11-23T09:00:00+01:00"}, "past"),
        ({"starts_at": "tomorrow"}, "starts_at"),
        ({"duration_minutes": 0}, "duration_minutes"),
        ({"duration_minutes": None}, "duration_minutes"),
        ({"practitioner_id": "dr-who"}, "dr-who"),
        ({"service_id": "massage"}, "massage"),
        ({"patient": None}, "patient"),
    ],
)
def test_bad_requests_are_400_with_a_reason_and_store_nothing(api, body, field):
    r = post(api, **body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_request" and field in err["message"]
    with api.runtime.db.Session() as s:
        assert s.execute(select(Appointment)).first() is None


def test_a_body_that_is_not_a_json_object_is_400_and_no_token_is_401(api):
    url = f"{api.base_url}/api/v1/appointments"
    r = api.http.post(url, data="[1]", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    assert requests.post(url, json={}).status_code == 401
    assert requests.get(url).status_code == 401


def test_a_staff_booking_tells_the_patient_the_clinic_local_date_and_time(api):
    a = post(api).json()
    texts = outbox_texts(api)
    assert texts[0][0] == f"api-booking:{a['id']}:1:1"
    assert "Ana" in texts[0][1] and "December 1, 2026" in texts[0][1] and "09:00" in texts[0][1]


def test_no_notice_when_the_profile_switch_is_off_or_the_patient_opted_out(api):
    api.runtime.profile.notify_on_staff_booking = False
    assert post(api).status_code == 201
    assert outbox_texts(api) == []
    api.runtime.profile.notify_on_staff_booking = True
    with api.runtime.db.transaction() as s:
        s.execute(select(Patient)).scalar_one().opted_out = True
    assert post(api, starts_at="2026-12-02T09:00:00+01:00").status_code == 201
    assert outbox_texts(api) == []


def test_listing_filters_by_range_status_and_patient(api):
    ids = [
        post(api, starts_at="2026-12-01T09:00:00+01:00").json()["id"],
        post(api, starts_at="2026-12-02T09:00:00+01:00").json()["id"],
        post(api, starts_at="2026-12-03T09:00:00+01:00", patient={"phone": "4915199999999"}).json()[
            "id"
        ],
    ]
    api.http.patch(f"{api.base_url}/api/v1/appointments/{ids[1]}", json={"status": "cancelled"})

    def listed(**params):
        r = api.http.get(f"{api.base_url}/api/v1/appointments", params=params)
        assert r.status_code == 200, r.text
        return [a["id"] for a in r.json()["items"]]

    assert listed() == ids
    assert listed(start="", end="", status="", patient_phone="") == ids
    assert listed(start="2026-12-02T00:00:00+01:00") == ids[1:]
    assert listed(end="2026-12-02T08:00:00Z") == ids[:1]
    assert listed(start="2026-12-02", end="2026-12-03") == ids[1:2]
    assert listed(status="cancelled") == ids[1:2]
    assert listed(patient_phone="4915199999999@s.whatsapp.net") == ids[2:]
    assert listed(patient_phone="+4915112345678", status="booked") == ids[:1]
    r = api.http.get(f"{api.base_url}/api/v1/appointments", params={"start": "2026-12-02T00:00"})
    assert r.status_code == 400
    r = api.http.get(f"{api.base_url}/api/v1/appointments", params={"status": "maybe"})
    assert r.status_code == 400


def test_an_unencoded_plus_in_a_query_offset_still_reads_as_an_offset(api):
    post(api)
    url = f"{api.base_url}/api/v1/appointments?start=2026-12-01T09:00:00+01:00"
    assert [a["starts_at"] for a in api.http.get(url).json()["items"]] == ["2026-12-01T08:00:00Z"]


def test_get_one_appointment_and_404_for_an_unknown_one(api):
    a = post(api).json()
    r = api.http.get(f"{api.base_url}/api/v1/appointments/{a['id']}")
    assert r.status_code == 200 and r.json() == a
    r = api.http.get(f"{api.base_url}/api/v1/appointments/99999")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_patch_starts_at_reschedules_the_same_appointment_and_raises_its_version(api):
    a = post(api, practitioner_id="dr-lee").json()
    post(api, practitioner_id="dr-lee", starts_at="2026-12-01T10:00:00+01:00")
    url = f"{api.base_url}/api/v1/appointments/{a['id']}"
    r = api.http.patch(url, json={"starts_at": "2026-12-01T09:50:00+01:00"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    r = api.http.patch(url, json={"starts_at": "2026-12-01T11:00:00+01:00"})
    assert r.status_code == 200, r.text
    moved = r.json()
    assert (moved["id"], moved["version"]) == (a["id"], 2)
    assert (moved["starts_at"], moved["ends_at"]) == (
        "2026-12-01T10:00:00Z",
        "2026-12-01T10:20:00Z",
    )
    assert sorted(x["kind"] for x in moved["reminders"]) == ["24h", "2h"]
    r = api.http.patch(url, json={"starts_at": "2026-12-01T11:00:00"})
    assert r.status_code == 400


def test_patch_status_changes_it_and_a_cancelled_appointment_stays_cancelled(api):
    a = post(api).json()
    url = f"{api.base_url}/api/v1/appointments/{a['id']}"
    assert api.http.patch(url, json={"status": "confirmed"}).json()["status"] == "confirmed"
    assert api.http.patch(url, json={"status": "cancelled"}).json()["status"] == "cancelled"
    r = api.http.patch(url, json={"starts_at": "2026-12-02T09:00:00+01:00"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_changeable"
    r = api.http.patch(url, json={"status": "confirmed"})
    assert r.status_code == 409
    for bad in ({"status": "booked"}, {}, {"status": "done"}):
        assert api.http.patch(url, json=bad).status_code == 400
    assert api.http.patch(f"{api.base_url}/api/v1/appointments/424242", json={}).status_code in (
        400,
        404,
    )


def test_staff_mark_no_show_and_completed_after_the_visit(api, clock):
    a = post(api).json()
    url = f"{api.base_url}/api/v1/appointments/{a['id']}"
    clock.set(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    assert api.http.patch(url, json={"status": "no_show"}).json()["status"] == "no_show"
    assert api.http.patch(url, json={"status": "completed"}).json()["status"] == "completed"


def test_the_openapi_document_is_served_without_a_token(api):
    r = requests.get(f"{api.base_url}/api/v1/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    assert {"post", "get"} <= set(doc["paths"]["/appointments"])
    assert {"get", "patch"} <= set(doc["paths"]["/appointments/{appointment_id}"])
    props = doc["components"]["schemas"]["Appointment"]["properties"]
    assert {"id", "patient", "starts_at", "ends_at", "status", "source", "reminders"} <= set(props)
    assert props["starts_at"]["format"] == "date-time"
