"""What each state asks (entering it) and what a pick in it does (choosing).

`go(turn, event)` follows the transition table; `enter_<state>` sends that state's prompt, or
fires the `skip` event at once when there is nothing to ask (a single service, a known name).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from datetime import time as dtime

from clinic_bot.adapters.ical.export import appointment_cancellation, appointment_invitation
from clinic_bot.core.clock import first_instant_from
from clinic_bot.domain import availability, booking, opening, waitlist
from clinic_bot.domain.messages import (
    BUTTON_TITLE,
    MAX_BUTTONS,
    MAX_LIST_ROWS,
    ROW_TITLE,
    shorten,
)
from clinic_bot.domain.profile import WEEKDAYS
from clinic_bot.domain.understanding import dates
from clinic_bot.domain.understanding.language import phone_region
from clinic_bot.models import Appointment
from clinic_bot.models.appointments import ACTIVE_STATUSES
from clinic_bot.reactions.conversation import ids, render
from clinic_bot.reactions.conversation.table import RESTING, next_state
from clinic_bot.reactions.conversation.turn import Option, Turn

PAGE = MAX_LIST_ROWS - 1  # rows per page when a "later" row is needed
NAME_MAX = 100
INTAKE_TEXT_MAX = 500


def go(turn: Turn, event: str, **kw) -> None:
    """Follow `event` from the current state to the next one and enter it."""
    target = next_state(turn.state, event)
    ENTER[target](turn, **kw)


def back(turn: Turn) -> None:
    """Return to the previous prompt (its answer is asked again), or to the menu."""
    stack = list(turn.data.get("stack", []))
    if len(stack) < 2:
        enter_menu(turn)
        return
    stack.pop()
    state, arg = stack.pop()
    turn.data["stack"] = stack
    ENTER[state](turn, arg=arg, again=True)


# ---------------------------------------------------------------------------- menu & language


def menu_options(turn: Turn) -> list[Option]:
    """The main menu's buttons: Book / My appointments / Talk to reception."""
    return [
        Option("book", turn.t("menu_book")),
        Option("appointments", turn.t("menu_appointments")),
        Option("reception", turn.t("menu_reception")),
    ]


def menu_typed(turn: Turn) -> list[list[str]]:
    """The menu's choices as they can be typed: its buttons, then Language / Idioma."""
    opts = [[o.value, o.title] for o in menu_options(turn)]
    return [*opts, ["language", turn.t("conv_language_row"), "language", "idioma"]]


def enter_menu(turn: Turn, **_) -> None:
    """The main menu: Book / My appointments / Talk to reception (Language is typed)."""
    p = turn.patient
    name = p.name or p.push_name
    body = turn.t("menu_body", name_part=f" {name.split()[0]}" if name and name.split() else "")
    turn.data = {"stack": []}
    turn.prompt("menu", "buttons", body, menu_options(turn), footer=turn.t("conv_menu_footer"))
    # Not a button (three is the limit) but a numbered choice the miss reply lists.
    turn.data["opts"] = menu_typed(turn)


def choose_menu(turn: Turn, value: str) -> None:
    if value == "book":
        turn.data = {"stack": turn.data.get("stack", []), "mode": "book"}
    go(turn, value)


def enter_language(turn: Turn, **_) -> None:
    """Offer the profile's languages, each titled in its own language."""
    options = [
        Option(code, turn.profile.text("conv_language_name", code), aliases=(code,))
        for code in turn.profile.languages
    ]
    body = turn.t("conv_language_ask")
    if len(options) <= MAX_BUTTONS:
        turn.prompt("language", "buttons", body, options)
    else:
        options = options[:MAX_LIST_ROWS]
        turn.prompt(
            "language",
            "list",
            body,
            options,
            label=turn.t("menu_language"),
            section=turn.t("menu_language"),
        )


def set_language(turn: Turn, code: str) -> None:
    """Switch the patient's language; what follows is in the new language."""
    turn.patient.language = code
    turn.lang = code


def choose_language(turn: Turn, value: str) -> None:
    set_language(turn, value)
    go(turn, "picked")


# ---------------------------------------------------------------------------- booking steps


def rescheduling(turn: Turn) -> bool:
    return turn.data.get("mode") == "reschedule"


