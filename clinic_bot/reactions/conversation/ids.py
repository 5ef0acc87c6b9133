"""Tap ids: what a button or list row means and which prompt it belongs to.

Three shapes, all parsed as untrusted input (a tap id arrives from the patient's phone):
- `c:<prompt_seq>:<value>` a choice on one prompt; only valid while that prompt is current;
- `appt:<appointment id>:<version>:<action>` an action on one appointment (also sent by the
  reminders), valid from any state while the appointment still has that version;
- `cmd:<command>` a global command (menu, book, appointments, reception), safe from any
  prompt; other areas' messages may carry them (a post-visit "Book again" button).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

APPT_ACTIONS = ("open", "confirm", "reschedule", "cancel")
COMMANDS = ("menu", "book", "appointments", "reception")
MAX_ID = 200  # far above anything we send; longer ids are refused unread

_CHOICE = re.compile(r"^c:(\d{1,9}):(.{1,150})$", re.S)
_APPT = re.compile(r"^appt:(\d{1,12}):(\d{1,9}):([a-z]{1,20})$")
_WAITLIST = re.compile(r"^wl:(\d{1,12}):(yes|no)$")
_CMD = re.compile(r"^(?:cmd|menu):([a-z]{1,20})$")  # menu:<x> = the first menu's ids


@dataclass(frozen=True)
class ChoiceTap:
    seq: int
    value: str


@dataclass(frozen=True)
class ApptTap:
    appointment_id: int
    version: int
    action: str


@dataclass(frozen=True)
class WaitlistTap:
    offer_id: int
    action: str  # yes | no


@dataclass(frozen=True)
class CommandTap:
    command: str


def choice_id(seq: int, value: str) -> str:
    """The id of one option on prompt number `seq`."""
    return f"c:{seq}:{value}"


def appt_id(appointment_id: int, version: int, action: str) -> str:
    """The id of an action button on one appointment (shared with the reminders)."""
    if action not in APPT_ACTIONS:
        raise ValueError(f"unknown appointment action {action!r}")
    return f"appt:{appointment_id}:{version}:{action}"


def waitlist_id(offer_id: int, action: str) -> str:
    """The id of Book it / No thanks on a waitlist offer (valid until the offer closes)."""
    if action not in ("yes", "no"):
        raise ValueError(f"unknown waitlist action {action!r}")
    return f"wl:{offer_id}:{action}"


def command_id(command: str) -> str:
    """The id of a global command button."""
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}")
    return f"cmd:{command}"


def parse(raw: str | None) -> ChoiceTap | ApptTap | WaitlistTap | CommandTap | None:
    """What a tap id means, or None for anything we never sent."""
    if not raw or len(raw) > MAX_ID:
        return None
    if m := _CHOICE.match(raw):
        return ChoiceTap(int(m.group(1)), m.group(2))
    if (m := _APPT.match(raw)) and m.group(3) in APPT_ACTIONS:
        return ApptTap(int(m.group(1)), int(m.group(2)), m.group(3))
    if m := _WAITLIST.match(raw):
        return WaitlistTap(int(m.group(1)), m.group(2))
    if (m := _CMD.match(raw)) and m.group(1) in COMMANDS:
        return CommandTap(m.group(1))
    return None
