"""Reception's side of a conversation over real HTTP with the worker: inbox, reply, resolve."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from clinic_bot.models import AuditEntry, OutboxMessage, Patient
from tests.staff_support import Phone, add_user, log_in, post

DESK = "rita@clinic.test"
PHONE = "4915100000042"


@pytest.fixture
def desk(live):
    add_user(live.runtime, DESK, "reception", first_name="Rita")
    http, r = log_in(live.base_url, DESK)
    assert r.status_code == 302
    return http


def patient_id(runtime, phone=PHONE) -> int:
    with runtime.db.ReadSession() as s:
        return s.execute(select(Patient.id).where(Patient.phone == phone)).scalar_one()


def ask_for_reception(live) -> Phone:
    phone = Phone(live, PHONE)
    phone.say("hi")
    out = phone.tap("Talk to reception")
    assert "reception" in out[-1]["text"]
    return phone


def test_a_patient_who_asks_for_a_person_waits_in_the_inbox_with_their_last_words(live, desk):
    phone = ask_for_reception(live)
    phone.say("I need to change my time please")
    inbox = desk.get(f"{live.base_url}/staff/inbox/list").text
    assert f"+{PHONE}" in inbox and "I need to change my time please" in inbox
    assert re.search(r"waiting \d+ min", inbox)
    badge = desk.get(f"{live.base_url}/staff/inbox/badge").text
    assert 'aria-label="1 waiting"' in badge
    # The count shows in the header of every page.
    assert 'aria-label="1 waiting"' in desk.get(f"{live.base_url}/staff/week").text


def test_a_reply_from_the_page_reaches_the_patient_once_signed_and_resolve_hands_back(live, desk):
    phone = ask_for_reception(live)
    pid = patient_id(live.runtime)
    r = post(
        desk,
        live.base_url,
        f"/staff/patients/{pid}/reply",
        {"text": "Hello, which day suits you?"},
        allow_redirects=False,
    )
    assert r.status_code == 302
    live.settle()
    got = [m for m in phone.arrived() if "which day suits you" in m["text"]]
    assert len(got) == 1 and got[0]["text"].endswith("— Rita")
    # While reception has the chat, the bot keeps quiet.
    assert phone.say("Friday morning") == []
    page = desk.get(f"{live.base_url}/staff/patients/{pid}/conversation").text
    assert "Friday morning" in page and "which day suits you" in page

    r = post(desk, live.base_url, f"/staff/patients/{pid}/resolve", allow_redirects=False)
    assert r.status_code == 302
    live.settle()
    told = phone.arrived()
    assert told and "closed" in told[-1]["text"]
    assert phone.say("hi")  # the bot answers again
    assert 'aria-label="' not in desk.get(f"{live.base_url}/staff/inbox/badge").text
    with live.runtime.db.ReadSession() as s:
        actions = [a for (a,) in s.execute(select(AuditEntry.action)).all()]
    assert {"message_sent", "handoff_resolved", "patient_viewed"} <= set(actions)


def test_writing_to_any_patient_starts_a_handoff(live, desk):
    phone = Phone(live, PHONE)
    phone.say("hi")
    pid = patient_id(live.runtime)
    post(desk, live.base_url, f"/staff/patients/{pid}/reply", {"text": "Your results are in."})
    live.settle()
    assert any("Your results are in." in m["text"] for m in phone.arrived())
    assert phone.say("great, thanks") == []
    assert f"+{PHONE}" in desk.get(f"{live.base_url}/staff/inbox/list").text


def test_an_empty_or_overlong_reply_is_refused_with_a_message(live, desk):
    Phone(live, PHONE).say("hi")
    pid = patient_id(live.runtime)
    r = post(desk, live.base_url, f"/staff/patients/{pid}/reply", {"text": "  "})
    assert r.status_code == 200 and "Write a message first" in r.text
    r = post(desk, live.base_url, f"/staff/patients/{pid}/reply", {"text": "x" * 5000})
    assert "longer than" in r.text
    with live.runtime.db.ReadSession() as s:
        assert not s.execute(select(OutboxMessage).where(OutboxMessage.purpose == "staff")).first()
    assert desk.get(f"{live.base_url}/staff/patients/999999/conversation").status_code == 404


def assert_with_reception(live, pid: int, replies: list[dict]) -> None:
    """The patient is still waiting for a person: no bot menu, at most reception's hours."""
    assert all("reception" in m["text"].lower() for m in replies), replies
    with live.runtime.db.ReadSession() as s:
        assert s.get(Patient, pid).handoff_since is not None


