"""The staff UI over real HTTP: login, CSRF, the day's appointments, problems, calendar."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import requests
from werkzeug.security import generate_password_hash

from clinic_bot.domain import booking
from clinic_bot.models import GatewayState, InboxEvent, OutboxMessage, Patient, StaffUser

EMAIL = "reception@clinic.test"
PASSWORD = "correct horse battery"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def staff_user(runtime):
    with runtime.db.transaction() as s:
        s.add(
            StaffUser(
                email=EMAIL,
                password_hash=generate_password_hash(PASSWORD),
                # Admin: these tests open the operations (problems) page too.
                role="admin",
                created_at=runtime.clock(),
            )
        )
    return EMAIL


def csrf_token(http: requests.Session, url: str) -> str:
    page = http.get(url)
    assert page.status_code == 200, page.text
    match = CSRF_FIELD.search(page.text)
    assert match, "the form carries no csrf_token"
    return match.group(1)


def log_in(live, email=EMAIL, password=PASSWORD, http=None) -> requests.Response:
    http = http or live.http
    token = csrf_token(http, f"{live.base_url}/staff/login")
    return http.post(
        f"{live.base_url}/staff/login",
        data={"email": email, "password": password, "csrf_token": token},
        allow_redirects=False,
    )


@pytest.fixture
def staff(live_server, staff_user):
    """A live server with a logged-in reception session in `live_server.http`."""
    r = log_in(live_server)
    assert r.status_code == 302, r.text
    return live_server


def book_staff_appointment(runtime, phone: str, name: str, starts_at: datetime):
    with runtime.db.transaction() as s:
        patient = Patient(phone=phone, name=name, created_at=runtime.clock())
        s.add(patient)
        s.flush()
        booking.book(
            s,
            runtime.profile,
            patient=patient,
            service_id="checkup",
            practitioner_id="dr-lee",
            starts_at=starts_at,
            now=runtime.clock(),
            source="staff",
            enforce_hours=False,
        )


def test_staff_pages_send_a_visitor_who_is_not_logged_in_to_the_login_form(live_server):
    for path in ("/staff/", "/staff/problems", "/staff/calendar"):
        r = live_server.http.get(f"{live_server.base_url}{path}", allow_redirects=False)
        assert r.status_code == 302
        assert r.headers["Location"].startswith("/staff/login")


def test_a_wrong_password_is_refused_and_the_right_one_lets_staff_in(live_server, staff_user):
    wrong = log_in(live_server, password="not the password")
    assert wrong.status_code == 401
    assert "Wrong email or password" in wrong.text
    still_out = live_server.http.get(f"{live_server.base_url}/staff/", allow_redirects=False)
    assert still_out.status_code == 302

    right = log_in(live_server)
    assert right.status_code == 302
    assert right.headers["Location"] == "/staff/"
    page = live_server.http.get(f"{live_server.base_url}/staff/")
    assert page.status_code == 200
    assert EMAIL in page.text


def test_an_unknown_email_gets_the_same_answer_as_a_wrong_password(live_server, staff_user):
    r = log_in(live_server, email="nobody@clinic.test")
    assert r.status_code == 401
    assert "Wrong email or password" in r.text


def test_a_login_posted_without_its_csrf_token_is_refused(live_server, staff_user):
    live_server.http.get(f"{live_server.base_url}/staff/login")  # a session cookie, no token sent
    r = live_server.http.post(
        f"{live_server.base_url}/staff/login",
        data={"email": EMAIL, "password": PASSWORD},
        allow_redirects=False,
    )
    assert r.status_code == 400
    assert "refused" in r.text
    after = live_server.http.get(f"{live_server.base_url}/staff/", allow_redirects=False)
    assert after.status_code == 302  # not logged in


def test_a_csrf_token_from_another_session_is_refused(live_server, staff_user):
    stolen = csrf_token(requests.Session(), f"{live_server.base_url}/staff/login")
    live_server.http.get(f"{live_server.base_url}/staff/login")
    r = live_server.http.post(
        f"{live_server.base_url}/staff/login",
        data={"email": EMAIL, "password": PASSWORD, "csrf_token": stolen},
        allow_redirects=False,
    )
    assert r.status_code == 400


def test_logging_out_ends_the_session(staff):
    token = csrf_token(staff.http, f"{staff.base_url}/staff/")
    r = staff.http.post(
        f"{staff.base_url}/staff/logout", data={"csrf_token": token}, allow_redirects=False
    )
    assert r.status_code == 302
    after = staff.http.get(f"{staff.base_url}/staff/", allow_redirects=False)
    assert after.status_code == 302


def test_repeated_failed_logins_are_throttled_until_the_window_passes(
    clock, live_server, staff_user
):
    for _ in range(5):
        assert log_in(live_server, password="guess").status_code == 401
    blocked = log_in(live_server)  # even the right password waits
    assert blocked.status_code == 429
    assert "Too many failed attempts" in blocked.text
    assert int(blocked.headers["Retry-After"]) > 0

    clock.advance(minutes=16)
    assert log_in(live_server).status_code == 302


def test_webhook_and_json_api_do_not_need_a_csrf_token(live_server):
    hook = live_server.post_webhook(
        {
            "statuses": [{"id": "m-1", "status": "read", "recipient_id": "4915111111111"}],
            "event": {"type": "statuses", "event": "post"},
        }
    )
    assert hook.status_code == 200, hook.text
    api = live_server.http.get(f"{live_server.base_url}/api/v1/patients/4915112345678")
    assert api.status_code == 401  # refused by its bearer token check, not by CSRF
    sandbox = live_server.http.put(
        f"{live_server.base_url}/sandbox/api/settings", json={"auto_read": False}
    )
    assert sandbox.status_code == 200


def test_the_day_shows_an_appointment_in_clinic_local_time(clock, runtime, staff):
    clock.set(datetime(2026, 11, 24, 7, 0, tzinfo=UTC))
    assert log_in(staff).status_code == 302  # months later: the old session has expired
    # 08:30 UTC is 09:30 in Berlin; 23:30 UTC is already the 25th in Berlin.
    book_staff_appointment(
        runtime, "4915111111111", "Ana Lima", datetime(2026, 11, 24, 8, 30, tzinfo=UTC)
    )
    book_staff_appointment(
        runtime, "4915122222222", "Late Larry", datetime(2026, 11, 24, 23, 30, tzinfo=UTC)
    )

    page = staff.http.get(f"{staff.base_url}/staff/")  # today at the clinic: the 24th
    assert page.status_code == 200
    assert "Ana Lima" in page.text and "+4915111111111" in page.text
    assert "09:30" in page.text and "08:30" not in page.text
    assert "Dr. Lee" in page.text and "booked" in page.text and "staff" in page.text
    assert "Late Larry" not in page.text

    next_day = staff.http.get(f"{staff.base_url}/staff/", params={"date": "2026-11-25"})
    assert "Late Larry" in next_day.text and "00:30" in next_day.text
    assert "Ana Lima" not in next_day.text


def test_a_date_that_is_not_a_date_shows_today_with_a_message(staff):
    page = staff.http.get(f"{staff.base_url}/staff/", params={"date": "soon"})
    assert page.status_code == 200
    assert "is not a date" in page.text


def test_problems_lists_a_dead_lettered_event_and_message_with_their_errors(runtime, staff):
    now = runtime.clock()
    with runtime.db.transaction() as s:
        s.add(
            InboxEvent(
                dedupe_key="msg:poison-1",
                kind="messages",
                payload={"id": "poison-1", "type": "text"},
                status="dead",
                attempts=5,
                last_error="KeyError: 'chat_id'",
                received_at=now,
            )
        )
        s.add(
            OutboxMessage(
                idempotency_key="reply:x:1",
                chat_id="4915111111111@s.whatsapp.net",
                endpoint="messages/text",
                body={"to": "4915111111111@s.whatsapp.net", "body": "See you soon"},
                fingerprint="f" * 64,
                status="dead",
                attempts=8,
                last_error="gateway 400: to is not a valid chat id",
            )
        )
    page = staff.http.get(f"{staff.base_url}/staff/problems")
    assert page.status_code == 200
    assert "KeyError: &#39;chat_id&#39;" in page.text
    assert "gateway 400: to is not a valid chat id" in page.text
    assert "+4915111111111" in page.text
    home = staff.http.get(f"{staff.base_url}/staff/")
    assert re.search(r'aria-label="2 problems"', home.text)  # the count shows on every page


def test_problems_shows_the_channel_state_and_a_worker_that_stopped_ticking(clock, runtime, staff):
    with runtime.db.transaction() as s:
        s.add(GatewayState(key="channel", value={"status": "QR", "at": clock().isoformat()}))
        s.add(GatewayState(key="worker", value={"last_tick": clock().isoformat()}))
    fresh = staff.http.get(f"{staff.base_url}/staff/problems").text
    assert "QR" in fresh and "scan the QR code" in fresh
    assert "worker is not ticking" not in fresh

    clock.advance(minutes=10)
    stale = staff.http.get(f"{staff.base_url}/staff/problems").text
    assert "worker is not ticking" in stale


def test_every_staff_page_links_to_the_days_appointments_and_the_calendar(staff):
    anonymous = requests.Session()
    for path in ("/staff/login", "/staff/", "/staff/problems", "/staff/calendar"):
        http = anonymous if path == "/staff/login" else staff.http
        page = http.get(f"{staff.base_url}{path}", allow_redirects=False)
        assert page.status_code == 200, path
        links = re.findall(r'<a href="([^"]+)"[^>]*>([^<]*)', page.text)
        assert any(href == "/staff/" for href, _ in links), path
        assert any(href == "/staff/calendar" and "Calendar" in text for href, text in links), path


def test_the_calendar_page_offers_the_upload_and_the_feeds(staff):
    page = staff.http.get(f"{staff.base_url}/staff/calendar")
    assert 'type="file"' in page.text and 'name="file"' in page.text
    assert ".ics subscription feeds" in page.text


def test_login_returns_to_the_page_asked_for_but_never_to_another_site(live_server, staff_user):
    asked = live_server.http.get(f"{live_server.base_url}/staff/problems", allow_redirects=False)
    assert asked.headers["Location"] == "/staff/login?next=/staff/problems"
    token = csrf_token(live_server.http, f"{live_server.base_url}/staff/login?next=/staff/problems")
    form = {"email": EMAIL, "password": PASSWORD, "csrf_token": token}
    back = live_server.http.post(
        f"{live_server.base_url}/staff/login",
        data={**form, "next": "/staff/problems"},
        allow_redirects=False,
    )
    assert back.headers["Location"] == "/staff/problems"

    other = requests.Session()
    token = csrf_token(other, f"{live_server.base_url}/staff/login")
    away = other.post(
        f"{live_server.base_url}/staff/login",
        data={**form, "csrf_token": token, "next": "//evil.example/staff"},
        allow_redirects=False,
    )
    assert away.headers["Location"] == "/staff/"


def test_with_a_real_whapi_channel_the_login_cookie_travels_over_https_only(
    settings, staff_user, runtime
):
    from clinic_bot.app import create_app

    runtime.settings.whapi_token = "a-real-channel-token"  # production: no sandbox
    client = create_app(runtime).test_client()
    base = "https://clinic.example"
    page = client.get("/staff/login", base_url=base)
    token = CSRF_FIELD.search(page.text).group(1)
    r = client.post(
        "/staff/login",
        base_url=base,
        data={"email": EMAIL, "password": PASSWORD, "csrf_token": token},
        headers={"Referer": f"{base}/staff/login"},  # Flask-WTF's strict check over HTTPS
    )
    assert r.status_code == 302
    cookie = r.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
