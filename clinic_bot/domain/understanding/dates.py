"""Dates and times in free text ("thursday at 3pm", "mañana por la tarde", "4/12 15h30").

Everything is relative to the clinic's today (passed in, from the clinic's clock and zone,
never the machine's) and read in the patient's language. The common relative words, week
days, times and parts of day are read by the small rules below (they are short and exact);
calendar dates with a month ("4 Dec", "4 de diciembre", "4/12") go to `dateparser`, which
knows the month names of many languages and the clinic's day order (DMY or MDY).
Only short messages are parsed: a long message is no request for a time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from datetime import time as dtime
from functools import lru_cache

from clinic_bot.domain.understanding.text import for_dates

MAX_LEN = 120  # characters; longer messages are not parsed (dateparser is slow on long text)
PARTS = ("morning", "afternoon", "evening")


@dataclass(frozen=True)
class When:
    """What a message asked for; any field may be missing."""

    day: date | None = None
    time: dtime | None = None
    part: str | None = None  # morning | afternoon | evening
    week: bool = False  # "next week": `day` is that week's Monday, any day of it will do
    # Other readings of an ambiguous message ("4/5", "at 8", "next thursday"), each differing
    # from this one in its day or its time only; the caller decides which are possible.
    others: tuple[When, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.day or self.time or self.part)


# Input vocabulary (what patients type, not texts we send), per language.
_WEEKDAYS = {
    "en": (
        ("monday", "mon"),
        ("tuesday", "tue", "tues"),
        ("wednesday", "wed", "wednesdays"),
        ("thursday", "thu", "thur", "thurs"),
        ("friday", "fri"),
        ("saturday", "sat"),
        ("sunday", "sun"),
    ),
    "es": (
        ("lunes",),
        ("martes",),
        ("miercoles",),
        ("jueves",),
        ("viernes",),
        ("sabado",),
        ("domingo",),
    ),
}
_NEXT = {"en": ("next", "this", "coming", "on"), "es": ("proximo", "el", "este", "para el")}
_RELATIVE = {
    "en": {
        "day after tomorrow": 2,
        "the day after tomorrow": 2,
        "today": 0,
        "tonight": 0,
        "tomorrow": 1,
        "tmrw": 1,
        "tomorow": 1,
        "tommorow": 1,
        "tommorrow": 1,
    },
    "es": {"pasado manana": 2, "hoy": 0, "esta tarde": 0, "esta noche": 0, "manana": 1},
}
_PART_WORDS = {
    "en": {
        "in the morning": "morning",
        "morning": "morning",
        "in the afternoon": "afternoon",
        "afternoon": "afternoon",
        "in the evening": "evening",
        "evening": "evening",
        "tonight": "evening",
        "after work": "evening",
        "am": "morning",
        "pm": "afternoon",
    },
    "es": {
        "por la manana": "morning",
        "de la manana": "morning",
        "en la manana": "morning",
        "a la manana": "morning",
        "por la tarde": "afternoon",
        "de la tarde": "afternoon",
        "en la tarde": "afternoon",
        "esta tarde": "afternoon",
        "a la tarde": "afternoon",
        "tarde": "afternoon",
        "por la noche": "evening",
        "de la noche": "evening",
        "esta noche": "evening",
        "noche": "evening",
    },
}
_NEXT_WEEK = {
    "en": ("next week", "the week after"),
    "es": ("la semana que viene", "la proxima semana", "semana que viene", "proxima semana"),
}
_NUMBERS = {
    "en": [
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
    ],
    "es": [
        "una",
        "dos",
        "tres",
        "cuatro",
        "cinco",
        "seis",
        "siete",
        "ocho",
        "nueve",
        "diez",
        "once",
        "doce",
    ],
}
_MONTHS = {
    "en": "january february march april may june july august september october november december",
    "es": "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre "
    "diciembre",
}
_MONTH_SHORT = {
    "en": "jan feb mar apr jun jul aug sep sept oct nov dec",
    "es": "ene feb abr jun jul ago sep set oct nov dic",
}
_AT = {
    "en": r"(?:at|around|about|by|from|after|before|@)",
    "es": r"(?:a las|a la|sobre las|hacia las|tipo|despues de las|antes de las|@)",
}
_ORDINAL = r"(?:st|nd|rd|th|o|a|º|ª)?"

_HHMM = re.compile(
    r"(?<![\d/.\-])(\d{1,2})\s*(?::|h|\.)\s*(\d{2})(?:\s*(?:h|hs|hrs|uhr))?(?![\d/])"
)
_AMPM = re.compile(r"(?<![\d:/.])(\d{1,2})(?::(\d{2}))?\s*([ap])\.?\s?m\b\.?")
_HOURS = re.compile(r"(?<![\d:/.])(\d{1,2})\s*(?:h|hs|hrs|uhr|horas|o ?clock)(?![\w])")
_NUMERIC_DATE = re.compile(r"(?<![\d:])(\d{1,2})([/.\-])(\d{1,2})(?:\2(\d{2}|\d{4}))?(?![\d:])")


def _word_re(words) -> str:
    return "|".join(sorted((re.escape(w) for w in words), key=len, reverse=True))


def parse_when(
    text: str,
    lang: str,
    today: date,
    *,
    date_order: str = "DMY",
    timezone: str = "UTC",
    other_order: str | None = None,
) -> When:
    """The day, time of day and part of day a short message names (an empty When if none).

    The likeliest reading comes first; `others` holds the other readings when the text itself
    does not settle them: a numeric date both orders can read (only when `other_order` says
    the day order is unsettled), an hour without am/pm or part of day, a week day that may be
    this week's or next week's.
    """
    if not text or len(text) > MAX_LEN:
        return When()
    s = for_dates(text)
    part, s = _take_part(s, lang)
    loose, s = _take_time(s, lang)
    day, week, s, other_day = _take_day(s, lang, today, date_order, timezone, other_order)
    hhmm = other_time = None
    if loose is not None:
        hhmm = _resolve_hour(loose, part)
        tonight = "tonight" in text.casefold()
        if part is None and hhmm.hour < 12 and tonight:
            hhmm = dtime(hhmm.hour + 12, hhmm.minute)
        if loose.loose and part is None and not tonight and 1 <= loose.hour <= 11:
            other_time = dtime((hhmm.hour + 12) % 24, hhmm.minute)  # 8 -> 20, 3 -> 3 (am)
    if hhmm is not None and part in ("morning", "afternoon") and _part_of(hhmm) != part:
        part = None  # "3pm in the afternoon" agrees; a time beats the part it contradicts
    when = When(day=day, time=hhmm, part=part if hhmm is None else None, week=week)
    others = []
    if other_day is not None:
        others.append(replace(when, day=other_day))
    if other_time is not None:
        others.append(replace(when, time=other_time))
    return replace(when, others=tuple(others))


def part_of(at: dtime) -> str:
    """Which part of the day a clinic-local time belongs to."""
    return _part_of(at)


def _part_of(at: dtime) -> str:
    if at.hour < 12:
        return "morning"
    return "afternoon" if at.hour < 17 else "evening"


# ---------------------------------------------------------------------------- parts of day


def _take_part(s: str, lang: str) -> tuple[str | None, str]:
    table = _PART_WORDS.get(lang, {})
    for phrase in sorted(table, key=len, reverse=True):
        if phrase in ("am", "pm"):
            continue  # only as part of a time ("3pm"); see _take_time
        pattern = rf"(?<=\s){re.escape(phrase)}(?=\s)"
        if re.search(pattern, s):
            # "esta tarde"/"tonight" also name the day: leave the word for _take_day.
            keep = phrase in _RELATIVE.get(lang, {})
            return table[phrase], s if keep else re.sub(pattern, " ", s, count=1)
    return None, s


# ---------------------------------------------------------------------------- times


@dataclass(frozen=True)
class _Hour:
    """A time read without am/pm when `loose` (\"at 3\"): resolved against the part of day."""

    hour: int
    minute: int
    loose: bool


def _take_time(s: str, lang: str) -> tuple[_Hour | None, str]:
    if m := _AMPM.search(s):
        hour, minute = int(m.group(1)), int(m.group(2) or 0)
        if 1 <= hour <= 12 and minute < 60:
            hour = hour % 12 + (12 if m.group(3) == "p" else 0)
            return _Hour(hour, minute, False), _cut(s, m)
    if m := _HHMM.search(s):
        hour, minute = int(m.group(1)), int(m.group(2))
        sep = s[m.start() : m.end()]
        is_time = ":" in sep or "h" in sep or _after_at(s, m.start(), lang)
        if hour < 24 and minute < 60 and (is_time or not _could_be_date(m, s)):
            return _Hour(hour, minute, hour <= 12 and hour != 0), _cut(s, m)
    if m := _HOURS.search(s):
        hour = int(m.group(1))
        if hour < 24:
            return _Hour(hour, 0, hour <= 12), _cut(s, m)
    words = _time_words(s, lang)
    if words is not None:
        return words
    at = _AT.get(lang)
    if at and (m := re.search(rf"\s{at}\s+(\d{{1,2}})(?=\s)(?!\s*(?:de|of)\s)", s)):
        hour = int(m.group(1))
        if hour < 24:
            return _Hour(hour, 0, hour <= 12), _cut(s, m)
    if re.search(r"\s(?:noon|midday|mediodia|medio dia)\s", s):
        return _Hour(12, 0, False), re.sub(r"\s(?:noon|midday|mediodia|medio dia)\s", " ", s)
    return None, s


def _after_at(s: str, start: int, lang: str) -> bool:
    at = _AT.get(lang)
    return bool(at and re.search(rf"\s{at}\s*$", s[:start]))


def _could_be_date(m: re.Match, s: str) -> bool:
    """'4.12' is a date in a message that has no other date; '15.30' is not a date."""
    first, second = int(m.group(1)), int(m.group(2))
    return 1 <= first <= 31 and 1 <= second <= 12 and "." in s[m.start() : m.end()]


def _time_words(s: str, lang: str) -> tuple[_Hour, str] | None:
    """'half past ten', 'quarter to four', 'ten thirty', 'las diez y media', 'a las tres'."""
    nums = _NUMBERS.get(lang)
    if not nums:
        return None
    n = _word_re([*nums, "uno"]) + r"|\d{1,2}"

    def value(word: str) -> int:
        if word.isdigit():
            return int(word)
        return 1 if word == "uno" else nums.index(word) + 1

    rules = []
    if lang == "en":
        rules = [
            (rf"\shalf past ({n})\s", 30, 0),
            (rf"\shalf ({n})\s", 30, 0),  # British "half ten"
            (rf"\squarter past ({n})\s", 15, 0),
            (rf"\squarter to ({n})\s", 45, -1),
            (rf"\s({n}) thirty\s", 30, 0),
            (rf"\s({n}) fifteen\s", 15, 0),
            (rf"\s({n}) forty five\s", 45, 0),
            (rf"\s(?:at|around|about) ({n})(?: o ?clock)?\s", 0, 0),
            (rf"\s({n}) o ?clock\s", 0, 0),
        ]
    elif lang == "es":
        rules = [
            (rf"\s(?:las |la )?({n}) y media\s", 30, 0),
            (rf"\s(?:las |la )?({n}) y cuarto\s", 15, 0),
            (rf"\s(?:las |la )?({n}) menos cuarto\s", 45, -1),
            (rf"\s(?:a las|a la|sobre las|hacia las) ({n})\s", 0, 0),
        ]
    for pattern, minute, shift in rules:
        if m := re.search(pattern, s):
            hour = value(m.group(1)) + shift
            if 0 < hour <= 23:
                return _Hour(hour, minute, hour <= 12), _cut(s, m)
    return None


def _resolve_hour(h: _Hour, part: str | None) -> dtime:
    """'at 3' in a clinic means 15:00; 'at 9' 09:00; a part of day decides when given."""
    hour = h.hour
    evening = part in ("afternoon", "evening") or (part != "morning" and hour < 8)
    if h.loose and hour < 12 and evening:
        hour += 12
    return dtime(hour % 24, h.minute)


def _cut(s: str, m: re.Match) -> str:
    return f"{s[: m.start()]} {s[m.end() :]}"


# ---------------------------------------------------------------------------- days


_THIS = ("this", "este", "esta")
_FOLLOWING = ("next", "proximo")


def _take_day(s: str, lang: str, today: date, order: str, tz: str, other_order: str | None):
    """(day, whole week?, the rest of the text, the other reading of the day or None)."""
    for phrase in _NEXT_WEEK.get(lang, ()):
        if f" {phrase} " in s:
            monday = today + timedelta(days=7 - today.weekday())
            return monday, True, s.replace(f" {phrase} ", " "), None
    found = _month_date(s, lang, today, order, tz)
    if found:
        return found[0], False, found[1], None
    if m := _NUMERIC_DATE.search(s):
        fragment = m.group(0).replace(".", "/")
        day = _dateparser_day(fragment, lang, today, order, tz)
        if day is not None:
            other = None
            if other_order and other_order != order:
                other = _dateparser_day(fragment, lang, today, other_order, tz)
            return day, False, _cut(s, m), other if other != day else None
    relative = _RELATIVE.get(lang, {})
    for phrase in sorted(relative, key=len, reverse=True):
        if f" {phrase} " in s:
            day = today + timedelta(days=relative[phrase])
            return day, False, s.replace(f" {phrase} ", " "), None
    for index, names in enumerate(_WEEKDAYS.get(lang, ())):
        qualifiers = _word_re((*_NEXT.get(lang, ()), *_THIS))
        pattern = rf"\s((?:{qualifiers})\s+)?({_word_re(names)})\s"
        if m := re.search(pattern, s):
            ahead = (index - today.weekday()) % 7
            qualifier = (m.group(1) or "").strip()
            following = qualifier in _FOLLOWING
            if ahead == 0 and following:
                ahead = 7
            day = today + timedelta(days=ahead)
            # "tuesday" on a Tuesday: today or in a week; "next thursday" on a Tuesday: in
            # two days or in nine. "this thursday" settles it.
            other = None
            if qualifier not in _THIS and (ahead == 0 or (following and ahead < 7)):
                other = day + timedelta(days=7)
            return day, False, _cut(s, m), other
    if m := _day_of_month(s, lang):
        day = _next_day_of_month(today, int(m.group(1)))
        if day is not None:
            return day, False, _cut(s, m), None
    if lang not in _WEEKDAYS and s.strip():
        day = _dateparser_day(s.strip(), lang, today, order, tz)
        if day is not None:
            return day, False, "", None
    return None, False, s, None


def _month_date(s: str, lang: str, today: date, order: str, tz: str):
    months = _MONTHS.get(lang, "").split() + _MONTH_SHORT.get(lang, "").split()
    if not months:
        return None
    names = _word_re(months)
    patterns = (
        rf"\s(?:the\s|el\s|el dia\s)?(\d{{1,2}}){_ORDINAL}\s+(?:of\s+|de\s+)?({names})\.?"
        rf"(?:\s+(?:de\s+)?(\d{{4}}))?(?=\s)",
        rf"\s({names})\.?\s+(?:the\s)?(\d{{1,2}}){_ORDINAL}(?:,?\s+(\d{{4}}))?(?=\s)",
    )
    for n, pattern in enumerate(patterns):
        if m := re.search(pattern, s):
            # Only the date itself goes to dateparser ("el 1 de febrero" -> "1 febrero").
            dom, month = (m.group(1), m.group(2)) if n == 0 else (m.group(2), m.group(1))
            fragment = " ".join(x for x in (dom, month, m.group(3)) if x)
            day = _dateparser_day(fragment, lang, today, order, tz)
            if day is not None:
                return day, _cut(s, m)
    return None


def _day_of_month(s: str, lang: str) -> re.Match | None:
    if lang == "en":
        return re.search(r"\s(?:on\s)?(?:the\s)?(\d{1,2})(?:st|nd|rd|th)(?=\s)", s) or re.search(
            r"\s(?:on\s)?the\s(\d{1,2})(?=\s)", s
        )
    if lang == "es":
        return re.search(r"\s(?:para\s)?el\s(?:dia\s)?(\d{1,2})(?=\s)", s) or re.search(
            r"\sdia\s(\d{1,2})(?=\s)", s
        )
    return None


def _next_day_of_month(today: date, dom: int) -> date | None:
    """The first date on or after today with that day of the month."""
    if not 1 <= dom <= 31:
        return None
    year, month = today.year, today.month
    for _ in range(3):
        try:
            candidate = date(year, month, dom)
        except ValueError:
            candidate = None
        if candidate and candidate >= today:
            return candidate
        month += 1
        if month > 12:
            year, month = year + 1, 1
    return None


def _dateparser_day(fragment: str, lang: str, today: date, order: str, tz: str) -> date | None:
    """A calendar date through dateparser, in the clinic's day order, never in the past."""
    parsed = _dateparser_parse(fragment, lang, today.isoformat(), order, tz)
    if parsed is None:
        return None
    day = parsed
    explicit_year = re.search(r"\d{4}|\d[/.\-]\d{1,2}[/.\-]\d{2}", fragment)
    if day < today and not explicit_year:
        try:
            day = day.replace(year=day.year + 1)
        except ValueError:
            return None
    return day if day >= today else None


@lru_cache(maxsize=512)
def _dateparser_parse(fragment: str, lang: str, today: str, order: str, tz: str) -> date | None:
    import dateparser  # imported on first use: loading its language data takes a moment

    base = datetime.combine(date.fromisoformat(today), dtime(0, 0))
    settings = {
        "DATE_ORDER": order,
        "PREFER_DATES_FROM": "current_period",  # a past date rolls a year on, below
        "RELATIVE_BASE": base,
        "REQUIRE_PARTS": ["day", "month"],
        "TIMEZONE": tz,
        "RETURN_AS_TIMEZONE_AWARE": False,
        "PREFER_DAY_OF_MONTH": "first",
    }
    try:
        result = dateparser.parse(fragment, languages=[lang], settings=settings)
    except (ValueError, TypeError, OverflowError):
        return None
    return result.date() if result else None


def warm_up(languages) -> None:
    """Load dateparser's data for these languages now, so the first patient does not wait."""
    for lang in languages:
        _dateparser_parse("4/12", lang, "2026-01-01", "DMY", "UTC")


_MONTH_FIRST = ("US", "PH", "FM", "PW", "MH")


def date_order_for(country: str | None, configured: str | None = None) -> str:
    """The clinic's day order: configured, else MDY for the US and a few others, else DMY."""
    if configured in ("DMY", "MDY", "YMD"):
        return configured
    return "MDY" if (country or "").upper() in _MONTH_FIRST else "DMY"


def region_order(country: str | None) -> str | None:
    """How people of a region write 4/12 (MDY or DMY), or None for an unknown region."""
    return date_order_for(country) if country else None


def date_orders(configured: str | None, clinic: str | None, patient: str | None):
    """(the order to read a numeric date in, the other order when unsettled, else None).

    The profile's `date_order` settles it; so do the clinic's and the patient's regions when
    they agree or only one is known. A patient from a month-first country writing to a
    day-first clinic (or two unknown regions) leaves "4/5" to be asked.
    """
    if configured in ("DMY", "MDY", "YMD"):
        return configured, None
    clinic_order, patient_order = region_order(clinic), region_order(patient)
    primary = clinic_order or patient_order or "DMY"
    if clinic_order and patient_order and clinic_order != patient_order:
        return primary, patient_order
    if clinic_order is None and patient_order is None:
        return primary, "MDY"
    return primary, None
