"""Whole conversations over real HTTP: webhook in, sandbox gateway out, the worker between.

The `live` fixture runs on the real clock (a test that also takes `clock` gets a fixed one),
so expected times come from availability, not from hard-coded dates.
"""

from __future__ import annotations

import base64
from datetime import UTC, timedelta

import icalendar
import pytest
from sqlalchemy import func, select

from clinic_bot.domain import availability
from clinic_bot.models import Appointment, InboxEvent, OutboxMessage, Patient
from clinic_bot.reactions.conversation import render
from clinic_bot.web.api.auth import create_token

PHONE = "4915112345678"
MENU = ["Book", "My appointments", "Talk to reception"]


class Phone:
    """The simulated patient's phone: act, then read what arrived since the last action."""

    def __init__(self, live, phone: str = PHONE):
        self.live, self.phone, self.seen, self.taps = live, phone, 0, 0
        self.history: list[dict] = []

    def act(self, **action) -> list[dict]:
        sent = self.live.patient(self.phone, **action)
        self.live.wait_for(lambda: self.answered(sent["message_id"]))
        return self.arrived()

    def answered(self, message_id: str) -> bool:
        """The patient's message is handled and every reply it queued has been sent."""
        rt = self.live.runtime
        with rt.db.Session() as s:
            handled = s.execute(
                select(InboxEvent.status).where(InboxEvent.dedupe_key == f"msg:{message_id}")
            ).scalar() in ("done", "ignored", "dead")
            unsent = s.execute(
                select(func.count()).where(OutboxMessage.status.in_(("pending", "sending")))
            ).scalar()
        return handled and not unsent

    def arrived(self) -> list[dict]:
        out = [m for m in self.live.outgoing(self.phone) if m["id"] > self.seen]
        if out:
            self.seen = out[-1]["id"]
        self.history.extend(out)
        return out

    def say(self, text: str) -> list[dict]:
        return self.act(text=text)

    @staticmethod
    def choices(message: dict) -> list[dict]:
        if message.get("list"):
            return [r for sec in message["list"]["sections"] for r in sec["rows"]]
        return message.get("buttons") or []

    def interactive(self, back: int = 1) -> dict:
        return [m for m in self.history if m.get("buttons") or m.get("list")][-back]

    def tap(self, which: str | int, message: dict | None = None) -> list[dict]:
        """Tap a button or pick a row (by title or 1-based position) on the newest prompt."""
        message = message or self.interactive()
        options = self.choices(message)
        if isinstance(which, int):
            choice = options[which - 1]
        else:
            choice = next(c for c in options if c["title"] == which)
        self.taps += 1
        kind = "list" if message.get("list") else "button"
        return self.act(**{kind: {"id": choice["id"], "message_id": message["message_id"]}})


def titles(message: dict) -> list[str]:
    return [c["title"] for c in Phone.choices(message)]


def first_free(runtime, practitioner_id=None):
    """The first free day and its slots, as the bot will offer them now."""
    profile, now = runtime.profile, runtime.clock()
    with runtime.db.Session() as s:
        day = availability.days_with_free_slots(
            s, profile, service_id="checkup", practitioner_id=practitioner_id, now=now, limit=1
        )[0]
        slots = availability.free_slots(
            s, profile, service_id="checkup", practitioner_id=practitioner_id, day=day, now=now
        )
    return day, slots


def appointments(runtime, phone=PHONE) -> list[Appointment]:
    with runtime.db.Session() as s:
        return list(
            s.execute(
                select(Appointment)
                .join(Patient, Appointment.patient_id == Patient.id)
                .where(Patient.phone == phone)
                .order_by(Appointment.id)
            ).scalars()
        )


def patient_row(runtime, phone=PHONE) -> Patient:
    with runtime.db.Session() as s:
        return s.execute(select(Patient).where(Patient.phone == phone)).scalar_one()


PARTS = ("Morning", "Afternoon", "Evening")


