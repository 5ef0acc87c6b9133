"""The parsers behind typed messages: dates and times, intents, language (property tests)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinic_bot.domain.understanding import dates, intents, language
from clinic_bot.reactions.conversation import understand, words
from tests.conversations.chat import Chat

EN_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
ES_DAYS = ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"]
EN_MONTHS = "January February March April May June July August September October November December"
ES_MONTHS = (
    "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre"
)
SUFFIX = {
    "en": ["", " at 3pm", " 10:30", " morning", " please"],
    "es": ["", " a las 10", " 15h", " por la tarde"],
}


def _nearest_dom(today: date, target: date) -> bool:
    """True when `target` is the first date on/after today with its day of the month."""
    d = today
    while d < target:
        if d.day == target.day:
            return False
        d += timedelta(days=1)
    return True


def forms(lang: str, today: date, target: date) -> list[str]:
    """Every way the parser must understand `target`, in `lang`."""
    ahead = (target - today).days
    d, m = target.day, target.month
    out = [f"{d}/{m}"]
    if lang == "en":
        month = EN_MONTHS.split()[m - 1]
        out += [
            f"{d} {month}",
            f"{d} {month[:3]}",
            f"{month} {d}",
            f"{month} {d}th"[: len(month) + 1 + len(str(d))] + "th",
        ]
        if ahead < 7:
            out += [EN_DAYS[target.weekday()], EN_DAYS[target.weekday()].lower()[:3]]
        if ahead == 0:
            out.append("today")
        if ahead == 1:
            out.append("tomorrow")
        if _nearest_dom(today, target):
            out.append(f"the {d}th" if d not in (1, 2, 3, 21, 22, 23, 31) else f"on the {d}")
    else:
        month = ES_MONTHS.split()[m - 1]
        out += [f"{d} de {month}", f"el {d} de {month}", f"el día {d} de {month}"]
        if ahead < 7:
            out += [ES_DAYS[target.weekday()], f"el {ES_DAYS[target.weekday()]}"]
        if ahead == 0:
            out.append("hoy")
        if ahead == 1:
            out.append("mañana")
        if ahead == 2:
            out.append("pasado mañana")
        if _nearest_dom(today, target):
            out.append(f"el día {d}")
    return out


@settings(max_examples=150, deadline=None)
@given(
    today=st.dates(min_value=date(2026, 1, 1), max_value=date(2030, 12, 31)),
    ahead=st.integers(min_value=0, max_value=59),
    lang=st.sampled_from(["en", "es"]),
    pick=st.integers(min_value=0, max_value=50),
    suffix=st.integers(min_value=0, max_value=10),
)
def test_any_typed_date_in_the_next_60_days_lands_on_that_day(today, ahead, lang, pick, suffix):
    target = today + timedelta(days=ahead)
    options = forms(lang, today, target)
    text = options[pick % len(options)] + SUFFIX[lang][suffix % len(SUFFIX[lang])]
    got = dates.parse_when(text, lang, today, date_order="DMY")
    assert got.day == target, text


def test_the_day_order_comes_from_the_clinic_locale():
    today = date(2026, 11, 24)
    assert dates.parse_when("4/12", "en", today, date_order="DMY").day == date(2026, 12, 4)
    assert dates.parse_when("4/12", "en", today, date_order="MDY").day == date(2027, 4, 12)
    assert dates.date_order_for("US") == "MDY" and dates.date_order_for("DE") == "DMY"


@pytest.mark.parametrize(
    ("text", "lang", "want"),
    [
        ("3pm", "en", time(15)),
        ("at 3", "en", time(15)),
        ("at 9", "en", time(9)),
        ("15h", "en", time(15)),
        ("15:30", "en", time(15, 30)),
        ("15.30", "en", time(15, 30)),
        ("10:30am", "en", time(10, 30)),
        ("half past ten", "en", time(10, 30)),
        ("quarter to four", "en", time(15, 45)),
        ("a las 4 de la tarde", "es", time(16)),
        ("a las diez y media", "es", time(10, 30)),
        ("a las 3", "es", time(15)),
        ("15h30", "es", time(15, 30)),
    ],
)
def test_times_of_day_are_read_as_a_clinic_would(text, lang, want):
    assert dates.parse_when(text, lang, date(2026, 11, 24)).time == want


@pytest.mark.parametrize(
    ("text", "lang", "first", "other"),
    [
        ("at 8", "en", time(8), time(20)),
        ("at 3", "en", time(15), time(3)),
        ("tomorrow at 10", "en", time(10), time(22)),
        ("a las 8", "es", time(8), time(20)),
    ],
)
def test_an_hour_without_am_or_pm_keeps_its_other_reading(text, lang, first, other):
    got = dates.parse_when(text, lang, date(2026, 11, 24))
    assert got.time == first and [o.time for o in got.others] == [other]


@pytest.mark.parametrize(
    "text", ["3pm", "15:30", "8 in the morning", "at 8 tonight", "a las 4 de la tarde"]
)
def test_a_time_that_settles_its_half_of_the_day_has_no_other_reading(text):
    lang = "es" if text.startswith("a las") else "en"
    assert dates.parse_when(text, lang, date(2026, 11, 24)).others == ()


@pytest.mark.parametrize(
    ("text", "lang", "first", "other"),
    [
        ("tuesday", "en", date(2026, 11, 24), date(2026, 12, 1)),  # typed on a Tuesday
        ("next thursday", "en", date(2026, 11, 26), date(2026, 12, 3)),
        ("el martes", "es", date(2026, 11, 24), date(2026, 12, 1)),
        ("el próximo jueves", "es", date(2026, 11, 26), date(2026, 12, 3)),
        ("this tuesday", "en", date(2026, 11, 24), None),
        ("thursday", "en", date(2026, 11, 26), None),
        ("este martes", "es", date(2026, 11, 24), None),
    ],
)
def test_a_weekday_that_may_be_this_or_next_week_keeps_both(text, lang, first, other):
    got = dates.parse_when(text, lang, date(2026, 11, 24))
    assert got.day == first
    assert [o.day for o in got.others] == ([other] if other else [])


def test_a_numeric_date_has_a_second_reading_only_while_the_day_order_is_unsettled():
    today = date(2026, 11, 24)
    unsettled = dates.parse_when("1/12", "en", today, date_order="DMY", other_order="MDY")
    assert unsettled.day == date(2026, 12, 1)
    assert [o.day for o in unsettled.others] == [date(2027, 1, 12)]
    assert dates.parse_when("1/12", "en", today, date_order="DMY").others == ()
    same_both_ways = dates.parse_when("12/12", "en", today, other_order="MDY")
    assert same_both_ways.others == ()
    assert dates.parse_when("13/12", "en", today, other_order="MDY").others == ()


def test_the_profile_or_agreeing_phones_settle_the_day_order():
    assert dates.date_orders("MDY", "DE", "US") == ("MDY", None)
    assert dates.date_orders(None, "DE", "ES") == ("DMY", None)
    assert dates.date_orders(None, "DE", None) == ("DMY", None)
    assert dates.date_orders(None, None, "US") == ("MDY", None)
    assert dates.date_orders(None, "DE", "US") == ("DMY", "MDY")
    assert dates.date_orders(None, None, None) == ("DMY", "MDY")


@pytest.mark.parametrize(
    ("text", "lang", "part"),
    [
        ("tomorrow morning", "en", "morning"),
        ("friday afternoon", "en", "afternoon"),
        ("in the evening", "en", "evening"),
        ("mañana por la mañana", "es", "morning"),
        ("el lunes por la tarde", "es", "afternoon"),
    ],
)
def test_parts_of_the_day(text, lang, part):
    assert dates.parse_when(text, lang, date(2026, 11, 24)).part == part


def test_text_that_names_no_time_is_empty_and_long_text_is_not_parsed():
    today = date(2026, 11, 24)
    assert not dates.parse_when("I have a question about my bill", "en", today)
    assert not dates.parse_when("tomorrow " + "x" * 200, "en", today)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("cancel my appointment", "cancel"),
        ("pls cancle my apointment", "cancel"),
        ("can I change my appointment?", "reschedule"),
        ("when is my appointment", "appointments"),
        ("I'm running late", "late"),
        ("thank you!!", "thanks"),
        ("👍", "thanks"),
        ("wrong number", "wrong_number"),
        ("how much does it cost", "faq:price"),
        ("where are you", "faq:address"),
        ("what are your opening hours", "faq:hours"),
        ("I need an appointment", "book"),
        ("qwerty", None),
    ],
)
def test_intents_from_the_profile_phrases(runtime, text, want):
    vocab = understand.vocabulary(runtime.profile, "en")
    assert intents.match(text, vocab) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("quiero cancelar mi cita", "cancel"),
        ("¿Cuánto cuesta?", "faq:price"),
        ("¿dónde están?", "faq:address"),
        ("muchas gracias", "thanks"),
        ("llego tarde", "late"),
        ("número equivocado", "wrong_number"),
    ],
)
def test_spanish_intents_ignore_accents(runtime, text, want):
    assert intents.match(text, understand.vocabulary(runtime.profile, "es")) == want


@pytest.mark.parametrize(
    ("text", "phone", "want"),
    [
        ("Hola, quiero una cita para mañana", "4915112345678", "es"),
        ("Hello, I would like an appointment", "34612345678", "en"),
        ("hola", "34612345678", "es"),
        ("ok", "34612345678", "es"),
        ("ok", "4915112345678", None),
        ("Bonjour, je voudrais un rendez-vous", "4915112345678", None),
    ],
)
def test_language_detection_is_restricted_to_the_clinic_languages(text, phone, want):
    assert language.detect(text, ["en", "es"], phone) == want


# ---------------------------------------------------------------------------- never books unasked

TYPED = st.sampled_from(
    [
        "hi",
        "tomorrow at 10",
        "thursday",
        "4/12 15:30",
        "General check-up tomorrow at 3pm",
        "yes",
        "ok",
        "yes I'll be there",
        "thanks",
        "book",
        "next week",
        "1",
        "2",
        "Ana Test",
        "morning",
        "sí",
        "vale",
        "el jueves a las 10",
        "👍",
        "sure, book it",
        "tuesday",
        "next thursday at 8",
        "el martes a las 8",
    ]
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    texts=st.lists(TYPED, min_size=1, max_size=8), n=st.integers(min_value=10**8, max_value=10**9)
)
def test_no_free_text_books_without_the_summarys_confirm(runtime, clock, texts, n):
    clock.set(datetime(2026, 11, 24, 8, 0, tzinfo=UTC))
    chat = Chat(runtime, phone=f"4915{n}")
    from clinic_bot.domain import booking

    def booked() -> int:
        with runtime.db.Session() as s:
            p = chat.patient_or_none(s)
            return len(booking.upcoming_for(s, p, now=clock())) if p else 0

    for text in texts:
        before = chat.patient_state()
        count = booked()
        chat.text(text)
        if booked() > count:
            state, opts = before
            assert state == "summary" and words.match_option(text, opts) == "confirm", (texts, text)


def test_the_conversation_keys_are_declared_in_the_profile_schema():
    import copy

    from clinic_bot.domain.profile import ProfileError, parse_profile
    from tests.booking_support import EXAMPLE

    data = copy.deepcopy(EXAMPLE)
    profile = parse_profile(data)
    assert profile.intake_per_visit is False and profile.waitlist_batch == 1
    assert profile.waitlist_offer_ttl == timedelta(hours=1) and profile.date_order is None
    assert understand.date_order(profile) == "DMY"  # a Berlin phone writes the day first
    data["booking"].update(date_order="MDY", waitlist_batch=2, waitlist_offer_ttl="30m")
    profile = parse_profile(data)
    assert understand.date_order(profile) == "MDY" and profile.waitlist_batch == 2
    data["booking"]["date_order"] = "DDMM"
    with pytest.raises(ProfileError, match="date_order"):
        parse_profile(data)
