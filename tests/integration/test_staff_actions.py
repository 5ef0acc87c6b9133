"""Appointment actions, patients, broadcasts and operations from the staff pages (real HTTP)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from clinic_bot.models import (
    Appointment,
    AuditEntry,
    BusyBlock,
    InboxEvent,
    OutboxMessage,
    Patient,
)
from tests.reminders_support import use_profile
from tests.staff_support import add_user, log_in, post

DESK = "rita@clinic.test"
BOSS = "boss@clinic.test"
PHONE = "+49 151 00000077"
DIGITS = "4915100000077"
TUESDAY = "2026-03-03"  # the clock starts Monday 2026-03-02 10:00 in Berlin


@pytest.fixture
def desk(clock, live_server):
    use_profile(live_server.runtime, broadcasts={"quiet_hours": []})
    add_user(live_server.runtime, DESK, "reception", first_name="Rita")
    http, r = log_in(live_server.base_url, DESK)
    assert r.status_code == 302
    return http


@pytest.fixture
def boss(live_server):
    add_user(live_server.runtime, BOSS, "admin")
    return log_in(live_server.base_url, BOSS)[0]


def appointment(runtime) -> Appointment:
    with runtime.db.ReadSession() as s:
        return s.execute(select(Appointment).order_by(Appointment.id.desc())).scalars().first()


def texts_to(runtime, digits=DIGITS) -> list[str]:
    with runtime.db.ReadSession() as s:
        rows = s.execute(
            select(OutboxMessage)
            .where(OutboxMessage.chat_id == f"{digits}@s.whatsapp.net")
            .order_by(OutboxMessage.id)
        ).scalars()
        return [r.body.get("body") for r in rows]


def audit_actions(runtime) -> list[str]:
    with runtime.db.ReadSession() as s:
        return list(s.execute(select(AuditEntry.action).order_by(AuditEntry.id)).scalars())


def book_from_the_page(live, desk, slot_time="10:00"):
    page = desk.get(
        f"{live.base_url}/staff/appointments/new",
        params={"date": TUESDAY, "service_id": "checkup", "practitioner_id": "dr-lee"},
    )
    assert page.status_code == 200
    slot = re.search(rf'name="slot" value="([^"]*T{slot_time}[^"]*)"', page.text)
    assert slot, "the free slot is offered"
    return post(
        desk,
        live.base_url,
        "/staff/appointments/new",
        {
            "phone": PHONE,
            "name": "Ana Lima",
            "service_id": "checkup",
            "practitioner_id": "dr-lee",
            "slot": slot.group(1),
        },
    )


def test_booking_moving_and_cancelling_from_the_day_view_tells_the_patient(live_server, desk):
    live, rt = live_server, live_server.runtime
    r = book_from_the_page(live, desk)
    assert r.status_code == 200 and "Appointment booked" in r.text
    assert "Ana Lima" in r.text and "10:00" in r.text  # redirected to that day's view
    appt = appointment(rt)
    assert appt.source == "staff" and appt.status == "booked"
    assert "has booked an appointment for you" in texts_to(rt)[-1]

    page = desk.get(f"{live.base_url}/staff/appointments/{appt.id}/move", params={"date": TUESDAY})
    slot = re.search(r'name="slot" value="([^"]*T11:00[^"]*)"', page.text).group(1)
    r = post(desk, live.base_url, f"/staff/appointments/{appt.id}/move", {"slot": slot})
    assert "Appointment moved" in r.text
    assert appointment(rt).starts_at.astimezone(rt.profile.timezone).hour == 11
    assert "moved by the clinic" in texts_to(rt)[-1]

    # Cancelling asks once; only the confirmed post cancels.
    r = post(desk, live.base_url, f"/staff/appointments/{appt.id}/cancel")
    assert "Yes, cancel it" in r.text and appointment(rt).status == "booked"
    r = post(desk, live.base_url, f"/staff/appointments/{appt.id}/cancel", {"confirmed": "yes"})
    assert "Appointment cancelled" in r.text and appointment(rt).status == "cancelled"
    assert "has been cancelled by the clinic" in texts_to(rt)[-1]
    actions = audit_actions(rt)
    assert {"appointment_created", "appointment_moved", "appointment_cancelled"} <= set(actions)


def test_a_taken_slot_is_refused_and_a_forced_time_books_outside_hours(live_server, desk):
    live = live_server
    book_from_the_page(live, desk)
    r = post(
        desk,
        live.base_url,
        "/staff/appointments/new",
        {
            "phone": "+4915100000078",
            "service_id": "checkup",
            "practitioner_id": "dr-lee",
            "date": TUESDAY,
            "time": "10:00",
        },
    )
    assert r.status_code == 400 and "no longer free" in r.text
    r = post(
        desk,
        live.base_url,
        "/staff/appointments/new",
        {
            "phone": "+4915100000078",
            "service_id": "checkup",
            "practitioner_id": "dr-lee",
            "date": TUESDAY,
            "time": "19:30",
            "force": "1",
        },
    )
    assert "Appointment booked" in r.text
    r = post(desk, live.base_url, "/staff/appointments/new", {"phone": "not a phone"})
    assert r.status_code == 400 and "Phone" in r.text


def test_no_show_and_completed_only_after_the_start(clock, live_server, desk):
    live, rt = live_server, live_server.runtime
    book_from_the_page(live, desk)
    appt = appointment(rt)
    r = post(desk, live.base_url, f"/staff/appointments/{appt.id}/status", {"action": "no_show"})
    assert "only after it has started" in r.text and appointment(rt).status == "booked"
    clock.set(appt.starts_at + timedelta(minutes=30))
    desk, _ = log_in(live.base_url, DESK)
    day = desk.get(f"{live.base_url}/staff/", params={"date": TUESDAY}).text
    assert 'value="no_show"' in day  # a past visit offers No-show and Completed
    r = post(desk, live.base_url, f"/staff/appointments/{appt.id}/status", {"action": "no_show"})
    assert "Marked no-show" in r.text and appointment(rt).status == "no_show"


def test_the_api_refuses_a_no_show_before_the_start_too(live_server, desk):
    from clinic_bot.web.api.auth import create_token

    live, rt = live_server, live_server.runtime
    book_from_the_page(live, desk)
    appt = appointment(rt)
    with rt.db.transaction() as s:
        token = create_token(s, "t", rt.clock())
    r = live.http.patch(
        f"{live.base_url}/api/v1/appointments/{appt.id}",
        json={"status": "no_show"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_changeable"


def test_the_day_view_shows_practitioner_columns_busy_blocks_trail_and_filters(live_server, desk):
    live, rt = live_server, live_server.runtime
    book_from_the_page(live, desk)
    with rt.db.transaction() as s:
        s.add(
            BusyBlock(
                practitioner_id="dr-lee",
                starts_at=datetime(2026, 3, 3, 13, 0, tzinfo=UTC),
                ends_at=datetime(2026, 3, 3, 14, 0, tzinfo=UTC),
                summary="Team meeting",
                source="ics:test",
                cancelled=False,
                created_at=rt.clock(),
                updated_at=rt.clock(),
            )
        )
    page = desk.get(f"{live.base_url}/staff/", params={"date": TUESDAY}).text
    assert "Dr. Lee" in page and "Team meeting" in page and "blocked" in page
    assert "chip-booked" in page and "24h:" in page  # the reminder trail
    only_cancelled = desk.get(
        f"{live.base_url}/staff/", params={"date": TUESDAY, "status": "cancelled"}
    ).text
    assert "Ana Lima" not in only_cancelled
    week = desk.get(f"{live.base_url}/staff/week", params={"date": TUESDAY}).text
    assert "Ana Lima" in week and "Team meeting" in week


def test_the_patient_page_edits_and_opts_out_with_the_staff_member_recorded(live_server, desk):
    live, rt = live_server, live_server.runtime
    book_from_the_page(live, desk)
    with rt.db.ReadSession() as s:
        pid = s.execute(select(Patient.id).where(Patient.phone == DIGITS)).scalar_one()
    page = desk.get(f"{live.base_url}/staff/patients/{pid}").text
    assert "Ana Lima" in page and "checkup" in page
    post(
        desk,
        live.base_url,
        f"/staff/patients/{pid}/edit",
        {"name": "Ana M. Lima", "language": "es"},
    )
    r = post(desk, live.base_url, f"/staff/patients/{pid}/opt-out")
    assert "Opted out" in r.text and f"by {DESK} at the desk" in r.text
    with rt.db.ReadSession() as s:
        p = s.get(Patient, pid)
        assert p.name == "Ana M. Lima" and p.language == "es" and p.opted_out
    assert "opt_out_changed" in audit_actions(rt)
    search = desk.get(f"{live.base_url}/staff/patients", params={"q": "0000077"}).text
    assert "Ana M. Lima" in search


def test_a_broadcast_previews_counts_the_opted_out_and_shows_its_progress(live_server, desk):
    live, rt = live_server, live_server.runtime
    now = rt.clock()
    with rt.db.transaction() as s:
        s.add(Patient(phone="4915100000081", created_at=now))
        s.add(Patient(phone="4915100000082", opted_out=True, created_at=now))
    form = {
        "text": "The clinic is closed today.",
        "audience": "list",
        "phones": "+4915100000081\n+4915100000082\n+4915100000083",
    }
    r = post(desk, live.base_url, "/staff/broadcasts", form)
    assert "3</strong> recipient(s)" in r.text and "1</strong> skipped" in r.text
    assert "The clinic is closed today." in r.text
    r = post(desk, live.base_url, "/staff/broadcasts", {**form, "send": "1"})
    assert r.status_code == 200 and "Broadcast" in r.text
    bid = int(re.search(r"/staff/broadcasts/(\d+)/progress", r.text).group(1))
    progress = desk.get(f"{live.base_url}/staff/broadcasts/{bid}/progress").text
    assert 'max="100"' in progress and "Skipped</dt><dd>1" in progress
    r = post(desk, live.base_url, f"/staff/broadcasts/{bid}/pause")
    assert "paused" in r.text
    r = post(desk, live.base_url, f"/staff/broadcasts/{bid}/resume")
    assert "running" in r.text
    assert {"broadcast_sent", "broadcast_pause", "broadcast_resume"} <= set(audit_actions(rt))
    bad = post(desk, live.base_url, "/staff/broadcasts", {"text": "", "audience": "day"})
    assert bad.status_code == 400


def test_operations_retry_and_dismiss_dead_letters(live_server, boss):
    live, rt = live_server, live_server.runtime
    with rt.db.transaction() as s:
        for i in (1, 2):
            s.add(
                InboxEvent(
                    dedupe_key=f"dead-{i}",
                    kind="messages",
                    payload={"id": f"dead-{i}"},
                    status="dead",
                    attempts=5,
                    last_error="boom",
                    received_at=rt.clock(),
                )
            )
    post(boss, live.base_url, "/staff/problems/events/1/retry")
    post(boss, live.base_url, "/staff/problems/events/2/dismiss")
    with rt.db.ReadSession() as s:
        assert s.get(InboxEvent, 1).status == "pending" and s.get(InboxEvent, 1).attempts == 0
        assert s.get(InboxEvent, 2).status == "ignored"
    assert {"dead_letter_retry", "dead_letter_dismiss"} <= set(audit_actions(rt))


def test_admin_adds_a_user_shown_once_and_creates_and_revokes_a_token(live_server, boss):
    live, rt = live_server, live_server.runtime
    r = post(
        boss, live.base_url, "/staff/admin/users", {"email": "new@clinic.test", "role": "reception"}
    )
    password = re.search(r'<code class="secret">([^<]+)</code>', r.text).group(1)
    http, login = log_in(live.base_url, "new@clinic.test", password)
    assert login.status_code == 302
    assert (
        http.get(f"{live.base_url}/staff/", allow_redirects=False)
        .headers["Location"]
        .endswith("/staff/password")
    )
    r = post(boss, live.base_url, "/staff/admin/tokens", {"name": "lab"})
    token = re.search(r'<code class="secret">([^<]+)</code>', r.text).group(1)
    api = {"Authorization": f"Bearer {token}"}
    assert live.http.get(f"{live.base_url}/api/v1/appointments", headers=api).status_code == 200
    page = boss.get(f"{live.base_url}/staff/admin").text
    tid = re.search(r"/staff/admin/tokens/(\d+)/revoke", page).group(1)
    post(boss, live.base_url, f"/staff/admin/tokens/{tid}/revoke")
    assert live.http.get(f"{live.base_url}/api/v1/appointments", headers=api).status_code == 401
    assert {"staff_added", "api_token_created", "api_token_revoked"} <= set(audit_actions(rt))
    audit = boss.get(f"{live.base_url}/staff/audit", params={"action": "staff_added"}).text
    assert "new@clinic.test" in audit


def test_the_dashboard_shows_charts_with_their_numbers(live_server, desk, boss):
    book_from_the_page(live_server, desk)
    page = boss.get(f"{live_server.base_url}/staff/dashboard")
    assert page.status_code == 200
    assert "<svg" in page.text and "Reminder funnel" in page.text and "<table" in page.text


def test_a_disconnected_channel_shows_a_banner_with_the_waiting_messages(live_server, desk):
    from clinic_bot.models import GatewayState

    rt = live_server.runtime
    since = datetime(2026, 3, 2, 7, 12, tzinfo=UTC)  # 08:12 in Berlin
    with rt.db.transaction() as s:
        s.add(
            GatewayState(
                key="channel",
                value={"status": "LOGGED_OUT", "at": since.isoformat(), "since": since.isoformat()},
            )
        )
        p = Patient(phone=DIGITS, created_at=rt.clock())
        s.add(p)
        s.flush()
        for i in range(3):
            s.add(
                OutboxMessage(
                    idempotency_key=f"wait-{i}",
                    patient_id=p.id,
                    chat_id=f"{DIGITS}@s.whatsapp.net",
                    endpoint="messages/text",
                    body={"to": f"{DIGITS}@s.whatsapp.net", "body": "x"},
                    fingerprint="f" * 64,
                    status="pending",
                    next_attempt_at=rt.clock() + timedelta(hours=1),
                )
            )
    page = desk.get(f"{live_server.base_url}/staff/inbox").text
    assert "WhatsApp disconnected since 08:12" in page and "3 message(s) waiting" in page
    with rt.db.transaction() as s:
        GatewayState.put(s, "channel", {"status": "AUTH", "at": rt.clock().isoformat()}, rt.clock())
    assert "WhatsApp disconnected" not in desk.get(f"{live_server.base_url}/staff/inbox").text


def test_a_feed_link_is_rotated_from_the_operations_page_and_the_old_one_stops(live_server, boss):
    live, rt = live_server, live_server.runtime
    made = post(boss, live.base_url, "/staff/calendar/feeds", {"practitioner_id": ""})
    old = re.search(r'<code id="new-feed-url">([^<]+)</code>', made.text).group(1)
    assert live.http.get(old).status_code == 200
    page = boss.get(f"{live.base_url}/staff/admin").text
    assert "Whole clinic" in page and BOSS in page
    path = re.search(r'action="(/staff/calendar/feeds/\d+/rotate)"', page).group(1)
    shown = post(boss, live.base_url, path, {"from": "operations"})
    assert "New calendar feed link" in shown.text and "Back to users and tokens" in shown.text
    new = re.search(r'<code class="secret">([^<]+)</code>', shown.text).group(1)
    assert new != old
    assert live.http.get(old).status_code == 404
    assert live.http.get(new).status_code == 200
    assert {"feed_token_created", "feed_token_rotated"} <= set(audit_actions(rt))
    # The same button again names a link that no longer exists: told, nothing rotated.
    again = post(boss, live.base_url, path, {"from": "operations"})
    assert "no longer exists" in again.text
    assert live.http.get(new).status_code == 200