def to_times(phone: Phone, out: list[dict]) -> list[dict]:
    """Past a busy day's overview (a time from each hour, then the parts of the day): the
    first part's full list of times."""
    part = next((t for t in titles(out[-1]) if t in PARTS), None)
    return phone.tap(part) if part else out


def book_first_slot(phone: Phone, name: str | None = "Ana Lopez") -> list[dict]:
    """From the menu: Book, first day, (part of day), first time, (name, reason), Confirm."""
    phone.tap("Book")
    to_times(phone, phone.tap(2))
    out = phone.tap(1)
    if name:
        phone.say(name)
        out = phone.tap("Routine check")
    assert titles(out[-1]) == ["Confirm", "Change", "Cancel"]
    return phone.tap("Confirm")


def test_first_time_patient_books_from_hi_in_at_most_eight_taps_and_gets_an_ics(live, clock):
    # A fixed clock: on the real one the first free time can fall inside the minimum notice
    # while the patient taps, and the booking is (rightly) refused.
    rt = live.runtime
    phone = Phone(live)
    day, slots = first_free(rt)
    menu = phone.say("hi")
    assert titles(menu[-1]) == MENU
    days = phone.tap("Book")
    assert days[-1]["list"] and titles(days[-1])[0] == "Next available"
    assert render.day_label(rt.profile, "en", day) in titles(days[-1])[1]
    ask = phone.tap("Next available")
    assert "name" in ask[-1]["text"] and not ask[-1].get("buttons")
    phone.say("Ana Lopez")
    summary = phone.tap("Routine check")
    assert render.when(rt.profile, "en", slots[0].starts_at) in summary[-1]["text"]
    done = phone.tap("Confirm")

    assert phone.taps <= 8
    assert [m["kind"] for m in done] == ["text", "document"]
    assert render.when(rt.profile, "en", slots[0].starts_at) in done[0]["text"]
    [appt] = appointments(rt)
    assert appt.starts_at == slots[0].starts_at and appt.status == "booked"
    assert appt.source == "whatsapp"
    p = patient_row(rt)
    assert p.name == "Ana Lopez" and p.intake == {"reason": "routine"}

    doc = done[1]
    assert doc["document"]["mime_type"] == "text/calendar"
    data = base64.b64decode(doc["media"].split("base64,", 1)[1])
    cal = icalendar.Calendar.from_ical(data)
    [event] = [c for c in cal.walk("VEVENT")]
    start = event.decoded("dtstart")
    assert start.astimezone(UTC) == slots[0].starts_at
    assert event.decoded("dtend").astimezone(UTC) == appt.ends_at


def test_the_standard_day_then_time_path_takes_five_taps_plus_the_name_over_http(live, clock):
    rt = live.runtime  # a fixed clock, as in the test above
    phone = Phone(live)
    day, slots = first_free(rt)
    phone.say("hi")
    days = phone.tap("Book")
    assert titles(days[-1])[1].endswith(render.day_label(rt.profile, "en", day))
    times = phone.tap(2)  # the first day: its hourly overview, or all its times when few
    first = render.clock(rt.profile, slots[0].starts_at)
    assert titles(times[-1])[0] == first
    phone.tap(first)
    phone.say("Ana Lopez")
    summary = phone.tap("Routine check")
    assert render.when(rt.profile, "en", slots[0].starts_at) in summary[-1]["text"]
    phone.tap("Confirm")
    # Book, day, time, reason, Confirm: the part-of-day step is a row of the overview now.
    assert phone.taps == 5
    [appt] = appointments(rt)
    assert appt.starts_at == slots[0].starts_at


