"""The conversation's states and transitions, as data: `print(describe())` shows the machine.

Each state maps the events it accepts to the next state. The step code (steps.py) decides
which event happened (a pick, a skip because there was only one choice, a slot taken since)
and `steps.go` looks the next state up here, so this table is the flow, not a comment on it.
"""

from __future__ import annotations

# States that wait for no particular answer: any message from there shows the menu.
RESTING = ("idle", "booked", "confirmed", "cancelled", "kept", "wrong_number", "waitlisted")

TRANSITIONS: dict[str, dict[str, str]] = {
    "idle": {"message": "menu"},
    "menu": {
        "book": "service",
        "appointments": "appointments",
        "reception": "handoff",
        "language": "language",
    },
    "language": {"picked": "menu"},
    # Booking (and rescheduling, which re-enters at "service" with the service known).
    "service": {"picked": "practitioner", "skip": "practitioner"},
    "practitioner": {"picked": "day", "skip": "day"},
    "day": {"picked": "part", "more": "day", "none": "menu", "ambiguous": "clarify"},
    # A typed day or time that reads two ways ("4/5", "at 8", "next thursday"): asked once.
    "clarify": {"picked": "day"},
    # Only when the day has more times than a list holds: a free time from each hour (a pick
    # goes straight on) and Morning / Afternoon / Evening rows listing a part's times.
    "part": {"picked": "time", "skip": "time", "slot": "name"},
    "time": {"picked": "name", "more": "time", "gone": "day"},
    "name": {"answered": "intake", "skip": "intake"},
    "intake": {"answered": "intake", "skip": "summary"},
    "summary": {
        "confirm": "booked",
        "moved": "booked",
        "taken": "time",
        "change": "service",
        "cancel": "menu",
        "failed": "menu",
    },
    "booked": {"message": "menu"},
    # A requested day is full: join its waitlist, or the nearest days (waitlist.py).
    "full": {"waitlist": "waitlisted", "other": "day"},
    "waitlisted": {"message": "menu"},
    # My appointments; the action taps (also on reminders) enter "appointment" from anywhere.
    "appointments": {"picked": "appointment", "skip": "appointment", "none": "menu"},
    "appointment": {
        "confirm": "confirmed",
        "reschedule": "service",
        "cancel": "cancel_confirm",
    },
    "cancel_confirm": {"yes": "cancelled", "no": "kept"},
    "confirmed": {"message": "menu"},
    "cancelled": {"message": "menu"},
    "kept": {"message": "menu"},
    # "Wrong number": an apology and the STOP hint, then silence until spoken to.
    "wrong_number": {"message": "menu"},
    # Talk to reception: the bot leaves the chat to staff until they resolve it, it idles
    # out, or the patient types MENU; appointment taps (reminders) are still answered.
    "handoff": {"resolved": "idle", "expired": "menu", "menu": "menu"},
}

# Understood at every prompt, typed or tapped; "back" returns to the previous prompt.
GLOBAL_EVENTS: dict[str, str] = {
    "menu": "menu",
    "greeting": "menu",
    "cancel": "menu",
    "language": "language",
    "reception": "handoff",
    "help": "(the same prompt, with help)",
    "back": "(the previous prompt)",
}

STATES = tuple(TRANSITIONS)


def next_state(state: str, event: str) -> str:
    """Where `event` leads from `state`; KeyError for a transition the table does not have."""
    return TRANSITIONS[state][event]


def describe() -> str:
    """The transition table as readable text, one transition a line."""
    rows = [
        (state, event, target)
        for state, row in TRANSITIONS.items()
        for event, target in row.items()
    ]
    rows += [("(any prompt)", event, target) for event, target in GLOBAL_EVENTS.items()]
    lines = [f"{state:15} --{event}--> {target}" for state, event, target in rows]
    return "\n".join(lines)
