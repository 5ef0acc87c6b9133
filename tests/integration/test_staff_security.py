"""The staff surface's security over real HTTP: throttle, sessions, headers, roles, escaping."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import requests
from sqlalchemy import func, select

from clinic_bot.app import create_app
from clinic_bot.models import AuditEntry, InboxEvent, Patient, StaffSession
from tests.staff_support import PASSWORD, add_user, csrf, log_in, post

RECEPTION = "desk@clinic.test"
ADMIN = "boss@clinic.test"


@pytest.fixture
def app(runtime):
    """Behind one trusted proxy (as on Heroku), so tests can speak from many addresses."""
    runtime.settings.trust_proxy_hops = 1
    return create_app(runtime)


@pytest.fixture
def users(runtime):
    add_user(runtime, RECEPTION, "reception", first_name="Rita")
    add_user(runtime, ADMIN, "admin")


def from_addr(address: str) -> dict:
    return {"X-Forwarded-For": address}


def attempt(live, email, password, address):
    _, r = log_in(live.base_url, email, password, headers=from_addr(address))
    return r.status_code


def test_five_wrong_passwords_from_one_address_lock_that_address_out(live_server, users):
    for _ in range(5):
        assert attempt(live_server, RECEPTION, "wrong", "203.0.113.5") == 401
    assert attempt(live_server, RECEPTION, PASSWORD, "203.0.113.5") == 429
    # The same account from the receptionist's own desk is not locked out by that.
    assert attempt(live_server, RECEPTION, PASSWORD, "198.51.100.7") == 302


def test_a_spray_from_many_addresses_is_counted_per_account_and_spares_a_known_device(
    live_server, users
):
    # The receptionist logged in from her desk before: a known-good address.
    assert attempt(live_server, RECEPTION, PASSWORD, "198.51.100.7") == 302
    for i in range(25):  # one or two tries from each of many addresses
        assert attempt(live_server, RECEPTION, "guess", f"203.0.113.{i // 2}") in (401, 429)
    # A new address now waits, even with the right password: rotating addresses reset nothing.
    assert attempt(live_server, RECEPTION, PASSWORD, "192.0.2.200") == 429
    # The known desk still gets in.
    assert attempt(live_server, RECEPTION, PASSWORD, "198.51.100.7") == 302


def test_the_account_cool_down_passes_and_the_counts_live_in_the_database(
    clock, live_server, users
):
    for i in range(20):
        attempt(live_server, RECEPTION, "guess", f"203.0.113.{i}")
    assert attempt(live_server, RECEPTION, PASSWORD, "192.0.2.1") == 429
    # A second app on the same database (another gunicorn process, or after a restart) agrees.
    other = create_app(live_server.runtime).test_client()
    page = other.get("/staff/login")
    token = page.get_data(as_text=True).split('name="csrf_token" value="')[1].split('"')[0]
    r = other.post(
        "/staff/login",
        data={"email": RECEPTION, "password": PASSWORD, "csrf_token": token},
        headers=from_addr("192.0.2.1"),
    )
    assert r.status_code == 429
    clock.advance(minutes=2)
    assert attempt(live_server, RECEPTION, PASSWORD, "192.0.2.1") == 302


def test_without_a_trusted_proxy_x_forwarded_for_is_ignored(runtime, users):
    runtime.settings.trust_proxy_hops = 0
    client = create_app(runtime).test_client()
    for i in range(6):
        page = client.get("/staff/login").get_data(as_text=True)
        token = page.split('name="csrf_token" value="')[1].split('"')[0]
        r = client.post(
            "/staff/login",
            data={"email": RECEPTION, "password": "wrong", "csrf_token": token},
            headers=from_addr(f"203.0.113.{i}"),  # a forged header: one client all along
        )
    assert r.status_code == 429


def test_a_cookie_replayed_after_logout_is_refused(live_server, users):
    http, r = log_in(live_server.base_url, RECEPTION)
    assert r.status_code == 302
    cookie = http.cookies.get("session")
    assert (
        post(http, live_server.base_url, "/staff/logout", allow_redirects=False).status_code == 302
    )
    replay = requests.Session()
    replay.cookies.set("session", cookie)
    r = replay.get(f"{live_server.base_url}/staff/", allow_redirects=False)
    assert r.status_code == 302 and "/staff/login" in r.headers["Location"]


def test_an_idle_session_expires(clock, live_server, users):
    http, _ = log_in(live_server.base_url, RECEPTION)
    clock.advance(hours=11)
    assert http.get(f"{live_server.base_url}/staff/", allow_redirects=False).status_code == 200
    clock.advance(hours=11)  # used 11 h ago: still alive (idle time counts from the last use)
    assert http.get(f"{live_server.base_url}/staff/", allow_redirects=False).status_code == 200
    clock.advance(hours=12, minutes=1)
    assert http.get(f"{live_server.base_url}/staff/", allow_redirects=False).status_code == 302


def test_a_password_change_ends_the_users_other_sessions(live_server, users):
    base = live_server.base_url
    laptop, _ = log_in(base, RECEPTION)
    phone, _ = log_in(base, RECEPTION)
    token = csrf(laptop, f"{base}/staff/password")
    r = laptop.post(
        f"{base}/staff/password",
        data={
            "csrf_token": token,
            "current_password": PASSWORD,
            "new_password": "a brand new secret",
            "repeat_password": "a brand new secret",
        },
        allow_redirects=False,
    )
    assert r.status_code == 302
    assert laptop.get(f"{base}/staff/", allow_redirects=False).status_code == 200
    assert phone.get(f"{base}/staff/", allow_redirects=False).status_code == 302
    assert log_in(base, RECEPTION, "a brand new secret")[1].status_code == 302


def test_disabling_a_user_ends_their_sessions_and_logins(live_server, users, runtime):
    base = live_server.base_url
    desk, _ = log_in(base, RECEPTION)
    admin, _ = log_in(base, ADMIN)
    with runtime.db.ReadSession() as s:
        from clinic_bot.models import StaffUser

        uid = s.execute(select(StaffUser.id).where(StaffUser.email == RECEPTION)).scalar_one()
    r = post(admin, base, f"/staff/admin/users/{uid}/disable", allow_redirects=False)
    assert r.status_code == 302
    assert desk.get(f"{base}/staff/", allow_redirects=False).status_code == 302
    assert log_in(base, RECEPTION)[1].status_code == 401


def test_a_first_password_must_be_changed_before_anything_else(live_server, runtime):
    add_user(runtime, "first@clinic.test", "admin", must_change_password=True)
    http, r = log_in(live_server.base_url, "first@clinic.test")
    page = http.get(f"{live_server.base_url}/staff/inbox", allow_redirects=False)
    assert page.status_code == 302 and page.headers["Location"].endswith("/staff/password")


def test_every_staff_page_carries_the_security_headers(live_server, users):
    http, _ = log_in(live_server.base_url, RECEPTION)
    for path in ("/staff/login", "/staff/", "/staff/inbox", "/staff/week", "/staff/broadcasts"):
        r = (requests if path == "/staff/login" else http).get(f"{live_server.base_url}{path}")
        assert r.status_code == 200, path
        csp = r.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "same-origin"
        assert r.headers["Cache-Control"] == "no-store"
        assert "Strict-Transport-Security" not in r.headers  # plain http on a laptop
        assert "<script>" not in r.text and " style=" not in r.text  # nothing inline to allow


def test_hsts_is_sent_when_the_app_is_served_over_https(runtime, users):
    runtime.settings.public_url = "https://clinic.example"
    r = create_app(runtime).test_client().get("/staff/login")
    assert r.headers["Strict-Transport-Security"].startswith("max-age=")


@pytest.mark.parametrize(
    "path", ["/staff/problems", "/staff/admin", "/staff/audit", "/staff/dashboard"]
)
def test_reception_is_refused_on_admin_pages(live_server, users, path):
    desk, _ = log_in(live_server.base_url, RECEPTION)
    assert desk.get(f"{live_server.base_url}{path}").status_code == 403
    boss, _ = log_in(live_server.base_url, ADMIN)
    assert boss.get(f"{live_server.base_url}{path}").status_code == 200


def test_reception_cannot_post_to_admin_actions(live_server, users):
    desk, _ = log_in(live_server.base_url, RECEPTION)
    r = post(desk, live_server.base_url, "/staff/admin/tokens", {"name": "mine"})
    assert r.status_code == 403
    r = post(desk, live_server.base_url, "/staff/admin/users", {"email": "x@y.z", "role": "admin"})
    assert r.status_code == 403


def test_html_in_patient_names_and_texts_is_shown_as_text(live_server, users, runtime):
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    now = runtime.clock()
    with runtime.db.transaction() as s:
        p = Patient(phone="4915100000009", name=evil, handoff_since=now, created_at=now)
        p.last_inbound_message_id = "evil-1"
        s.add(p)
        s.add(
            InboxEvent(
                dedupe_key="evil-1",
                kind="messages",
                chat_id="4915100000009@s.whatsapp.net",
                payload={
                    "id": "evil-1",
                    "type": "text",
                    "chat_id": "4915100000009@s.whatsapp.net",
                    "text": {"body": evil},
                },
                status="done",
                received_at=now,
            )
        )
        s.flush()
        pid = p.id
    http, _ = log_in(live_server.base_url, RECEPTION)
    for path in ("/staff/inbox", f"/staff/patients/{pid}/conversation", f"/staff/patients/{pid}"):
        page = http.get(f"{live_server.base_url}{path}").text
        assert "<script>alert" not in page and "<img src=x" not in page, path
        assert "&lt;script&gt;alert" in page, path


def test_the_problems_page_is_paginated(live_server, users, runtime):
    now = datetime(2026, 3, 1, tzinfo=UTC)
    with runtime.db.transaction() as s:
        s.add_all(
            InboxEvent(
                dedupe_key=f"dead-{i}",
                kind="messages",
                payload={"id": f"dead-{i}", "blob": "x" * 2000},
                status="dead",
                last_error=f"error number {i}",
                received_at=now + timedelta(seconds=i),
            )
            for i in range(229)
        )
    boss, _ = log_in(live_server.base_url, ADMIN)
    first = boss.get(f"{live_server.base_url}/staff/problems")
    assert first.status_code == 200
    assert first.text.count("error number ") == 50
    assert "(229)" in first.text and "page 1 of 5" in first.text
    assert len(first.content) < 400_000
    last = boss.get(f"{live_server.base_url}/staff/problems?events_page=5")
    assert last.text.count("error number ") == 29
    odd = boss.get(f"{live_server.base_url}/staff/problems?events_page=abc")
    assert odd.status_code == 200


def test_logins_failures_and_logouts_are_audited_with_the_address(live_server, users, runtime):
    attempt(live_server, RECEPTION, "wrong", "203.0.113.9")
    http, _ = log_in(live_server.base_url, RECEPTION, headers=from_addr("198.51.100.7"))
    post(http, live_server.base_url, "/staff/logout")
    with runtime.db.ReadSession() as s:
        rows = s.execute(select(AuditEntry).order_by(AuditEntry.id)).scalars().all()
        got = [(r.action, r.staff_email, r.address) for r in rows]
        sessions = s.execute(select(func.count()).select_from(StaffSession)).scalar_one()
    assert ("login_failed", RECEPTION, "203.0.113.9") in got
    assert ("login", RECEPTION, "198.51.100.7") in got
    assert ("logout", RECEPTION, "127.0.0.1") in got  # that request came without the header
    assert sessions == 0


def test_the_audit_log_pages_keep_their_filters(live_server, users, runtime):
    now = runtime.clock()
    with runtime.db.transaction() as s:
        s.add_all(
            AuditEntry(at=now, staff_email=ADMIN, action="x_action", target=f"t{i}", detail={})
            for i in range(60)
        )
        s.add_all(
            AuditEntry(at=now, staff_email=ADMIN, action="y_action", target="y", detail={})
            for _ in range(10)
        )
    boss, _ = log_in(live_server.base_url, ADMIN)
    page = boss.get(f"{live_server.base_url}/staff/audit", params={"action": "x_action"}).text
    assert "page 1 of 2 (60 in all)" in page
    nxt = re.search(r'href="([^"]+)" rel="next"', page).group(1).replace("&amp;", "&")
    assert "action=x_action" in nxt and "page=2" in nxt
    second = boss.get(f"{live_server.base_url}{nxt}").text
    assert second.count("<td>x_action</td>") == 10 and "y_action</td>" not in second


def test_a_day_with_a_huge_import_is_bounded(live_server, users, runtime):
    from clinic_bot.models import Appointment

    start = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
    with runtime.db.transaction() as s:
        s.add_all(
            Appointment(
                starts_at=start + timedelta(seconds=i),
                ends_at=start + timedelta(seconds=i + 60),
                status="booked",
                source="ics",
                title=f"Imported {i}",
                version=1,
            )
            for i in range(620)
        )
    desk, _ = log_in(live_server.base_url, RECEPTION)
    page = desk.get(f"{live_server.base_url}/staff/", params={"date": "2026-03-03"}).text
    assert page.count('<article class="appt') == 500
    assert "Only the first 500 appointments are shown" in page