def test_typed_numbers_and_words_work_at_every_step_over_http(live):
    phone = Phone(live)
    assert titles(phone.say("hola")[-1]) == MENU
    assert phone.say("1")[-1]["list"]  # Book -> days
    out = phone.say("2")  # first day -> its parts of the day, or its times
    if out[-1].get("buttons"):
        assert phone.say("back")[-1]["list"]["label"] == "Choose a day"
        phone.say("2")
        out = phone.say("1")
    assert out[-1]["list"]
    assert "name" in phone.say("1")[-1]["text"]
    assert phone.say("Ana")[-1]["list"]  # reason question
    assert titles(phone.say("routine check")[-1]) == ["Confirm", "Change", "Cancel"]
    out = phone.say("confirm")
    assert [m["kind"] for m in out] == ["text", "document"]
    assert len(appointments(live.runtime)) == 1


def test_confirm_cancel_and_reschedule_from_my_appointments(live):
    rt = live.runtime
    phone = Phone(live)
    phone.say("hi")
    book_first_slot(phone)
    [appt] = appointments(rt)

    phone.say("menu")
    actions = phone.tap("My appointments")
    assert titles(actions[-1]) == ["Confirm attendance", "Reschedule", "Cancel appointment"]
    assert [b["id"] for b in actions[-1]["buttons"]] == [
        f"appt:{appt.id}:1:confirm",
        f"appt:{appt.id}:1:reschedule",
        f"appt:{appt.id}:1:cancel",
    ]
    out = phone.tap("Confirm attendance")
    assert "confirmed" in out[-1]["text"]
    assert appointments(rt)[0].status == "confirmed"

    phone.say("menu")
    phone.tap("My appointments")
    phone.tap("Reschedule")
    to_times(phone, phone.tap(3))  # another day
    summary = phone.tap(1)
    assert "Move your appointment" in summary[-1]["text"]
    moved = phone.tap("Confirm")
    assert [m["kind"] for m in moved] == ["text", "document"]
    [after] = appointments(rt)
    assert after.id == appt.id and after.version == 2 and after.starts_at != appt.starts_at

    phone.say("menu")
    phone.tap("My appointments")
    ask = phone.tap("Cancel appointment")
    assert titles(ask[-1]) == ["Yes, cancel it", "No, keep it"]
    assert appointments(rt)[0].status == "confirmed"  # asked once more first
    phone.tap("Yes, cancel it")
    assert appointments(rt)[0].status == "cancelled"


def test_a_stale_list_tap_is_explained_and_never_books(live):
    phone = Phone(live)
    phone.say("hi")
    phone.tap("Book")
    day_list = phone.interactive()
    to_times(phone, phone.tap(2))
    time_list = phone.interactive()
    phone.say("menu")
    out = phone.tap(1, time_list)  # the old time list, after the menu replaced it
    assert "earlier message" in out[0]["text"]
    assert titles(out[-1]) == MENU
    out = phone.tap(2, day_list)
    assert "earlier message" in out[0]["text"]
    assert appointments(live.runtime) == []
    assert patient_row(live.runtime).state == "menu"


def test_a_reminder_tap_on_a_moved_appointment_is_stale(live):
    rt = live.runtime
    phone = Phone(live)
    phone.say("hi")
    book_first_slot(phone)
    [appt] = appointments(rt)
    phone.say("menu")
    phone.tap("My appointments")
    old_actions = phone.interactive()
    phone.tap("Reschedule")
    phone.tap(2)
    phone.tap(1)
    phone.tap("Confirm")
    out = phone.tap("Cancel appointment", old_actions)  # version 1's button
    assert "has changed" in out[0]["text"]
    assert appointments(rt)[0].status == "booked"


@pytest.fixture
def api(live):
    with live.runtime.db.transaction() as s:
        token = create_token(s, "reception", live.runtime.clock())
    live.http.headers["Authorization"] = f"Bearer {token}"
    return live


