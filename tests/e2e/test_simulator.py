"""The patient simulator page in a real Chromium, against the live app and its worker."""

from __future__ import annotations

import base64

from playwright.sync_api import expect

# A real Chromium: Debian's, never a downloaded browser build (this file holds its fixtures, as
# a second conftest.py would shadow the suite's `conftest` module).


FIRST = "4915100000001"  # the page's default patient, +49 151 00000001
SECOND = "+49 151 00000002"


def open_simulator(live, page):
    page.goto(f"{live.base_url}/sandbox/")
    expect(page.get_by_role("heading", name="Patient simulator")).to_be_visible()
    return page.get_by_role("list", name="Conversation")


def say(page, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")


def clinic_sends(live, kind: str, body: dict) -> dict:
    """Send as the clinic would, straight through the sandbox gateway (the fake Whapi)."""
    r = live.http.post(
        f"{live.base_url}/sandbox/gateway/messages/{kind}",
        json=body,
        headers={"Authorization": "Bearer sandbox"},
    )
    assert r.status_code == 200, r.text
    return r.json()["message"]


def test_hi_shows_the_menu_and_a_tapped_button_gets_an_answer(live, page):
    chat = open_simulator(live, page)
    say(page, "hi")

    expect(chat.locator(".from-patient").filter(has_text="hi")).to_have_count(1)
    for title in ("Book", "My appointments", "Talk to reception"):
        expect(chat.get_by_role("button", name=title)).to_have_count(1)
    clinic_messages = chat.locator(".from-clinic")
    expect(clinic_messages).to_have_count(1)

    chat.get_by_role("button", name="Book").click()

    expect(chat.locator(".from-patient").filter(has_text="Book")).to_have_count(1)
    expect(clinic_messages).to_have_count(2)
    tapped = [m for m in live.transcript(FIRST) if m["direction"] == "in"][-1]
    assert tapped["kind"] == "reply" and tapped["text"] == "Book"


def test_switching_patient_shows_each_patient_their_own_chat(live, page):
    chat = open_simulator(live, page)
    say(page, "hello from the first")
    expect(chat.get_by_role("button", name="Book")).to_have_count(1)

    page.get_by_label("Add a patient (phone number)").fill(SECOND)
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.get_by_text("chatting as +4915100000002")).to_be_visible()
    expect(chat.locator(".msg")).to_have_count(0)
    say(page, "hello from the second")
    expect(chat.get_by_role("button", name="Book")).to_have_count(1)
    expect(chat.get_by_text("hello from the first")).to_have_count(0)

    page.get_by_role("button", name="Chat as +4915100000001").click()
    expect(chat.get_by_text("hello from the first")).to_have_count(1)
    expect(chat.get_by_text("hello from the second")).to_have_count(0)
    assert [m["text"] for m in live.transcript(SECOND) if m["direction"] == "in"] == [
        "hello from the second"
    ]


def test_a_list_opens_its_rows_and_picking_one_answers_the_clinic(live, page):
    chat = open_simulator(live, page)
    clinic_sends(
        live,
        "interactive",
        {
            "to": f"{FIRST}@s.whatsapp.net",
            "type": "list",
            "body": {"text": "Which time suits you?"},
            "action": {
                "list": {
                    "label": "Pick a time",
                    "sections": [
                        {
                            "title": "Monday",
                            "rows": [
                                {"id": "slot:1", "title": "09:00", "description": "Dr. Lee"},
                                {"id": "slot:2", "title": "09:30", "description": "Dr. Lee"},
                            ],
                        }
                    ],
                }
            },
        },
    )
    chat.get_by_role("button", name="Pick a time").click()
    dialog = page.get_by_role("dialog", name="Pick a time")
    expect(dialog.get_by_text("Monday")).to_be_visible()
    dialog.get_by_role("button", name="09:30").click()

    expect(dialog).to_be_hidden()
    expect(chat.locator(".from-patient").filter(has_text="09:30")).to_have_count(1)
    reply = [m for m in live.transcript(FIRST) if m["direction"] == "in"][-1]
    assert reply["kind"] == "reply" and reply["text"] == "09:30"


def test_a_document_shows_as_a_file_chip_and_ticks_reach_read(live, page):
    chat = open_simulator(live, page)
    ics = base64.b64encode(b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n").decode()
    clinic_sends(
        live,
        "document",
        {
            "to": f"{FIRST}@s.whatsapp.net",
            "media": f"data:text/calendar;name=visit.ics;base64,{ics}",
            "filename": "visit.ics",
            "mime_type": "text/calendar",
        },
    )
    chip = chat.locator(".file-chip")
    expect(chip).to_contain_text("visit.ics")
    expect(chat.locator("a.file-link")).to_have_attribute("download", "visit.ics")
    expect(chat.get_by_label("status: read")).to_have_count(1)


def test_message_text_is_shown_as_text_never_as_markup(live, page):
    chat = open_simulator(live, page)
    hostile = "<img src=x onerror=\"document.title='owned'\"><b>bold?</b>"
    say(page, hostile)
    expect(chat.locator(".from-patient .text")).to_have_text(hostile)
    expect(chat.locator(".from-patient img")).to_have_count(0)
    assert page.title() != "owned"


def test_voice_sticker_location_and_missed_call_buttons_reach_the_clinic(live, page):
    chat = open_simulator(live, page)
    page.get_by_role("button", name="Send a voice note").click()
    expect(chat.locator(".from-patient").get_by_text("Voice note")).to_have_count(1)
    page.get_by_role("button", name="Send a sticker").click()
    expect(chat.locator(".from-patient").get_by_text("Sticker")).to_have_count(1)
    page.get_by_role("button", name="Send a location").click()
    expect(chat.locator(".from-patient").get_by_text("Location")).to_have_count(1)
    page.get_by_role("button", name="Call the clinic and miss it").click()
    expect(chat.get_by_role("note")).to_contain_text("nobody answered")
    kinds = [m["kind"] for m in live.transcript(FIRST) if m["direction"] == "in"]
    assert kinds == ["voice", "sticker", "location"]
