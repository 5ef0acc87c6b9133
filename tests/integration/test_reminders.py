"""Reminder rows: planned with each appointment change, sent at the right instant, once."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from clinic_bot.domain.reminder_trail import reminders_for
from clinic_bot.models import Appointment
from clinic_bot.schedules.reminders.tick import send_due
from tests.reminders_support import (
    body_text,
    book,
    move,
    outbox,
    reminders,
    set_status,
    use_profile,
)

PHONE = "4915112345678"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# Appointments at 10:00 local on (or just after) each daylight-saving change: the 24h reminder
# is 24 hours of real time earlier, so its local clock time differs from 10:00 by the shift.
DST_CASES = [
    # zone, start (UTC), expected 24h due (UTC), expected 2h due (UTC), weekday, date in text
    ("Europe/Berlin", "2026-03-29T08:00Z", "2026-03-28T08:00Z", "2026-03-29T06:00Z", "Sunday",
     "March 29, 2026"),
    ("Europe/Berlin", "2026-10-25T09:00Z", "2026-10-24T09:00Z", "2026-10-25T07:00Z", "Sunday",
     "October 25, 2026"),
    ("America/New_York", "2026-03-08T14:00Z", "2026-03-07T14:00Z", "2026-03-08T12:00Z",
     "Sunday", "March 8, 2026"),
    ("America/New_York", "2026-11-01T15:00Z", "2026-10-31T15:00Z", "2026-11-01T13:00Z",
     "Sunday", "November 1, 2026"),
    ("Australia/Sydney", "2026-04-05T00:00Z", "2026-04-04T00:00Z", "2026-04-04T22:00Z",
     "Sunday", "April 5, 2026"),
    ("Australia/Sydney", "2026-10-03T23:00Z", "2026-10-02T23:00Z", "2026-10-03T21:00Z",
     "Sunday", "October 4, 2026"),
]  # fmt: skip


@pytest.mark.parametrize("zone,start,due24,due2,weekday,date", DST_CASES)
def test_24h_and_2h_reminders_fire_at_real_elapsed_time_across_dst(
    runtime, clock, zone, start, due24, due2, weekday, date
):
    use_profile(runtime, timezone=zone)
    assert utc(start).astimezone(ZoneInfo(zone)).hour == 10  # the case is what it says
    clock.set(utc(start) - timedelta(days=10))
    appt_id = book(runtime, PHONE, utc(start))

    for due, kind in ((utc(due24), "24h"), (utc(due2), "2h")):
        clock.set(due - timedelta(seconds=1))
        send_due(runtime)
        assert not outbox(runtime, f"reminder:{appt_id}:1:{kind}")
        clock.set(due)
        send_due(runtime)
        (row,) = outbox(runtime, f"reminder:{appt_id}:1:{kind}")
        text = body_text(row)
        assert f"{weekday}, {date} at 10:00" in text
        assert reminders(runtime, appt_id)[(1, kind)].status == "sent"
        assert reminders(runtime, appt_id)[(1, kind)].sent_at == due


def test_reminder_shows_clinic_local_time_in_the_patients_language(runtime, clock):
    use_profile(runtime, timezone="Europe/Berlin")
    clock.set(utc("2026-11-20T09:00Z"))
    appt_id = book(runtime, PHONE, utc("2026-12-01T08:30Z"))  # 09:30 in Berlin
    with runtime.db.transaction() as s:
        s.get(Appointment, appt_id).patient.language = "es"
    clock.set(utc("2026-11-30T08:30Z"))
    send_due(runtime)
    (row,) = outbox(runtime, "reminder:")
    assert "el martes 1 de diciembre de 2026 a las 09:30" in body_text(row)


def test_reminder_carries_only_allow_listed_fields_and_the_three_buttons(runtime, clock):
    clock.set(utc("2026-11-20T09:00Z"))
    appt_id = book(
        runtime,
        PHONE,
        utc("2026-12-01T08:00Z"),
        name="Ana Lopez",
        title="Colonoscopy follow-up",
        notes="HIV test results to discuss",
        service_id="checkup",
    )
    with runtime.db.transaction() as s:
        s.get(Appointment, appt_id).patient.intake = {"reason": "symptoms"}
    clock.set(utc("2026-11-30T08:00Z"))
    send_due(runtime)
    (row,) = outbox(runtime, "reminder:")
    text = body_text(row)
    assert "Ana" in text and "Lopez" not in text
    assert "Sunrise Family Clinic" in text and "Lindenstr. 1, Berlin" in text
    for secret in ("Colonoscopy", "HIV", "symptoms", "New symptoms", "check-up", "checkup"):
        assert secret not in text
    buttons = row.body["action"]["buttons"]
    assert [b["id"] for b in buttons] == [
        f"appt:{appt_id}:1:confirm",
        f"appt:{appt_id}:1:reschedule",
        f"appt:{appt_id}:1:cancel",
    ]
    assert [b["title"] for b in buttons] == ["Confirm", "Reschedule", "Cancel"]
    assert row.purpose == "reminder"


def test_reschedule_voids_the_old_rows_and_plans_new_ones(runtime, clock):
    clock.set(utc("2026-11-20T09:00Z"))
    appt_id = book(runtime, PHONE, utc("2026-12-01T09:00Z"))
    clock.set(utc("2026-11-25T09:00Z"))
    move(runtime, appt_id, utc("2026-12-03T14:00Z"))

    rows = reminders(runtime, appt_id)
    assert rows[(1, "24h")].status == rows[(1, "2h")].status == "voided"
    assert "moved" in rows[(1, "24h")].reason
    assert rows[(2, "24h")].due_at == utc("2026-12-02T14:00Z")
    assert rows[(2, "2h")].due_at == utc("2026-12-03T12:00Z")
    assert rows[(2, "24h")].status == "pending"

    clock.set(utc("2026-11-30T09:00Z"))  # the old 24h instant: nothing
    send_due(runtime)
    assert outbox(runtime, "reminder:") == []
    clock.set(utc("2026-12-02T14:00Z"))
    send_due(runtime)
    (row,) = outbox(runtime, "reminder:")
    assert row.idempotency_key == f"reminder:{appt_id}:2:24h"
    assert "December 3, 2026 at 15:00" in body_text(row)
    assert f"appt:{appt_id}:2:confirm" in str(row.body)


def test_cancel_voids_pending_reminders_and_nothing_is_sent(runtime, clock):
    clock.set(utc("2026-11-20T09:00Z"))
    appt_id = book(runtime, PHONE, utc("2026-12-01T09:00Z"))
    set_status(runtime, appt_id, "cancelled")
    rows = reminders(runtime, appt_id)
    assert {r.status for r in rows.values()} == {"voided"}
    assert rows[(1, "2h")].reason == "the appointment is cancelled"
    clock.set(utc("2026-12-01T08:00Z"))
    send_due(runtime)
    assert outbox(runtime) == []


def test_booking_inside_a_window_skips_that_reminder_and_keeps_the_reason(runtime, clock):
    clock.set(utc("2026-12-01T00:00Z"))
    appt_id = book(runtime, PHONE, utc("2026-12-01T09:00Z"))  # 9 hours ahead
    with runtime.db.Session() as s:
        entries = reminders_for(s, s.get(Appointment, appt_id))
    assert entries == [
        {
            "kind": "24h",
            "due_at": "2026-11-30T09:00:00Z",
            "status": "skipped",
            "sent_at": None,
            "read_at": None,
            "reason": "booked less than 24h before the start",
        },
        {
            "kind": "2h",
            "due_at": "2026-12-01T07:00:00Z",
            "status": "pending",
            "sent_at": None,
            "read_at": None,
            "reason": None,
        },
    ]
    send_due(runtime)
    assert outbox(runtime) == []


def test_after_downtime_a_reminder_still_far_from_the_start_is_sent_late(runtime, clock):
    clock.set(utc("2026-11-20T09:00Z"))
    appt_id = book(runtime, PHONE, utc("2026-12-01T09:00Z"))
    clock.set(utc("2026-11-30T21:00Z"))  # the worker was down from 09:00 to 21:00
    send_due(runtime)
    rows = reminders(runtime, appt_id)
    assert rows[(1, "24h")].status == "sent"
    assert rows[(1, "24h")].sent_at == utc("2026-11-30T21:00Z")
    assert len(outbox(runtime, "reminder:")) == 1


def test_after_downtime_a_reminder_too_close_to_the_start_is_skipped_with_reason(runtime, clock):
    clock.set(utc("2026-11-20T09:00Z"))
    appt_id = book(runtime, PHONE, utc("2026-12-01T09:00Z"))
    clock.set(utc("2026-12-01T08:40Z"))  # down through both reminders; 20 minutes left
    send_due(runtime)
    rows = reminders(runtime, appt_id)
    assert rows[(1, "2h")].status == "skipped"
    assert "less than 30m before the start" in rows[(1, "2h")].reason
    assert rows[(1, "24h")].status == "skipped"
    assert outbox(runtime) == []


def test_after_long_downtime_only_the_latest_due_reminder_goes_out(runtime, clock):
    clock.set(utc("2026-11-20T09:00Z"))
    appt_id = book(runtime, PHONE, utc("2026-12-01T09:00Z"))
    clock.set(utc("2026-12-01T07:30Z"))  # both the 24h and the 2h reminder are due
    send_due(runtime)
    rows = reminders(runtime, appt_id)
    assert rows[(1, "2h")].status == "sent"
    assert rows[(1, "24h")].status == "skipped"
    assert rows[(1, "24h")].reason == "superseded by the 2h reminder, due as well"
    assert [r.idempotency_key for r in outbox(runtime)] == [f"reminder:{appt_id}:1:2h"]


def test_a_reminder_on_time_is_sent_even_when_its_offset_is_shorter_than_the_late_rule(
    runtime, clock
):
    use_profile(runtime, reminders={"offsets": ["20m"], "late_send_min_before": "30m"})
    clock.set(utc("2026-11-20T09:00Z"))
    appt_id = book(runtime, PHONE, utc("2026-12-01T09:00Z"))
    clock.set(utc("2026-12-01T08:40:03Z"))  # a few seconds after due: on time, not late
    send_due(runtime)
    assert reminders(runtime, appt_id)[(1, "20m")].status == "sent"


def test_concurrent_ticks_send_each_due_reminder_exactly_once(runtime, clock):
    clock.set(utc("2026-11-20T09:00Z"))
    ids = [
        book(runtime, f"49151000{i:05d}", utc("2026-12-01T09:00Z") + timedelta(minutes=i))
        for i in range(120)
    ]
    clock.set(utc("2026-11-30T12:00Z"))  # every 24h reminder is due
    errors = []

    def tick():
        try:
            send_due(runtime)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=tick) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    send_due(runtime)
    assert errors == []
    keys = [r.idempotency_key for r in outbox(runtime, "reminder:")]
    assert sorted(keys) == sorted(f"reminder:{i}:1:24h" for i in ids)
    assert all(reminders(runtime, i)[(1, "24h")].status == "sent" for i in ids)


def test_a_claim_whose_worker_died_is_taken_again_after_its_lease(runtime, clock):
    from clinic_bot.core.db import claim
    from clinic_bot.models import Reminder
    from clinic_bot.schedules.reminders.plan import LEASE

    clock.set(utc("2026-11-20T09:00Z"))
    appt_id = book(runtime, PHONE, utc("2026-12-01T09:00Z"))
    clock.set(utc("2026-11-30T09:00Z"))
    # A worker claims the row and dies before sending it.
    assert claim(runtime.db, Reminder, now=clock(), lease=LEASE, limit=10)
    send_due(runtime)
    assert outbox(runtime) == []
    clock.advance(seconds=LEASE.total_seconds() + 1)
    send_due(runtime)
    assert [r.idempotency_key for r in outbox(runtime)] == [f"reminder:{appt_id}:1:24h"]


def test_a_status_change_to_confirmed_keeps_the_reminders(runtime, clock):
    clock.set(utc("2026-11-20T09:00Z"))
    appt_id = book(runtime, PHONE, utc("2026-12-01T09:00Z"))
    set_status(runtime, appt_id, "confirmed")
    rows = reminders(runtime, appt_id)
    assert {r.status for r in rows.values()} == {"pending"}


def test_an_uncancelled_appointment_gets_its_reminders_back(runtime, clock):
    clock.set(utc("2026-11-20T09:00Z"))
    appt_id = book(runtime, PHONE, utc("2026-12-01T09:00Z"))
    set_status(runtime, appt_id, "cancelled")
    set_status(runtime, appt_id, "booked")
    assert {r.status for r in reminders(runtime, appt_id).values()} == {"pending"}


def test_reminders_for_lists_one_entry_per_offset_with_utc_instants(runtime, clock):
    clock.set(utc("2026-11-20T09:00Z"))
    appt_id = book(runtime, PHONE, utc("2026-12-01T09:00Z"))
    with runtime.db.Session() as s:
        entries = reminders_for(s, s.get(Appointment, appt_id))
    assert [(e["kind"], e["due_at"], e["status"]) for e in entries] == [
        ("24h", "2026-11-30T09:00:00Z", "pending"),
        ("2h", "2026-12-01T07:00:00Z", "pending"),
    ]


def test_a_reminder_that_cannot_be_rendered_fails_alone_and_the_others_go_out(runtime, clock):
    from clinic_bot.schedules.reminders.plan import LEASE, MAX_ATTEMPTS

    # A clinic's own Spanish text with a placeholder the reminder does not know.
    runtime.profile.texts["es"]["reminder_body"] = "Hola {apellido}, su cita es el {date}."
    clock.set(utc("2026-11-20T09:00Z"))
    ids = [book(runtime, f"4915100000{i:03d}", utc("2026-12-01T09:00Z")) for i in range(3)]
    with runtime.db.transaction() as s:
        s.get(Appointment, ids[1]).patient.language = "es"
    clock.set(utc("2026-11-30T09:00Z"))
    send_due(runtime)
    assert sorted(r.idempotency_key for r in outbox(runtime)) == [
        f"reminder:{ids[0]}:1:24h",
        f"reminder:{ids[2]}:1:24h",
    ]
    assert reminders(runtime, ids[1])[(1, "24h")].status == "processing"
    for _ in range(MAX_ATTEMPTS):
        clock.advance(seconds=LEASE.total_seconds() + 1)
        send_due(runtime)
    poison = reminders(runtime, ids[1])[(1, "24h")]
    assert poison.status == "failed"
    assert poison.reason.startswith(f"gave up after {MAX_ATTEMPTS} attempts: last attempt failed")
    assert "apellido" in poison.reason
    assert len(outbox(runtime)) == 2


def test_the_api_answer_that_creates_or_moves_an_appointment_lists_its_reminders(
    runtime, client, clock
):
    from clinic_bot.web.api.auth import create_token

    clock.set(utc("2026-11-20T09:00Z"))
    with runtime.db.transaction() as s:
        headers = {"Authorization": f"Bearer {create_token(s, 'test', clock())}"}
    body = {
        "patient": {"phone": "+4915112345678", "name": "Ana"},
        "starts_at": "2026-12-01T10:00:00+01:00",
        "duration_minutes": 20,
    }
    r = client.post("/api/v1/appointments", json=body, headers=headers)
    assert r.status_code == 201, r.get_json()
    created = r.get_json()
    assert [(e["kind"], e["due_at"], e["status"]) for e in created["reminders"]] == [
        ("24h", "2026-11-30T09:00:00Z", "pending"),
        ("2h", "2026-12-01T07:00:00Z", "pending"),
    ]
    clock.set(utc("2026-12-01T00:00Z"))
    moved = client.patch(
        f"/api/v1/appointments/{created['id']}",
        json={"starts_at": "2026-12-01T11:00:00+01:00"},
        headers=headers,
    ).get_json()
    assert [(e["kind"], e["due_at"], e["status"], e["reason"]) for e in moved["reminders"]] == [
        ("24h", "2026-11-30T10:00:00Z", "skipped", "moved less than 24h before the start"),
        ("2h", "2026-12-01T08:00:00Z", "pending", None),
    ]
    cancelled = client.patch(
        f"/api/v1/appointments/{created['id']}", json={"status": "cancelled"}, headers=headers
    ).get_json()
    assert [e["status"] for e in cancelled["reminders"]] == ["skipped", "voided"]


def test_an_appointment_without_a_patient_plans_skipped_reminders_until_one_is_found(
    runtime, clock
):
    from clinic_bot.domain.appointment_changes import appointment_changed
    from clinic_bot.domain.patients import get_or_create_patient

    clock.set(utc("2026-11-20T09:00Z"))
    start = utc("2026-12-01T09:00Z")
    with runtime.db.transaction() as s:
        appt = Appointment(starts_at=start, ends_at=start + timedelta(minutes=20), source="ics")
        s.add(appt)
        appointment_changed(s, appt, clock(), "created")
        appt_id = appt.id
    rows = reminders(runtime, appt_id)
    assert {(r.status, r.reason) for r in rows.values()} == {
        ("skipped", "the appointment has no patient")
    }
    with runtime.db.transaction() as s:
        appt = s.get(Appointment, appt_id)
        appt.patient_id = get_or_create_patient(s, PHONE, clock()).id
        appointment_changed(s, appt, clock(), "status")
    assert {r.status for r in reminders(runtime, appt_id).values()} == {"pending"}


def test_the_running_worker_sends_a_due_reminder_by_itself(live):
    from datetime import UTC

    from clinic_bot.domain.appointment_changes import appointment_changed
    from clinic_bot.domain.patients import get_or_create_patient

    runtime = live.runtime
    now = datetime.now(UTC)
    booked = now - timedelta(days=1)  # booked yesterday: the 24h reminder fell due an hour ago
    with runtime.db.transaction() as s:
        patient = get_or_create_patient(s, PHONE, booked)
        start = now + timedelta(hours=23)
        appt = Appointment(
            patient_id=patient.id, starts_at=start, ends_at=start + timedelta(minutes=20)
        )
        s.add(appt)
        appointment_changed(s, appt, booked, "created")
        appt_id = appt.id
    sent = live.wait_for(lambda: [m for m in live.outgoing(PHONE) if m.get("buttons")], timeout=20)
    assert [b["id"] for b in sent[0]["buttons"]][0] == f"appt:{appt_id}:1:confirm"
    assert reminders(runtime, appt_id)[(1, "24h")].status == "sent"


def test_stop_voids_the_reminders_and_start_brings_back_those_still_ahead(runtime, clock):
    from clinic_bot.domain import patients as optout
    from clinic_bot.domain.patients import get_or_create_patient

    clock.set(utc("2026-11-20T09:00Z"))
    appt_id = book(runtime, PHONE, utc("2026-12-01T09:00Z"))
    with runtime.db.transaction() as s:
        optout.opt_out(s, get_or_create_patient(s, PHONE, clock()), "stop-1", clock())
    assert {r.status for r in reminders(runtime, appt_id).values()} == {"voided"}
    clock.set(utc("2026-12-01T08:00Z"))
    send_due(runtime)
    assert outbox(runtime) == []

    clock.set(utc("2026-11-30T10:00Z"))
    with runtime.db.transaction() as s:
        optout.opt_in(s, get_or_create_patient(s, PHONE, clock()), "start-1", clock())
    rows = reminders(runtime, appt_id)
    assert rows[(1, "24h")].status == "skipped"  # its moment passed while the patient was out
    assert rows[(1, "2h")].status == "pending"
    clock.set(utc("2026-12-01T07:00Z"))
    send_due(runtime)
    assert [r.idempotency_key for r in outbox(runtime)] == [f"reminder:{appt_id}:1:2h"]