def enter_service(turn: Turn, again: bool = False, **_) -> None:
    """Which service; skipped when the clinic offers one (or a reschedule keeps its own)."""
    turn.state = "service"
    if rescheduling(turn) and turn.data.get("service"):
        go(turn, "skip")
        return
    profile = turn.profile
    services = [s for s in profile.services if availability.candidates(profile, s.id, None)]
    if len(services) == 1 and not again:
        turn.data["service"] = services[0].id
        go(turn, "skip")
        return
    if not services:
        no_times(turn)
        return
    options = [
        Option(
            s.id,
            service_title(turn, s),
            _full_if_cut(
                service_title(turn, s),
                turn.t("conv_minutes", n=int(s.duration.total_seconds() // 60)),
            ),
            aliases=(s.name,),
        )
        for s in services[:MAX_LIST_ROWS]
    ]
    turn.prompt(
        "service",
        "list",
        turn.t("conv_service_ask"),
        options,
        label=turn.t("conv_service_label"),
        section=turn.t("conv_service_section"),
    )


def service_title(turn: Turn, service) -> str:
    """A service's name in the patient's language (`service_<id>` text), else its own name."""
    return turn.profile.texts.get(turn.lang, {}).get(f"service_{service.id}") or service.name


def _full_if_cut(name: str, extra: str = "") -> str:
    """A row description: the full name when the title had to be shortened, then `extra`."""
    parts = [name] if len(" ".join(name.split())) > ROW_TITLE else []
    return " · ".join([*parts, extra] if extra else parts)


def choose_service(turn: Turn, value: str) -> None:
    turn.data["service"] = value
    go(turn, "picked")


def enter_practitioner(turn: Turn, again: bool = False, **_) -> None:
    """Who; "any" first; skipped when one practitioner offers the service."""
    turn.state = "practitioner"
    people = availability.candidates(turn.profile, turn.data["service"], None)
    if len(people) == 1 and not again:
        turn.data["practitioner"] = people[0].id
        go(turn, "skip")
        return
    if not people:
        no_times(turn)
        return
    options = [Option("any", turn.t("conv_any_practitioner"), turn.t("conv_any_description"))]
    options += [
        Option(p.id, practitioner_title(turn, p), _full_if_cut(practitioner_title(turn, p)))
        for p in people[: MAX_LIST_ROWS - 1]
    ]
    turn.prompt(
        "practitioner",
        "list",
        turn.t("conv_practitioner_ask"),
        options,
        label=turn.t("conv_practitioner_label"),
        section=turn.t("conv_practitioner_section"),
    )


def choose_practitioner(turn: Turn, value: str) -> None:
    turn.data["practitioner"] = value
    go(turn, "picked")


def _practitioner_filter(turn: Turn) -> str | None:
    chosen = turn.data.get("practitioner")
    return None if chosen in (None, "any") else chosen


def no_times(turn: Turn) -> None:
    """Nothing free at all within the horizon: say so, offer reception, back to the menu."""
    turn.say("conv_no_days")
    turn.state = "day"
    go(turn, "none")


def start_booking(turn: Turn, when=None, *, service=None, practitioner=None) -> None:
    """Booking from a typed request: what it named preselected, then its day/time/part."""
    keep = ("mode", "appt", "appt_v", "service", "practitioner", "day", "stack", "asked")
    if turn.state in BOOKING_STATES:
        data = {k: turn.data[k] for k in keep if k in turn.data}
    else:
        data = {"stack": [], "mode": "book"}
    if service:
        data["service"] = service
    if practitioner:
        data["practitioner"] = practitioner
    if when:
        # A time typed at the time step means that day ("16:30" on the list of Wednesday).
        same_day = turn.state in ("time", "part") and not when.day and not when.week
        data["want"] = want_of(when, data.get("day") if same_day else None)
        if not practitioner and "practitioner" not in data:
            data["practitioner"] = "any"
    turn.data = data
    turn.state = "service"
    enter_service(turn)


def want_of(when, day: str | None = None) -> dict:
    """A typed request as stored until the day step uses it (with its other readings)."""
    want = {
        "day": when.day.isoformat() if when.day else day,
        "time": when.time.strftime("%H:%M") if when.time else None,
        "part": when.part,
        "week": when.week,
    }
    others = [want_of(o, day) for o in getattr(when, "others", ())]
    if others:
        want["others"] = others
    return want


def reschedule_to(turn: Turn, appt: Appointment, when) -> None:
    """Move `appt` towards a typed day/time: straight to its free times, then the summary."""
    turn.state = "appointment"
    turn.data = {
        "mode": "reschedule",
        "appt": appt.id,
        "appt_v": appt.version,
        "service": appt.service_id,
        "practitioner": appt.practitioner_id or "any",
        "stack": [["appointment", str(appt.id)]],
        "want": want_of(when),
    }
    go(turn, "reschedule")


BOOKING_STATES = (
    "service",
    "practitioner",
    "day",
    "clarify",
    "part",
    "time",
    "name",
    "intake",
    "summary",
)


def _local_time(turn: Turn, slot) -> str:
    return render.clock(turn.profile, slot.starts_at)


def _pick_slot(turn: Turn, slot) -> None:
    """Take `slot` as the patient's choice and go on (name, intake, then the summary)."""
    turn.data["day"] = render.local(turn.profile, slot.starts_at).date().isoformat()
    turn.data["slot"] = {"at": slot.starts_at.isoformat(), "p": slot.practitioner_id}
    turn.state = "time"
    go(turn, "picked")


# ---------------------------------------------------------------------------- ambiguity


def _settle(turn: Turn, want: dict) -> dict | None:
    """The reading of a typed request to go on with, or None once a question has been asked.

    Each other reading differs from `want` in its day or its time. A reading nobody could
    book (a day outside the bookable range, 03:00 when nobody works then) drops out; when
    two remain, the patient is asked once, with both as buttons. After that question any
    further ambiguity takes the first possible reading, which the summary shows.
    """
    # Which aspect each other reading changes, measured against the reading typed first.
    changes = []
    for other in want.pop("others", []):
        if "aspect" in other:  # kept from before a question
            changes.append(other)
        else:
            aspect = "day" if other.get("day") != want.get("day") else "time"
            changes.append({"aspect": aspect, "value": other.get(aspect)})
    for i, change in enumerate(changes):
        alternative = {**want, change["aspect"]: change["value"]}
        mine, theirs = _possible(turn, want), _possible(turn, alternative)
        if theirs and not mine:
            want = alternative
        elif mine and theirs and not turn.data.get("asked"):
            turn.data["asked"] = True
            rest = changes[i + 1 :]
            readings = [{**want, "others": rest}, {**alternative, "others": rest}]
            go(turn, "ambiguous", readings=readings)
            return None
    return want


def _possible(turn: Turn, want: dict) -> bool:
    """Could this reading be booked: a day in range with free times, a time someone works."""
    profile = turn.profile
    day = date.fromisoformat(want["day"]) if want.get("day") else None
    if day is not None:
        today = availability.local_today(turn.now, profile.timezone)
        if not today <= day <= availability.last_bookable_day(profile, turn.now):
            return False
        if not want.get("time") and not _free_slots(turn, day):
            return False
    if not want.get("time"):
        return True
    hh, mm = (int(x) for x in want["time"].split(":"))
    at = dtime(hh, mm)
    if day is not None:
        instant = first_instant_from(day, at, profile.timezone)
        if instant < turn.now + profile.min_notice:
            return False
    weekdays = [WEEKDAYS[day.weekday()]] if day is not None else WEEKDAYS
    people = availability.candidates(profile, turn.data["service"], _practitioner_filter(turn))
    return any(
        start <= at < end for p in people for key in weekdays for start, end in p.hours.get(key, [])
    )


def _reading_title(turn: Turn, want: dict, aspect: str) -> str:
    """A button for one reading: the day ('Today, Tue 24 Nov') or the time ('20:00')."""
    if aspect == "day":
        return _day_title(turn, date.fromisoformat(want["day"]))
    return want["time"]


def enter_clarify(turn: Turn, readings: list[dict] | None = None, **_) -> None:
    """Which of two readings a typed request meant: asked once, never guessed."""
    from clinic_bot.domain.understanding.dates import part_of

    readings = readings or turn.data.get("readings") or []
    if len(readings) != 2:  # "back" to a question whose readings are gone
        turn.state = "day"
        enter_day(turn)
        return
    turn.data["readings"] = readings
    aspect = "day" if readings[0].get("day") != readings[1].get("day") else "time"
    options = []
    for i, want in enumerate(readings):
        title = _reading_title(turn, want, aspect)
        if aspect == "day":
            day = date.fromisoformat(want["day"])
            aliases = (render.day_label(turn.profile, turn.lang, day), day.isoformat())
        else:
            hh, mm = (int(x) for x in want["time"].split(":"))
            part = part_of(dtime(hh, mm))
            aliases = (title.lstrip("0"), turn.t(f"conv_part_button_{part}"))
        options.append(Option(str(i), shorten(title, BUTTON_TITLE), aliases=aliases))
    turn.prompt("clarify", "buttons", turn.t("conv_ambiguous_ask"), options)


def choose_clarify(turn: Turn, value: str) -> None:
    """Go on with the reading the patient chose, at the day step (which asks nothing again)."""
    readings = turn.data.pop("readings", [])
    turn.data["want"] = readings[int(value)]
    go(turn, "picked")


def _jump(turn: Turn, want: dict) -> bool:
    """Go straight to what a typed request asked for; False to show the day list as usual."""
    want = _settle(turn, want)
    if want is None:
        return True  # a question was asked
    today = availability.local_today(turn.now, turn.profile.timezone)
    last = availability.last_bookable_day(turn.profile, turn.now)
    wanted_time, part = want.get("time"), want.get("part")
    if want.get("week") and want.get("day"):
        monday = date.fromisoformat(want["day"])
        turn.say("conv_days_from", date=render.day_long(turn.profile, turn.lang, monday))
        enter_day(turn, arg=(monday - timedelta(days=1)).isoformat())
        return True
    if want.get("day"):
        day = date.fromisoformat(want["day"])
        label = render.day_long(turn.profile, turn.lang, day)
        if day < today or day > last:
            turn.say("conv_day_out_of_range", date=label)
            return False
        slots = _free_slots(turn, day)
        in_part = [s for s in slots if not part or _part(turn, s) == part]
        if wanted_time:
            exact = [s for s in slots if _local_time(turn, s) == wanted_time]
            if exact:
                _pick_slot(turn, exact[0])
                return True
        if in_part or (slots and not part):
            turn.data["day"] = day.isoformat()
            if part and in_part:
                turn.data["part"] = part
            if wanted_time:
                turn.say("conv_time_not_free", time=wanted_time, date=label)
                turn.data["near"] = wanted_time
            elif part and not in_part:
                turn.say("conv_part_full", date=label)
            enter_time(turn)
            return True
        if slots:  # free times that day, none in the part asked for
            turn.say("conv_part_full", date=label)
            turn.data["day"] = day.isoformat()
            enter_time(turn)
            return True
        if opening.weekly_hours(turn.profile) and _works(turn, day):
            # A working day that is full: the waitlist, or the nearest free days.
            if part:
                turn.data["part"] = part
            enter_full(turn, arg=day.isoformat())
            return True
        turn.say("conv_day_full_nearest", date=label)
        enter_day(turn, arg=day.isoformat())
        return True
    if wanted_time or part:
        days = availability.days_with_free_slots(
            turn.session,
            turn.profile,
            service_id=turn.data["service"],
            practitioner_id=_practitioner_filter(turn),
            now=turn.now,
            limit=MAX_LIST_ROWS,
        )
        for day in days:
            slots = _free_slots(turn, day)
            if wanted_time:
                exact = [s for s in slots if _local_time(turn, s) == wanted_time]
                if exact:
                    _pick_slot(turn, exact[0])
                    return True
            elif any(_part(turn, s) == part for s in slots):
                turn.data["day"], turn.data["part"] = day.isoformat(), part
                enter_time(turn)
                return True
        turn.say("conv_time_nowhere", time=wanted_time or turn.t(f"conv_part_{part}"))
    return False


def enter_full(turn: Turn, arg=None, **_) -> None:
    """A requested working day is full: its waitlist, or the nearest days (waitlist.py)."""
    turn.data["full_day"] = arg
    label = render.day_long(turn.profile, turn.lang, date.fromisoformat(arg))
    turn.prompt(
        "full",
        "buttons",
        turn.t("conv_day_full_waitlist", date=label),
        [
            Option("waitlist", turn.t("conv_waitlist_join")),
            Option("other", turn.t("conv_other_days")),
        ],
        arg=arg,
    )


def _works(turn: Turn, day: date) -> bool:
    """True when someone who offers the service works that day (not a closure)."""
    if availability.is_closed(turn.profile, day):
        return False
    people = availability.candidates(turn.profile, turn.data["service"], _practitioner_filter(turn))
    return any(p.hours.get(WEEKDAYS[day.weekday()]) for p in people)


def _part(turn: Turn, slot) -> str:
    from clinic_bot.domain.understanding.dates import part_of

    return part_of(render.local(turn.profile, slot.starts_at).time())


def _day_title(turn: Turn, d: date) -> str:
    today = availability.local_today(turn.now, turn.profile.timezone)
    label = render.day_label(turn.profile, turn.lang, d)
    if d == today:
        return shorten(f"{turn.t('conv_today')}, {label}", ROW_TITLE)
    if d == today + timedelta(days=1):
        return shorten(f"{turn.t('conv_tomorrow')}, {label}", ROW_TITLE)
    return label


def enter_day(turn: Turn, arg=None, **_) -> None:
    """Days with free slots, a page at a time ("Later days" pages on)."""
    turn.state = "day"
    want = turn.data.pop("want", None)
    if want and _jump(turn, want):
        return
    turn.state = "day"
    turn.data.pop("part", None)
    turn.data.pop("near", None)
    after = date.fromisoformat(arg) if arg else None
    days = availability.days_with_free_slots(
        turn.session,
        turn.profile,
        service_id=turn.data["service"],
        practitioner_id=_practitioner_filter(turn),
        now=turn.now,
        limit=MAX_LIST_ROWS,
        after=after,
    )
    if not days:
        no_times(turn)
        return
    options = [
        Option(
            d.isoformat(),
            _day_title(turn, d),
            aliases=(
                render.day_label(turn.profile, turn.lang, d),
                d.isoformat(),
                *_numeric_aliases(turn, d),
            ),
        )
        for d in days
    ]
    first = [] if arg else [Option("next", turn.t("conv_next_available"), _first_free(turn, days))]
    room = MAX_LIST_ROWS - len(first)
    if len(options) > room:
        options = options[: room - 1]
        turn.data["day_next"] = days[room - 2].isoformat()
        options.append(Option("more", turn.t("conv_later_days"), aliases=("more", "mas")))
    options = first + options
    turn.prompt(
        "day",
        "list",
        turn.t("conv_day_ask"),
        options,
        arg=arg,
        label=turn.t("conv_day_label"),
        section=turn.t("conv_day_section"),
    )


def date_orders(profile, patient_phone: str | None) -> tuple[str, str | None]:
    """(order to read 4/12 in, the other order when neither profile nor phones settle it)."""
    clinic = phone_region("".join(c for c in profile.phone if c.isdigit()))
    return dates.date_orders(
        getattr(profile, "date_order", None), clinic, phone_region(patient_phone)
    )


def _numeric_aliases(turn: Turn, d: date) -> tuple[str, ...]:
    """'1/12' and '1.12' for a day row, written in the order this patient's date is read;
    none while the order is unsettled, so a typed '1/12' is asked about, not picked."""
    order, other = date_orders(turn.profile, turn.patient.phone)
    if other is not None:
        return ()
    a, b = (d.month, d.day) if order == "MDY" else (d.day, d.month)
    return (f"{a}/{b}", f"{a}.{b}")


def _first_free(turn: Turn, days: list[date]) -> str:
    """The description of "Next available": when it is ('Tue 24 Nov 11:00')."""
    slots = _free_slots(turn, days[0]) if days else []
    return render.when_short(turn.profile, turn.lang, slots[0].starts_at) if slots else ""


def choose_day(turn: Turn, value: str) -> None:
    if value == "more":
        go(turn, "more", arg=turn.data.get("day_next"))
        return
    if value == "next":
        days = availability.days_with_free_slots(
            turn.session,
            turn.profile,
            service_id=turn.data["service"],
            practitioner_id=_practitioner_filter(turn),
            now=turn.now,
            limit=1,
        )
        slots = _free_slots(turn, days[0]) if days else []
        if not slots:
            no_times(turn)
            return
        _pick_slot(turn, slots[0])
        return
    turn.data["day"] = value
    go(turn, "picked")


def enter_part(turn: Turn, again: bool = False, **_) -> None:
    """A day with more free times than a list holds: a free time from each hour of the day
    (one tap to it), then Morning / Afternoon / Evening rows that list all of a part's times.
    Skipped when the day's times fit one list or all fall in one part of the day."""
    turn.state = "part"
    turn.data.pop("part", None)
    turn.data.pop("near", None)
    day = date.fromisoformat(turn.data["day"])
    slots = _free_slots(turn, day)
    parts = [
        p for p in ("morning", "afternoon", "evening") if any(_part(turn, s) == p for s in slots)
    ]
    if len(slots) <= MAX_LIST_ROWS or len(parts) < 2:
        go(turn, "skip")
        return
    show_who = _show_who(turn)
    options = [
        _time_option(turn, s, show_who) for s in _hourly(turn, slots, MAX_LIST_ROWS - len(parts))
    ]
    for p in parts:
        in_part = [s for s in slots if _part(turn, s) == p]
        span = turn.t(
            "conv_part_row",
            first=_local_time(turn, in_part[0]),
            last=_local_time(turn, in_part[-1]),
        )
        options.append(Option(p, turn.t(f"conv_part_button_{p}"), span, aliases=(p,)))
    turn.prompt(
        "part",
        "list",
        turn.t("conv_part_ask", date=render.day_long(turn.profile, turn.lang, day)),
        options,
        label=turn.t("conv_time_label"),
        section=turn.t("conv_time_section"),
    )


def _hourly(turn: Turn, slots, room: int) -> list:
    """The first free time of each hour, spread evenly over the day when more than `room`."""
    firsts, hours = [], set()
    for slot in slots:
        hour = render.local(turn.profile, slot.starts_at).hour
        if hour not in hours:
            hours.add(hour)
            firsts.append(slot)
    if len(firsts) <= room:
        return firsts
    step = (len(firsts) - 1) / (room - 1)
    return [firsts[round(i * step)] for i in range(room)]


def choose_part(turn: Turn, value: str) -> None:
    """A part of the day lists its times; an hourly time is taken as the patient's choice."""
    if value in ("morning", "afternoon", "evening"):
        turn.data["part"] = value
        go(turn, "picked")
        return
    # One of the hourly times: straight on to the name, intake and summary.
    starts_at, pid = parse_slot_value(value)
    turn.data["slot"] = {"at": starts_at.isoformat(), "p": pid}
    go(turn, "slot")


def _slot_value(slot) -> str:
    return f"{int(slot.starts_at.timestamp())}@{slot.practitioner_id}"


def parse_slot_value(value: str) -> tuple[datetime, str]:
    """(start instant, practitioner id) from a slot option's value."""
    from datetime import UTC

    stamp, _, pid = value.partition("@")
    return datetime.fromtimestamp(int(stamp), UTC), pid


def _free_slots(turn: Turn, day: date):
    ignore = [turn.data["appt"]] if rescheduling(turn) and turn.data.get("appt") else []
    return availability.free_slots(
        turn.session,
        turn.profile,
        service_id=turn.data["service"],
        practitioner_id=_practitioner_filter(turn),
        day=day,
        now=turn.now,
        ignore_ids=ignore,
    )


def _show_who(turn: Turn) -> bool:
    """Time rows name the practitioner when the patient chose "anyone" among several."""
    return (
        turn.data.get("practitioner") == "any"
        and len(availability.candidates(turn.profile, turn.data["service"], None)) > 1
    )


def _time_option(turn: Turn, slot, show_who: bool) -> Option:
    """A row for one free start time, typed as '09:15', '9:15', '0915' or '09.15'."""
    hhmm = render.clock(turn.profile, slot.starts_at)
    who = turn.profile.practitioner(slot.practitioner_id)
    return Option(
        _slot_value(slot),
        hhmm,
        who.name if show_who and who else "",
        aliases=(hhmm, hhmm.lstrip("0"), hhmm.replace(":", ""), hhmm.replace(":", ".")),
    )


def enter_time(turn: Turn, arg=None, **_) -> None:
    """Free start times on the chosen day; "Later times" pages on."""
    turn.state = "time"
    before = datetime.fromisoformat(arg[1:]) if arg and arg.startswith("<") else None
    after = datetime.fromisoformat(arg) if arg and not before else None
    part, near = turn.data.get("part"), turn.data.get("near")
    day_slots = [
        s
        for s in _free_slots(turn, date.fromisoformat(turn.data["day"]))
        if not part or _part(turn, s) == part
    ]
    slots = [s for s in day_slots if after is None or s.starts_at > after]
    if before is not None:
        earlier_ones = [s for s in day_slots if s.starts_at < before]
        slots = earlier_ones[-(PAGE - 1) :] if len(earlier_ones) > PAGE else earlier_ones
        slots += [s for s in day_slots if s.starts_at >= before]
    if near and after is None and len(slots) > PAGE:
        # The times nearest the one asked for, in order of the clock.
        hh, mm = (int(x) for x in near.split(":"))
        wanted = hh * 60 + mm

        def distance(s):
            t = render.local(turn.profile, s.starts_at)
            return abs(t.hour * 60 + t.minute - wanted)

        slots = sorted(sorted(slots, key=distance)[:PAGE], key=lambda s: s.starts_at)
    if not slots:
        turn.say("conv_day_full")
        go(turn, "gone")
        return
    show_who = _show_who(turn)
    options = [_time_option(turn, s, show_who) for s in slots[:MAX_LIST_ROWS]]
    has_earlier = bool(slots) and any(s.starts_at < slots[0].starts_at for s in day_slots)
    room = MAX_LIST_ROWS - (1 if has_earlier else 0)
    if len(slots) > room:
        options = options[: room - 1]
        turn.data["time_next"] = slots[room - 2].starts_at.isoformat()
        options.append(Option("more", turn.t("conv_later_times"), aliases=("more", "mas")))
    else:
        options = options[:room]
    if has_earlier:
        turn.data["time_prev"] = "<" + slots[0].starts_at.isoformat()
        earlier = Option("earlier", turn.t("conv_earlier_times"), aliases=("earlier", "antes"))
        options = [earlier, *options]
    day = render.day_long(turn.profile, turn.lang, date.fromisoformat(turn.data["day"]))
    turn.prompt(
        "time",
        "list",
        turn.t("conv_time_ask", date=day),
        options,
        arg=arg,
        label=turn.t("conv_time_label"),
        section=turn.t("conv_time_section"),
    )


def choose_time(turn: Turn, value: str) -> None:
    if value == "more":
        go(turn, "more", arg=turn.data.get("time_next"))
        return
    if value == "earlier":
        go(turn, "more", arg=turn.data.get("time_prev"))
        return
    starts_at, pid = parse_slot_value(value)
    turn.data["slot"] = {"at": starts_at.isoformat(), "p": pid}
    go(turn, "picked")


def enter_name(turn: Turn, again: bool = False, **_) -> None:
    """The patient's name, asked only when we do not know it."""
    turn.state = "name"
    if rescheduling(turn) or (turn.patient.name and not again):
        go(turn, "skip")
        return
    turn.prompt("name", "text", turn.t("conv_name_ask"))


def valid_name(text: str) -> str | None:
    """A typed name, tidied; None when it cannot be a name (no letters, too long)."""
    name = " ".join(text.split())
    if not name or len(name) > NAME_MAX or not any(c.isalpha() for c in name):
        return None
    return name


def answer_name(turn: Turn, text: str) -> bool:
    name = valid_name(text)
    if name is None:
        return False
    turn.patient.name = name
    go(turn, "answered")
    return True


def per_visit(turn: Turn) -> bool:
    """Profile switch `intake_per_visit`: the questions are asked at every booking."""
    return bool(getattr(turn.profile, "intake_per_visit", False))


def _pending_question(turn: Turn):
    answered = turn.data.get("answers", {}) if per_visit(turn) else (turn.patient.intake or {})
    return next((q for q in turn.profile.intake if q.id not in answered), None)


def enter_intake(turn: Turn, arg=None, again: bool = False, **_) -> None:
    """The next intake question not yet answered (a reschedule asks none)."""
    turn.state = "intake"
    question = None
    if again and arg:
        question = next((q for q in turn.profile.intake if q.id == arg), None)
    elif not rescheduling(turn):
        question = _pending_question(turn)
    if question is None:
        go(turn, "skip")
        return
    prompt = question.prompt.get(turn.lang) or next(iter(question.prompt.values()))
    turn.data["q"] = question.id
    if question.kind == "text":
        turn.prompt("intake", "text", prompt, arg=question.id)
        return
    options = [
        Option(o["id"], o["title"].get(turn.lang) or next(iter(o["title"].values())))
        for o in question.options
    ]
    if question.kind == "buttons":
        turn.prompt("intake", "buttons", prompt, options, arg=question.id)
    else:
        turn.prompt(
            "intake",
            "list",
            prompt,
            options,
            arg=question.id,
            label=turn.t("conv_intake_label"),
            section=turn.t("conv_intake_section"),
        )


def _store_answer(turn: Turn, value: str) -> None:
    turn.patient.intake = {**(turn.patient.intake or {}), turn.data["q"]: value}
    if per_visit(turn):
        turn.data["answers"] = {**turn.data.get("answers", {}), turn.data["q"]: value}
    go(turn, "answered")


def visit_reason(turn: Turn) -> str | None:
    """This booking's intake answers for staff, in the clinic's language (per-visit only)."""
    answers = turn.data.get("answers") or {}
    if not per_visit(turn) or not answers:
        return None
    lang = turn.profile.language
    lines = []
    for q in turn.profile.intake:
        if q.id not in answers:
            continue
        value = answers[q.id]
        option = next((o for o in q.options if o["id"] == value), None)
        if option:
            value = option["title"].get(lang) or next(iter(option["title"].values()))
        lines.append(value if len(turn.profile.intake) == 1 else f"{q.id}: {value}")
    return "\n".join(lines)[: INTAKE_TEXT_MAX * 2]


def choose_intake(turn: Turn, value: str) -> None:
    _store_answer(turn, value)


def answer_intake(turn: Turn, text: str) -> bool:
    answer = " ".join(text.split())[:INTAKE_TEXT_MAX]
    if not answer:
        return False
    _store_answer(turn, answer)
    return True


def practitioner_title(turn: Turn, person) -> str:
    """A practitioner's title in the patient's language (`practitioner_<id>` text)."""
    return turn.profile.texts.get(turn.lang, {}).get(f"practitioner_{person.id}") or person.name


def _who(turn: Turn, pid: str | None) -> str:
    person = turn.profile.practitioner(pid) if pid else None
    return practitioner_title(turn, person) if person else turn.t("conv_any_practitioner")


def _service_name(turn: Turn, sid: str | None) -> str:
    service = turn.profile.service(sid) if sid else None
    return service_title(turn, service) if service else turn.t("conv_service_default")


def enter_summary(turn: Turn, **_) -> None:
    """What will be booked (or moved), with Confirm / Change / Cancel."""
    slot = turn.data["slot"]
    at = datetime.fromisoformat(slot["at"])
    key = "conv_summary_move" if rescheduling(turn) else "conv_summary"
    body = turn.t(
        key,
        service=_service_name(turn, turn.data.get("service")),
        practitioner=_who(turn, slot["p"]),
        when=render.when(turn.profile, turn.lang, at),
        name=turn.patient.name or "",
    )
    turn.prompt(
        "summary",
        "buttons",
        body,
        [
            Option("confirm", turn.t("conv_confirm")),
            Option("change", turn.t("conv_change")),
            Option("cancel", turn.t("conv_cancel")),
        ],
    )


def choose_summary(turn: Turn, value: str) -> None:
    if value == "change":
        keep = {k: turn.data[k] for k in ("mode", "appt", "appt_v") if k in turn.data}
        if rescheduling(turn):
            keep["service"] = turn.data.get("service")
        turn.data = {**keep, "stack": []}
        go(turn, "change")
    elif value == "cancel":
        turn.say("conv_moving_cancelled" if rescheduling(turn) else "conv_booking_cancelled")
        go(turn, "cancel")
    else:
        place(turn)


def place(turn: Turn) -> None:
    """Book (or move) the chosen slot; a slot taken since offers the next free ones."""
    slot = turn.data["slot"]
    at = datetime.fromisoformat(slot["at"])
    try:
        if rescheduling(turn):
            appt = own_appointment(turn, turn.data.get("appt"), turn.data.get("appt_v"))
            if appt is None:
                turn.say("conv_appt_stale")
                go(turn, "failed")
                return
            booking.reschedule(
                turn.session,
                turn.profile,
                appt,
                starts_at=at,
                practitioner_id=slot["p"],
                now=turn.now,
            )
            go(turn, "moved", appt=appt)
        else:
            appt = booking.book(
                turn.session,
                turn.profile,
                patient=turn.patient,
                service_id=turn.data["service"],
                practitioner_id=slot["p"],
                starts_at=at,
                now=turn.now,
            )
            appt.visit_reason = visit_reason(turn)
            waitlist.leave(turn.session, turn.patient, "booked")  # booked otherwise: off the list
            go(turn, "confirm", appt=appt)
    except booking.SlotTaken:
        turn.say("conv_slot_taken")
        go(turn, "taken", arg=(at - timedelta(seconds=1)).isoformat())
    except booking.BookingError:
        turn.say("conv_booking_failed")
        go(turn, "failed")


def enter_booked(turn: Turn, appt: Appointment | None = None, **_) -> None:
    """The confirmation text in clinic-local time, then the .ics invitation."""
    moved = rescheduling(turn)
    turn.rest("booked")
    if appt is None:
        return
    turn.say(
        "conv_moved" if moved else "conv_booked",
        service=_service_name(turn, appt.service_id),
        practitioner=_who(turn, appt.practitioner_id),
        when=render.when(turn.profile, turn.lang, appt.starts_at),
        address=turn.profile.address,
    )
    title = f"{_service_name(turn, appt.service_id)} – {turn.profile.name}"
    turn.ctx.outbox.document(
        turn.patient,
        appointment_invitation(appt, turn.profile, title=title),
        turn.t("conv_ics_filename"),
        "text/calendar",
        turn.t("conv_ics_caption"),
    )


# ---------------------------------------------------------------------------- my appointments


def own_appointment(turn: Turn, appt_id, version=None) -> Appointment | None:
    """The patient's own active, future appointment (at `version` when given), else None."""
    try:
        appt = turn.session.get(Appointment, int(appt_id))
    except (TypeError, ValueError):
        return None
    if appt is None or appt.patient_id != turn.patient.id:
        return None
    if appt.status not in ACTIVE_STATUSES or appt.starts_at <= turn.now:
        return None
    if version is not None and appt.version != int(version):
        return None
    return appt


def enter_appointments(turn: Turn, **_) -> None:
    """The patient's upcoming appointments; one is opened directly."""
    turn.state = "appointments"
    appts = booking.upcoming_for(turn.session, turn.patient, now=turn.now)
    if not appts:
        turn.say("conv_no_appointments")
        go(turn, "none")
        return
    if len(appts) == 1:
        go(turn, "skip", appt=appts[0])
        return
    options = [
        Option(
            str(a.id),
            render.when_short(turn.profile, turn.lang, a.starts_at),
            f"{_service_name(turn, a.service_id)} · {_who(turn, a.practitioner_id)}",
        )
        for a in appts[:MAX_LIST_ROWS]
    ]
    turn.prompt(
        "appointments",
        "list",
        turn.t("conv_appointments_ask"),
        options,
        label=turn.t("conv_appointments_label"),
        section=turn.t("conv_appointments_section"),
    )


def choose_appointments(turn: Turn, value: str) -> None:
    appt = own_appointment(turn, value)
    if appt is None:
        stale_appointment(turn)
        return
    go(turn, "picked", appt=appt)


def enter_appointment(turn: Turn, appt: Appointment | None = None, arg=None, **_) -> None:
    """One appointment with Confirm attendance / Reschedule / Cancel (the reminders' ids)."""
    appt = appt or own_appointment(turn, arg)
    if appt is None:
        stale_appointment(turn)
        return
    turn.data["appt"], turn.data["appt_v"] = appt.id, appt.version
    body = turn.t(
        "conv_appointment_body",
        service=_service_name(turn, appt.service_id),
        practitioner=_who(turn, appt.practitioner_id),
        when=render.when(turn.profile, turn.lang, appt.starts_at),
    )
    options = [
        Option(
            action,
            shorten(turn.t(f"conv_appt_{action}"), BUTTON_TITLE),
            tap_id=ids.appt_id(appt.id, appt.version, action),
        )
        for action in ("confirm", "reschedule", "cancel")
    ]
    turn.prompt("appointment", "buttons", body, options, arg=str(appt.id))


def choose_appointment(turn: Turn, value: str) -> None:
    appt = own_appointment(turn, turn.data.get("appt"), turn.data.get("appt_v"))
    if appt is None:
        stale_appointment(turn)
        return
    appointment_action(turn, appt, value)


def appointment_action(turn: Turn, appt: Appointment, action: str) -> None:
    """Confirm, reschedule, cancel (asks once more) or open one of the patient's appointments."""
    turn.state = "appointment"
    if action == "open":
        enter_appointment(turn, appt=appt)
    elif action == "confirm":
        booking.set_status(turn.session, appt, "confirmed", now=turn.now)
        turn.say("conv_appt_confirmed", when=render.when(turn.profile, turn.lang, appt.starts_at))
        turn.rest(next_state("appointment", "confirm"))
    elif action == "reschedule":
        turn.data = {
            "mode": "reschedule",
            "appt": appt.id,
            "appt_v": appt.version,
            "service": appt.service_id,
            "stack": [["appointment", str(appt.id)]],
        }
        go(turn, "reschedule")
    else:
        turn.data.update(appt=appt.id, appt_v=appt.version)
        go(turn, "cancel")


def enter_cancel_confirm(turn: Turn, **_) -> None:
    """Ask once more before cancelling."""
    appt = own_appointment(turn, turn.data.get("appt"), turn.data.get("appt_v"))
    if appt is None:
        stale_appointment(turn)
        return
    turn.prompt(
        "cancel_confirm",
        "buttons",
        turn.t("conv_cancel_ask", when=render.when(turn.profile, turn.lang, appt.starts_at)),
        [Option("yes", turn.t("conv_cancel_yes")), Option("no", turn.t("conv_cancel_no"))],
    )


def choose_cancel_confirm(turn: Turn, value: str) -> None:
    appt = own_appointment(turn, turn.data.get("appt"), turn.data.get("appt_v"))
    if appt is None:
        stale_appointment(turn)
        return
    if value == "yes":
        booking.cancel(turn.session, appt, now=turn.now)
        turn.say("conv_appt_cancelled", when=render.when(turn.profile, turn.lang, appt.starts_at))
        turn.ctx.outbox.document(
            turn.patient,
            appointment_cancellation(appt, turn.profile),
            turn.t("conv_ics_filename"),
            "text/calendar",
            turn.t("conv_ics_cancel_caption"),
        )
    else:
        turn.say("conv_appt_kept")
    turn.rest(next_state("cancel_confirm", value))


def stale_appointment(turn: Turn) -> None:
    """A tap on an appointment that was moved, cancelled or is not this patient's."""
    turn.say("conv_appt_stale")
    repeat_or_menu(turn)


def repeat_or_menu(turn: Turn) -> None:
    """Show the current prompt again, or the menu when nothing is pending."""
    if (
        turn.state in RESTING
        or turn.state in ("handoff", "appointment")
        or not turn.data.get("prompt")
    ):
        enter_menu(turn)
    else:
        turn.send_prompt()


# ---------------------------------------------------------------------------- handoff


def enter_handoff(turn: Turn, auto: bool = False, **_) -> None:
    """Hand the chat to reception: the bot stays silent until staff resolve it."""
    turn.patient.handoff_since = turn.now
    note = closed_note(turn)
    text = turn.t("conv_handoff_auto" if auto else "conv_handoff_started")
    turn.ctx.outbox.text(turn.patient, f"{text}\n{note}" if note else text)
    turn.rest("handoff")
    turn.data["told_closed"] = bool(note)


def closed_note(turn: Turn) -> str:
    """'' while the clinic is open, else when reception will answer."""
    opens = opening.next_opening(turn.profile, turn.now)
    if opens is None or opens == turn.now:
        return ""
    return turn.t("conv_reception_closed", when=render.when(turn.profile, turn.lang, opens))


def enter_idle(turn: Turn, **_) -> None:
    turn.rest("idle")


ENTER = {
    "idle": enter_idle,
    "menu": enter_menu,
    "language": enter_language,
    "service": enter_service,
    "practitioner": enter_practitioner,
    "day": enter_day,
    "part": enter_part,
    "full": enter_full,
    "clarify": enter_clarify,
    "time": enter_time,
    "name": enter_name,
    "intake": enter_intake,
    "summary": enter_summary,
    "booked": enter_booked,
    "appointments": enter_appointments,
    "appointment": enter_appointment,
    "cancel_confirm": enter_cancel_confirm,
    "handoff": enter_handoff,
}

CHOOSE = {
    "menu": choose_menu,
    "language": choose_language,
    "service": choose_service,
    "practitioner": choose_practitioner,
    "day": choose_day,
    "clarify": choose_clarify,
    "part": choose_part,
    "time": choose_time,
    "intake": choose_intake,
    "summary": choose_summary,
    "appointments": choose_appointments,
    "appointment": choose_appointment,
    "cancel_confirm": choose_cancel_confirm,
}

ANSWER_TEXT = {"name": answer_name, "intake": answer_intake}