def test_handoff_expiry_counts_from_the_last_staff_activity_not_the_patients(clock, live, desk):
    idle = live.runtime.profile.handoff_idle
    phone = ask_for_reception(live)
    pid = patient_id(live.runtime)
    clock.advance(seconds=(idle * 0.75).total_seconds())
    desk, _ = log_in(live.base_url, DESK)  # hours later: a new staff session
    post(desk, live.base_url, f"/staff/patients/{pid}/reply", {"text": "We are on it."})
    live.settle()
    phone.arrived()
    # The patient writing again does not keep the handoff alive; staff activity does.
    clock.advance(seconds=(idle * 0.75).total_seconds())
    # 0.75 idle after staff wrote: still with reception (at most told when reception opens).
    assert_with_reception(live, pid, phone.say("any news?"))
    clock.advance(seconds=(idle * 0.3).total_seconds())
    assert phone.say("hello?") != []  # idle passed since the staff reply: the bot is back
    with live.runtime.db.ReadSession() as s:
        assert s.get(Patient, pid).handoff_since is None


def test_without_a_staff_reply_the_patients_own_messages_do_not_extend_the_handoff(
    clock, live, desk
):
    idle = live.runtime.profile.handoff_idle
    phone = ask_for_reception(live)
    pid = patient_id(live.runtime)
    clock.advance(seconds=(idle * 0.9).total_seconds())
    assert_with_reception(live, pid, phone.say("still there?"))
    clock.advance(seconds=(idle * 0.2).total_seconds())
    assert phone.say("hello?") != []


def test_replies_go_unsigned_when_the_profile_says_so(live, desk):
    from dataclasses import replace

    live.runtime.profile = replace(live.runtime.profile, sign_staff_replies=False)
    phone = ask_for_reception(live)
    pid = patient_id(live.runtime)
    post(desk, live.base_url, f"/staff/patients/{pid}/reply", {"text": "Unsigned note."})
    live.settle()
    assert [m["text"] for m in phone.arrived()] == ["Unsigned note."]


def test_a_patient_running_late_shows_as_an_alert_with_the_visit_until_dismissed(clock, live, desk):
    from datetime import timedelta

    from clinic_bot.models.conversation import StaffAlert
    from tests.reminders_support import book

    book(live.runtime, PHONE, clock.now + timedelta(hours=1), name="Ana Late")
    phone = Phone(live, PHONE)
    phone.say("Sorry, I'm running late, stuck in traffic")
    page = desk.get(f"{live.base_url}/staff/inbox").text
    visit = (clock.now + timedelta(hours=1)).astimezone(live.runtime.profile.timezone)
    assert "Running late" in page and "Ana Late" in page
    assert visit.strftime("%H:%M") in page
    with live.runtime.db.ReadSession() as s:
        alert_id = s.execute(select(StaffAlert.id)).scalar_one()
    post(desk, live.base_url, f"/staff/alerts/{alert_id}/seen", {})
    assert "Running late" not in desk.get(f"{live.base_url}/staff/inbox").text
    with live.runtime.db.ReadSession() as s:
        assert s.get(StaffAlert, alert_id).seen_at is not None
        assert s.execute(
            select(AuditEntry).where(AuditEntry.action == "alert dismissed")
        ).scalar_one()


def test_a_staff_note_shows_in_its_place_with_who_and_when_and_never_reaches_the_patient(
    clock, live, desk
):
    phone = Phone(live, PHONE)
    phone.say("first words")
    pid = patient_id(live.runtime)
    clock.advance(minutes=5)
    note = 'Prefers mornings <script>alert("x")</script>'
    r = post(desk, live.base_url, f"/staff/patients/{pid}/notes", {"text": note})
    assert r.status_code == 200 and "Note added" in r.text
    written = clock().astimezone(live.runtime.profile.timezone).strftime("%d %b %H:%M")
    clock.advance(minutes=5)
    phone.say("later words")
    live.settle()
    assert not any("Prefers mornings" in m["text"] for m in live.outgoing(PHONE))

    timeline = desk.get(f"{live.base_url}/staff/patients/{pid}/timeline").text
    assert "<script>alert" not in timeline
    shown = "Prefers mornings &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
    assert shown in timeline
    assert timeline.index("first words") < timeline.index(shown) < timeline.index("later words")
    entry = timeline[timeline.rindex("<li", 0, timeline.index(shown)) : timeline.index(shown)]
    assert "note by" in entry and "Rita" in entry and written in entry
    with live.runtime.db.ReadSession() as s:
        audited = s.execute(
            select(AuditEntry).where(AuditEntry.action == "note_added")
        ).scalar_one()
    assert audited.staff_email == DESK and audited.target == f"patient:{pid}"


def test_an_empty_or_overlong_note_is_refused_with_a_message(live, desk):
    Phone(live, PHONE).say("hi")
    pid = patient_id(live.runtime)
    r = post(desk, live.base_url, f"/staff/patients/{pid}/notes", {"text": " "})
    assert "Write the note first" in r.text
    r = post(desk, live.base_url, f"/staff/patients/{pid}/notes", {"text": "x" * 2001})
    assert "longer than" in r.text
    assert "note by" not in desk.get(f"{live.base_url}/staff/patients/{pid}/timeline").text
    r = post(desk, live.base_url, "/staff/patients/999999/notes", {"text": "hello"})
    assert r.status_code == 404
