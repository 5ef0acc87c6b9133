"""Reception runs the day in a real Chromium: inbox, reply, resolve, day-view actions,
no-show, broadcast progress, dead-letter retry, roles, and the day view at 390 px."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from clinic_bot.domain import availability
from clinic_bot.domain.appointment_changes import appointment_changed
from clinic_bot.domain.patients import get_or_create_patient
from clinic_bot.models import Appointment, InboxEvent
from tests.reminders_support import use_profile
from tests.staff_support import PASSWORD, Phone, add_user

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
DESK, BOSS = "rita@clinic.test", "boss@clinic.test"
PHONE = "4915100000055"


@pytest.fixture
def clinic(live):
    """The live app and worker with fast broadcast pacing and no quiet hours, and two logins."""
    use_profile(live.runtime, broadcasts={"min_interval": "1s", "jitter": "0s", "quiet_hours": []})
    add_user(live.runtime, DESK, "reception", first_name="Rita")
    add_user(live.runtime, BOSS, "admin")
    return live


def open_as(browser, live, email, width=1280, height=900):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    errors = []
    # Anything the CSP blocks (an inline script or style that slipped in) shows up here.
    page.on(
        "console",
        lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.goto(f"{live.base_url}/staff/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    page.csp_errors = errors
    return page


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def free_day(runtime):
    with runtime.db.ReadSession() as s:
        return availability.days_with_free_slots(
            s,
            runtime.profile,
            service_id="checkup",
            practitioner_id="dr-lee",
            now=runtime.clock() + timedelta(days=1),
            limit=1,
        )[0]


def test_reception_answers_a_waiting_patient_from_the_inbox(browser, clinic):
    live = clinic
    page = open_as(browser, live, DESK)
    page.get_by_role("link", name=re.compile("^Inbox")).click()
    expect(page.get_by_text("Nobody is waiting for a person.")).to_be_visible()

    phone = Phone(live, PHONE)
    phone.say("hi")
    phone.tap("Talk to reception")
    phone.say("Can I come earlier tomorrow?")
    waiting = page.get_by_role("list", name="Waiting patients")
    expect(waiting.get_by_text("Can I come earlier tomorrow?")).to_be_visible(timeout=5000)
    expect(page.locator("#waiting-badge .badge")).to_have_text("1", timeout=5000)
    shot(page, "inbox")

    waiting.get_by_role("link").first.click()
    page.get_by_label("Reply").fill("Yes, 9:00 is free. Shall I move it?")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_text("Sent.")).to_be_visible()
    live.wait_for(lambda: any("9:00 is free" in m["text"] for m in live.outgoing(PHONE)))
    live.settle()
    replies = [m for m in live.outgoing(PHONE) if "9:00 is free" in m["text"]]
    assert len(replies) == 1 and replies[0]["text"].endswith("— Rita")
    phone.arrived()
    phone.say("yes please")
    timeline = page.get_by_role("list", name="Messages")
    expect(timeline.get_by_text("yes please")).to_be_visible(timeout=5000)
    page.get_by_label("Internal note").fill("Wants the 9:00 <b>only</b>")
    page.get_by_role("button", name="Add note").click()
    note = page.get_by_role("list", name="Messages").get_by_text("Wants the 9:00 <b>only</b>")
    expect(note).to_be_visible()
    expect(page.get_by_text("note by Rita")).to_be_visible()
    assert not any("Wants the 9:00" in m["text"] for m in live.outgoing(PHONE))
    shot(page, "conversation")

    page.get_by_role("button", name=re.compile("^Resolve")).click()
    expect(page.get_by_text("Resolved")).to_be_visible()
    live.settle()
    assert "closed" in phone.arrived()[-1]["text"]
    assert phone.say("hi")  # the bot answers that patient again
    assert page.csp_errors == []


def test_reception_books_moves_and_cancels_from_the_day_view(browser, clinic):
    live = clinic
    day = free_day(live.runtime)
    page = open_as(browser, live, DESK)
    page.goto(f"{live.base_url}/staff/?date={day.isoformat()}")
    page.get_by_role("link", name="New appointment").click()
    page.get_by_role("button", name="Show free times").click()
    page.get_by_label("Patient phone").fill(f"+{PHONE}")
    page.get_by_label("Patient name").fill("Ana Lima")
    page.locator("input[name=slot]").first.check()
    page.get_by_role("button", name="Book").click()
    expect(page.get_by_text("Appointment booked. The patient is told.")).to_be_visible()
    card = page.get_by_role("article").filter(has_text="Ana Lima")
    expect(card).to_be_visible()
    live.wait_for(lambda: any("has booked" in m["text"] for m in live.outgoing(PHONE)))
    shot(page, "day")

    card.get_by_role("link", name="Move").click()
    page.locator("input[name=slot]").nth(3).check()
    page.get_by_role("button", name="Move").click()
    expect(page.get_by_text("Appointment moved.")).to_be_visible()
    live.wait_for(lambda: any("moved by the clinic" in m["text"] for m in live.outgoing(PHONE)))

    page.get_by_role("article").filter(has_text="Ana Lima").get_by_role(
        "button", name="Cancel…"
    ).click()
    page.get_by_role("button", name="Yes, cancel it").click()
    expect(page.get_by_text("Appointment cancelled.")).to_be_visible()
    expect(page.get_by_role("article").filter(has_text="Ana Lima").locator(".chip")).to_have_text(
        "cancelled"
    )
    live.wait_for(lambda: any("cancelled by the clinic" in m["text"] for m in live.outgoing(PHONE)))
    assert page.csp_errors == []


def test_a_past_visit_can_be_marked_no_show_and_a_future_one_cannot(browser, clinic):
    live, rt = clinic, clinic.runtime
    now = rt.clock()
    with rt.db.transaction() as s:
        for phone, name, start in (
            ("4915100000061", "Past Paula", now - timedelta(hours=1)),
            ("4915100000062", "Future Fred", now + timedelta(hours=3)),
        ):
            p = get_or_create_patient(s, phone, now)
            p.name = name
            a = Appointment(
                patient_id=p.id,
                service_id="checkup",
                practitioner_id="dr-lee",
                starts_at=start,
                ends_at=start + timedelta(minutes=20),
                status="booked",
                source="staff",
                version=1,
                created_at=now,
                updated_at=now,
            )
            s.add(a)
            appointment_changed(s, a, now, "created")
    page = open_as(browser, live, DESK)
    for label, start in (("Past Paula", now - timedelta(hours=1)),):
        local = start.astimezone(rt.profile.timezone)
        page.goto(f"{live.base_url}/staff/?date={local.date().isoformat()}")
        past = page.get_by_role("article").filter(has_text=label)
        past.get_by_role("button", name="No-show").click()
        expect(page.get_by_text("Marked no-show.")).to_be_visible()
        expect(page.get_by_role("article").filter(has_text=label).locator(".chip")).to_have_text(
            "no-show"
        )
    future_local = (now + timedelta(hours=3)).astimezone(rt.profile.timezone)
    page.goto(f"{live.base_url}/staff/?date={future_local.date().isoformat()}")
    future = page.get_by_role("article").filter(has_text="Future Fred")
    expect(future).to_be_visible()
    expect(future.get_by_role("button", name="No-show")).to_have_count(0)
    expect(future.get_by_role("button", name="Completed")).to_have_count(0)


def test_a_broadcast_to_a_days_patients_reaches_100_percent(browser, clinic):
    live, rt = clinic, clinic.runtime
    day = free_day(rt)
    tz = rt.profile.timezone
    with rt.db.ReadSession() as s:
        slots = availability.free_slots(
            s, rt.profile, service_id="checkup", practitioner_id="dr-lee", day=day, now=rt.clock()
        )
    now = rt.clock()
    with rt.db.transaction() as s:
        for i, slot in enumerate(slots[:3]):
            p = get_or_create_patient(s, f"491510000007{i}", now)
            a = Appointment(
                patient_id=p.id,
                service_id="checkup",
                practitioner_id="dr-lee",
                starts_at=slot.starts_at,
                ends_at=slot.ends_at,
                status="booked",
                source="staff",
                version=1,
                created_at=now,
                updated_at=now,
            )
            s.add(a)
            appointment_changed(s, a, now, "created")
    page = open_as(browser, live, DESK)
    page.get_by_role("link", name="Broadcasts").click()
    page.get_by_role("button", name="running late").click()
    page.get_by_label("Day").fill(day.isoformat())
    page.get_by_role("button", name="Preview and count").click()
    expect(page.get_by_text("What the patient sees")).to_be_visible()
    page.get_by_role("button", name=re.compile("^Send to 3 patient")).click()
    expect(page.locator(".percent")).to_have_text("100%", timeout=30_000)
    expect(page.locator("dd.sent")).to_have_text("3")
    shot(page, "broadcast")
    for i in range(3):
        assert any(
            "running about 20 minutes late" in m["text"] for m in live.outgoing(f"491510000007{i}")
        )
    assert tz  # clinic time was used for the day


def test_an_admin_retries_a_dead_letter_and_reception_is_refused_there(browser, clinic):
    live, rt = clinic, clinic.runtime
    with rt.db.transaction() as s:
        s.add(
            InboxEvent(
                dedupe_key="dead-browser-1",
                kind="unknown_kind",
                payload={"id": "dead-browser-1"},
                status="dead",
                attempts=5,
                last_error="RuntimeError: the handler fell over",
                received_at=rt.clock(),
            )
        )
    desk = open_as(browser, live, DESK)
    response = desk.goto(f"{live.base_url}/staff/problems")
    assert response.status == 403
    expect(desk.get_by_role("link", name=re.compile("^Operations"))).to_have_count(0)

    boss = open_as(browser, live, BOSS)
    boss.get_by_role("link", name=re.compile("^Operations")).click()
    expect(boss.get_by_text("RuntimeError: the handler fell over")).to_be_visible()
    boss.get_by_role("button", name="Retry").first.click()
    expect(boss.get_by_text("Sent back to the worker.")).to_be_visible()

    def handled():
        with rt.db.ReadSession() as s:
            status = s.execute(
                select(InboxEvent.status).where(InboxEvent.dedupe_key == "dead-browser-1")
            ).scalar_one()
        return status != "pending" and status != "processing"

    live.wait_for(handled)


def test_the_day_view_works_at_390_px(browser, clinic):
    live = clinic
    with live.runtime.db.transaction() as s:
        now = live.runtime.clock()
        p = get_or_create_patient(s, PHONE, now)
        p.name = "Ana Lima"
        start = now + timedelta(hours=2)
        a = Appointment(
            patient_id=p.id,
            service_id="checkup",
            practitioner_id="dr-lee",
            starts_at=start,
            ends_at=start + timedelta(minutes=20),
            status="booked",
            source="staff",
            version=1,
            created_at=now,
            updated_at=now,
        )
        s.add(a)
        appointment_changed(s, a, now, "created")
    local = start.astimezone(live.runtime.profile.timezone)
    page = open_as(browser, live, DESK, width=390, height=844)
    page.goto(f"{live.base_url}/staff/?date={local.date().isoformat()}")
    card = page.get_by_role("article").filter(has_text="Ana Lima")
    expect(card).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    box = card.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    expect(card.get_by_role("link", name="Move")).to_be_visible()
    shot(page, "day-390px")