def test_handoff_silences_the_bot_until_reception_resolves_it(api):
    live = api
    phone = Phone(live)
    phone.say("hi")
    out = phone.tap("Talk to reception")
    assert "reception team will reply" in out[-1]["text"]
    assert phone.say("hello? I need to change my time") == []

    url = f"{live.base_url}/api/v1/patients/+{PHONE}"
    r = live.http.post(f"{url}/messages", json={"text": "Hi Ana, Maria here. Which day?"})
    assert r.status_code == 202, r.text
    assert r.json()["patient"]["handoff"] is True
    live.wait_for(lambda: any("Maria" in m["text"] for m in live.outgoing(PHONE)))
    phone.arrived()
    assert phone.say("Friday please") == []

    r = live.http.post(f"{url}/handoff/resolve")
    assert r.status_code == 200 and r.json()["resolved"] is True
    live.wait_for(lambda: any("closed" in m["text"] for m in live.outgoing(PHONE)))
    phone.arrived()
    assert titles(phone.say("hi")[-1]) == MENU
    assert live.http.get(url).json()["handoff"] is False


def test_the_handoff_routes_are_in_the_openapi_document(api):
    paths = api.http.get(f"{api.base_url}/api/v1/openapi.json").json()["paths"]
    assert "post" in paths["/patients/{phone}/messages"]
    assert "post" in paths["/patients/{phone}/handoff/resolve"]


def test_staff_message_api_refuses_bad_input(api):
    live = api
    base = f"{live.base_url}/api/v1/patients"
    assert live.http.post(f"{base}/+4915100000000/messages", json={"text": "x"}).status_code == 404
    assert live.http.post(f"{base}/abc/messages", json={"text": "x"}).status_code == 400
    Phone(live).say("hi")
    assert live.http.post(f"{base}/{PHONE}/messages", json={"text": " "}).status_code == 400
    assert live.http.post(f"{base}/{PHONE}/messages", json=["x"]).status_code == 400
    r = live.http.post(f"{base}/{PHONE}/handoff/resolve")
    assert r.status_code == 200 and r.json()["resolved"] is False
    live.http.headers.pop("Authorization")
    assert live.http.post(f"{base}/{PHONE}/messages", json={"text": "x"}).status_code == 401


def test_off_script_messages_get_an_answer_and_escalate_over_http(live):
    phone = Phone(live)
    phone.say("hi")
    phone.tap("Book")
    first = phone.act(media="voice")
    assert "voice" in first[0]["text"] and first[-1]["list"]
    second = phone.act(location={})
    assert titles(second[-1]) == ["Main menu", "Talk to reception"]
    third = phone.act(media="sticker")
    assert titles(third[-1]) == ["Main menu", "Talk to reception"]
    assert patient_row(live.runtime).handoff_since is None  # only the patient chooses that
    phone.tap("Talk to reception")
    assert patient_row(live.runtime).handoff_since is not None


def test_a_one_message_request_books_in_two_taps_after_the_name_over_http(live):
    rt = live.runtime
    profile, now = rt.profile, rt.clock()
    tomorrow = availability.local_today(now, profile.timezone) + timedelta(days=1)
    with rt.db.Session() as s:
        day = availability.days_with_free_slots(
            s,
            profile,
            service_id="checkup",
            practitioner_id=None,
            now=now,
            limit=1,
            after=tomorrow - timedelta(days=1),
        )[0]
        slot = availability.free_slots(
            s, profile, service_id="checkup", practitioner_id=None, day=day, now=now
        )[-1]  # the last time of the day: never on the first page of a list
    when = "tomorrow" if day == tomorrow else f"{day.day}/{day.month}"
    at = render.clock(profile, slot.starts_at)
    phone = Phone(live)
    ask = phone.say(f"General check-up {when} at {at}")
    assert "name" in ask[-1]["text"]
    reason = phone.say("Ana Lopez")
    assert reason[-1]["list"]
    summary = phone.tap("Routine check")
    assert render.when(profile, "en", slot.starts_at) in summary[-1]["text"]
    assert appointments(rt) == []  # nothing is booked before the summary's Confirm
    done = phone.tap("Confirm")
    assert phone.taps == 2 and [m["kind"] for m in done] == ["text", "document"]
    [appt] = appointments(rt)
    assert appt.starts_at == slot.starts_at
