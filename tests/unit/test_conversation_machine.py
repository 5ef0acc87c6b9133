"""The conversation machine without HTTP: its table, tap ids, typed answers, edge cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clinic_bot.adapters.whapi import bodies
from clinic_bot.domain.profile import parse_profile
from clinic_bot.reactions.conversation import ids, steps, waitlist, words
from clinic_bot.reactions.conversation.table import (
    RESTING,
    STATES,
    TRANSITIONS,
    describe,
    next_state,
)
from tests.booking_support import EXAMPLE, make_profile
from tests.conversations.chat import Chat

START = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
LONG_NAME = "Dr. Ortiz-Fernández de la Vega y Montes"
LONG_SERVICE = "Comprehensive cardiovascular assessment with ECG"


@pytest.fixture
def chat(runtime, clock):
    clock.set(START)
    return Chat(runtime)


# ---------------------------------------------------------------------------- the table


def test_every_transition_leads_to_a_known_state():
    for state, row in TRANSITIONS.items():
        for event, target in row.items():
            assert target in STATES, f"{state} --{event}--> {target}"


def test_every_state_that_asks_has_code_to_enter_and_to_answer_it():
    for state in STATES:
        if state in RESTING:
            continue
        assert state in steps.ENTER, state
        if state != "handoff":
            answers = {**steps.CHOOSE, **waitlist.CHOOSE, **steps.ANSWER_TEXT}
            assert state in answers, state


def test_every_target_of_the_table_can_be_entered_or_rests():
    targets = {t for row in TRANSITIONS.values() for t in row.values()}
    for target in targets:
        assert target in steps.ENTER or target in RESTING, target


def test_the_table_prints_one_line_per_transition():
    text = describe()
    assert "menu            --book--> service" in text
    assert "summary         --taken--> time" in text
    count = sum(len(row) for row in TRANSITIONS.values())
    assert len([line for line in text.splitlines() if "(any prompt)" not in line]) == count


def test_booking_follows_the_path_of_the_issue():
    path, state = [], "menu"
    events = ("book", "skip", "skip", "picked", "skip", "picked", "skip", "skip", "confirm")
    for event in events:
        state = next_state(state, event)
        path.append(state)
    assert path == [
        "service",
        "practitioner",
        "day",
        "part",
        "time",
        "name",
        "intake",
        "summary",
        "booked",
    ]


def test_an_unknown_transition_is_an_error_not_a_guess():
    with pytest.raises(KeyError):
        next_state("day", "confirm")


# ---------------------------------------------------------------------------- tap ids


def test_tap_ids_round_trip():
    assert ids.parse(ids.choice_id(7, "2026-12-01")) == ids.ChoiceTap(7, "2026-12-01")
    assert ids.parse(ids.choice_id(3, "1795515300@dr-lee")) == ids.ChoiceTap(3, "1795515300@dr-lee")
    assert ids.parse(ids.appt_id(12, 3, "cancel")) == ids.ApptTap(12, 3, "cancel")
    assert ids.parse(ids.command_id("reception")) == ids.CommandTap("reception")
    assert ids.parse("menu:book") == ids.CommandTap("book")


@pytest.mark.parametrize(
    "raw",
    [
        "",
        None,
        "c::x",
        "c:1:",
        "c:x:1",
        "appt:1:1:delete",
        "appt:a:1:cancel",
        "cmd:drop",
        "appt:1:1:cancel:extra",
        "c:1:" + "x" * 300,
        "ListV3:c:1:x",
        "menu:",
    ],
)
def test_tap_ids_we_never_send_are_refused(raw):
    assert ids.parse(raw) is None


@given(st.text(max_size=300))
def test_any_tap_id_parses_or_is_refused_without_error(raw):
    result = ids.parse(raw)
    assert result is None or isinstance(result, ids.ChoiceTap | ids.ApptTap | ids.CommandTap)


def test_an_unknown_appointment_action_cannot_be_built():
    with pytest.raises(ValueError):
        ids.appt_id(1, 1, "delete")


# ---------------------------------------------------------------------------- typed answers


OPTIONS = [["routine", "Routine check"], ["symptoms", "Síntomas nuevos"], ["t", "09:15", "9:15"]]


@pytest.mark.parametrize(
    "typed, value",
    [
        ("1", "routine"),
        ("2.", "symptoms"),
        ("#3", "t"),
        ("no. 1", "routine"),
        ("ROUTINE CHECK", "routine"),
        ("sintomas nuevos", "symptoms"),
        ("Síntomas  Nuevos!", "symptoms"),
        ("9:15", "t"),
        ("09:15", "t"),
        ("4", None),
        ("0", None),
        ("routine", None),
        ("", None),
    ],
)
def test_typed_answers_match_by_number_or_title_ignoring_case_and_accents(typed, value):
    assert words.match_option(typed, OPTIONS) == value


@pytest.mark.parametrize(
    "typed, word",
    [
        ("MENU", "menu"),
        ("menú", "menu"),
        ("Back", "back"),
        ("atrás", "back"),
        ("cancelar", "cancel"),
        ("help", "help"),
        ("Ayuda?", "help"),
        ("idioma", "language"),
        ("Recepción", "reception"),
        ("hola", "greeting"),
        ("??", None),
        ("book me in", None),
    ],
)
def test_global_words_are_understood_in_english_and_spanish(typed, word):
    assert words.global_word(typed) == word


# ---------------------------------------------------------------------------- behaviour


def test_a_single_service_and_practitioner_are_skipped_not_asked(chat):
    chat.text("hi")
    [days] = chat.choose("Book")
    assert days.kind == "list" and chat.patient().state == "day"


def test_with_two_practitioners_any_is_offered_first_and_slots_name_who(runtime, clock):
    data = dict(EXAMPLE)
    data["practitioners"] = [
        {"id": "dr-lee", "name": "Dr. Lee", "hours": {"tue": ["09:00-17:00"]}},
        {
            "id": "dr-ortiz",
            "name": LONG_NAME,
            "hours": {"tue": ["09:00-17:00"]},
        },
    ]
    runtime.profile = parse_profile(data)
    clock.set(START)
    chat = Chat(runtime)
    chat.text("hi")
    [who] = chat.choose("Book")
    assert who.titles[0] == "Anyone available" and len(who.titles) == 3
    assert all(len(t) <= bodies.ROW_TITLE for t in who.titles)
    assert who.titles[2].endswith("…")
    chat.choose("Anyone available")
    chat.choose(2)
    [times] = chat.choose("Morning")
    assert times.body["action"]["list"]["sections"][0]["rows"][0]["description"] == "Dr. Lee"


def test_a_long_service_name_is_shortened_to_fit_a_list_row(runtime, clock):
    runtime.profile = make_profile(
        services=[
            {
                "id": "a",
                "name": LONG_SERVICE,
                "duration": "30m",
            },
            {"id": "checkup", "name": "General check-up", "duration": "20m"},
        ],
        practitioners=[{"id": "dr-lee", "name": "Dr. Lee", "hours": {"tue": ["09:00-17:00"]}}],
    )
    clock.set(START)
    chat = Chat(runtime)
    chat.text("hi")
    [services] = chat.choose("Book")
    assert services.titles[0] == "Comprehensive…"
    row = services.body["action"]["list"]["sections"][0]["rows"][0]
    assert row["description"] == f"{LONG_SERVICE} · 30 min"  # the full name where it fits
    assert services.titles[1] == "General check-up"


def test_a_prompt_tap_is_only_valid_while_its_prompt_is_current(chat):
    chat.text("hi")
    chat.choose("Book")
    days = chat.last_interactive()
    chat.choose(2)
    before = chat.patient().state_data.get("slot")
    out = chat.choose(3, days)
    assert "earlier message" in out[0].text
    assert chat.patient().state == "part" and before is None


def test_a_value_not_offered_on_the_current_prompt_is_refused(chat):
    chat.text("hi")
    chat.choose("Book")
    seq = chat.patient().prompt_seq
    out = chat.pick_id(f"c:{seq}:2026-12-25")  # a closure day, never offered
    assert "earlier message" in out[0].text
    assert chat.patient().state_data.get("day") is None


def test_a_repeated_prompt_keeps_its_ids_so_the_first_copy_still_works(chat):
    chat.text("hi")
    [days] = chat.choose("Book")
    repeat = chat.media("voice")[-1]
    assert repeat.choices == days.choices
    chat.choose(2, days)
    assert chat.patient().state == "part"


def test_a_miss_lists_the_numbered_options_and_the_second_offers_reception(chat):
    chat.text("hi")
    first = chat.text("??")
    second = chat.text("??")
    third = chat.text("??")
    assert "1. Book" in first[0].text and "4. Language / Idioma" in first[0].text
    assert first[0].text != second[0].text
    assert second[-1].titles == third[-1].titles == ["Main menu", "Talk to reception"]
    # Only the patient starts a handoff: misses never hand the chat over by themselves.
    assert chat.patient().handoff_since is None
    assert chat.text("4")[-1].titles == ["English", "Español"]


def test_an_understood_answer_resets_the_miss_count(chat):
    chat.text("hi")
    chat.choose("Book")
    chat.text("??")
    chat.choose(2)
    out = chat.text("??")
    assert out[-1].kind == "list" and chat.patient().state_data["misses"] == 1


def test_idle_reset_starts_at_the_menu_but_a_reminder_tap_still_works(runtime, clock):
    from tests.conversations.script import Runner

    script = {"name": "idle", "setup": {"name": "Ana", "appointments": [2]}, "steps": []}
    runner = Runner(runtime, clock, script)
    runner.run()
    chat = runner.chat
    chat.text("hi")
    chat.choose("Book")
    clock.advance(hours=3)
    appt = runner.appointments()[0]
    out = chat.tap_id(f"appt:{appt.id}:{appt.version}:confirm")
    assert "confirmed" in out[0].text
    assert runner.appointments()[0].status == "confirmed"


def test_another_patients_appointment_cannot_be_touched(runtime, clock):
    from tests.conversations.script import Runner

    owner = Runner(runtime, clock, {"name": "o", "setup": {"appointments": [2]}, "steps": []})
    owner.run()
    appt = owner.appointments()[0]
    stranger = Chat(runtime, phone="4915100000001")
    out = stranger.tap_id(f"appt:{appt.id}:{appt.version}:cancel")
    assert "no longer active" in out[0].text
    out = stranger.tap_id(f"appt:{appt.id}:{appt.version}:confirm")
    assert owner.appointments()[0].status == "booked"


def test_name_and_intake_are_stored_on_the_patient_and_not_asked_again(chat):
    chat.text("hi")
    chat.choose("Book")
    chat.choose("Next available")
    chat.text("  Ana   Lopez ")
    chat.choose("New symptoms")
    chat.choose("Cancel")
    p = chat.patient()
    assert p.name == "Ana Lopez" and p.intake == {"reason": "symptoms"}
    chat.choose("Book")
    [summary] = chat.choose("Next available")
    assert summary.titles == ["Confirm", "Change", "Cancel"]


def test_every_text_key_the_conversation_uses_exists_in_english_and_spanish(runtime):
    import re
    from pathlib import Path

    import clinic_bot.reactions.conversation as pkg

    source = "\n".join(p.read_text() for p in Path(pkg.__file__).parent.glob("*.py"))
    keys = set(re.findall(r'"(conv_[a-z_]+)"', source)) - {"conv_offscript_", "conv_appt_"}
    keys |= {f"conv_offscript_{k}" for k in ("text", "voice", "media", "location", "other")}
    keys |= {f"conv_appt_{a}" for a in ("confirm", "reschedule", "cancel")}
    for lang in ("en", "es"):
        table = EXAMPLE["texts"][lang]
        missing = sorted(k for k in keys if k not in table)
        assert not missing, (lang, missing)


def test_a_book_again_button_from_another_area_starts_booking_at_once(chat):
    from clinic_bot.reactions.conversation import MENU_BOOK

    [days] = chat.tap_id(MENU_BOOK, "Book again")
    assert days.kind == "list" and chat.patient().state == "day"
    assert chat.text("back")[-1].titles == ["Book", "My appointments", "Talk to reception"]


def test_two_patients_confirming_the_same_slot_at_once_book_it_once(runtime, clock):
    import threading

    clock.set(START)
    chats = [Chat(runtime, phone=f"49151000000{i}") for i in (1, 2)]
    for c in chats:
        c.text("hi")
        c.choose("Book")
        c.choose(2)
        c.choose("Morning")
        c.choose("11:00")
        c.text("Ana")
        c.choose("Routine check")
    assert [c.patient().state for c in chats] == ["summary", "summary"]
    barrier = threading.Barrier(2)
    replies: dict[int, list] = {}

    def confirm(i):
        barrier.wait()
        replies[i] = chats[i].choose("Confirm")

    threads = [threading.Thread(target=confirm, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    states = sorted(c.patient().state for c in chats)
    assert states == ["booked", "time"]
    loser = next(i for i in (0, 1) if chats[i].patient().state == "time")
    assert "someone has just taken" in replies[loser][0].text
    assert "11:00" not in replies[loser][-1].titles  # offered the next free ones


def test_a_language_the_profile_has_no_texts_for_is_not_switched_to(runtime, clock):
    data = {k: v for k, v in EXAMPLE.items() if k != "texts"}
    data["texts"] = {"en": {}}
    profile = parse_profile(data)
    profile.texts.pop("es", None)  # a clinic that ships English only
    runtime.profile = profile
    clock.set(START)
    chat = Chat(runtime)
    chat.text("hi")
    out = chat.text("español")
    assert chat.patient().language is None
    assert "did not understand" in out[0].text


def _ics(message):
    import base64

    import icalendar

    data = base64.b64decode(message.body["media"].split("base64,", 1)[1])
    cal = icalendar.Calendar.from_ical(data)
    return cal, next(iter(cal.walk("VEVENT")))


def test_the_invitation_names_clinic_and_practitioner_and_the_cancel_removes_it(chat):
    chat.text("hi")
    chat.choose("Book")
    chat.choose("Next available")
    chat.text("Ana Lopez")
    chat.choose("Routine check")
    booked = chat.choose("Confirm")
    cal, event = _ics(next(m for m in booked if m.kind == "document"))
    assert str(cal["method"]) == "REQUEST"
    assert event["organizer"].params["cn"] == "Sunrise Family Clinic"
    assert event["attendee"].params["cn"] == "Dr. Lee"
    [alarm] = event.walk("VALARM")
    assert alarm.decoded("trigger") == -timedelta(hours=24)  # the first reminder offset
    chat.text("menu")
    chat.choose("My appointments")
    chat.choose("Cancel appointment")
    cancelled = chat.choose("Yes, cancel it")
    cal2, event2 = _ics(next(m for m in cancelled if m.kind == "document"))
    assert str(cal2["method"]) == "CANCEL" and str(event2["status"]) == "CANCELLED"
    assert str(event2["uid"]) == str(event["uid"])
    assert int(event2["sequence"]) > int(event["sequence"])


# ---------------------------------------------------------------------------- a busy day


def _rows(message) -> list[dict]:
    return message.body["action"]["list"]["sections"][0]["rows"]


def test_a_busy_day_shows_a_time_from_each_hour_and_each_part_with_its_span(chat):
    chat.text("hi")
    chat.choose("Book")
    [overview] = chat.choose(3)  # Wednesday 25 November: 09:00-12:00 and 13:00-17:00
    assert overview.titles == [
        "09:00",
        "10:00",
        "11:00",
        "13:00",
        "14:00",
        "15:00",
        "16:00",
        "Morning",
        "Afternoon",
    ]
    spans = {r["title"]: r.get("description") for r in _rows(overview)}
    assert spans["Morning"] == "All free times 09:00–11:30"
    assert spans["Afternoon"] == "All free times 13:00–16:30"
    out = chat.choose("10:00")  # one tap from the day to the time
    assert chat.patient().state == "name" and "full name" in out[-1].text
    assert chat.patient().state_data["slot"]["at"] == "2026-11-25T09:00:00+00:00"


def test_a_long_day_spreads_the_hourly_times_evenly_and_fits_one_list(runtime, clock):
    runtime.profile = make_profile(
        practitioners=[{"id": "dr-lee", "name": "Dr. Lee", "hours": {"wed": ["07:00-21:00"]}}],
    )
    clock.set(START)
    chat = Chat(runtime)
    chat.text("hi")
    chat.choose("Book")
    [overview] = chat.choose(2)  # the first free day, Wednesday 07:00-21:00
    assert len(overview.titles) == 10  # a WhatsApp list's limit
    assert overview.titles[-3:] == ["Morning", "Afternoon", "Evening"]
    assert overview.titles[0] == "07:00" and overview.titles[6] == "20:00"
    typed = chat.text("evening")
    assert chat.patient().state == "time" and typed[-1].titles[0] == "17:00"
