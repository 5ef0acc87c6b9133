"""Phone numbers and WhatsApp chat ids (CONTRACT §7)."""

from __future__ import annotations

import re

import phonenumbers


class InvalidPhone(ValueError):
    """A value that cannot be a phone number."""


_SUFFIXES = ("@s.whatsapp.net", "@c.us")


def normalize_phone(value: str) -> str:
    """Return E.164 digits (no plus) for '+49…', '49…' or '49…@s.whatsapp.net'; else raise."""
    if not isinstance(value, str):
        raise InvalidPhone("a phone number must be a string")
    raw = value.strip()
    for suffix in _SUFFIXES:
        if raw.endswith(suffix):
            raw = raw[: -len(suffix)]
    if "@" in raw:
        raise InvalidPhone(f"{value!r} is not a person's chat id")
    digits = re.sub(r"[\s().\-]", "", raw)
    if digits.startswith("00"):
        digits = digits[2:]
    digits = digits.removeprefix("+")
    if not digits.isdigit() or not 8 <= len(digits) <= 15:
        raise InvalidPhone(f"{value!r} is not a phone number")
    try:
        parsed = phonenumbers.parse("+" + digits)
    except phonenumbers.NumberParseException:
        raise InvalidPhone(f"{value!r} is not a phone number") from None
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidPhone(f"{value!r} is not a possible phone number")
    return digits


def is_person_chat(chat_id: str) -> bool:
    """True for one-to-one chats; groups (@g.us) and channels (@newsletter) are not patients."""
    return isinstance(chat_id, str) and chat_id.endswith(_SUFFIXES)
