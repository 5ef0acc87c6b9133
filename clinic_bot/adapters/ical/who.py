"""Who an imported event is for (the patient) and with (the practitioner).

Patient, in this order: an ATTENDEE with a `tel:` URI; X-CLINIC-PATIENT-PHONE (our own export
writes it); a phone number written in SUMMARY, LOCATION or DESCRIPTION (national numbers read
in the clinic's region). The name is the attendee's CN, else the SUMMARY without the phone and
the service words.

Practitioner: the one the receptionist chose; else an ORGANIZER or ATTENDEE whose email or CN
matches a practitioner (id, name, `email`, `calendar_names`); else a CATEGORIES value; else the
calendar's name matched against `[[practitioners]] calendar_names`; else unassigned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers

from clinic_bot.domain.profile import Profile

# Words that say what the visit is, not who it is for ("Check-up Ana Example" -> "Ana Example").
VISIT_WORDS = {
    "appointment", "appt", "visit", "consultation", "follow-up", "followup", "check-up",
    "checkup", "termin", "cita", "consulta", "control", "revisión", "revision", "with", "for",
    "con", "para", "mit", "für", "new", "patient", "tel", "phone", "mobile", "whatsapp",
}  # fmt: skip
_DIGITS = re.compile(r"\+?\d[\d\s()./-]{6,}\d")


@dataclass(frozen=True)
class PatientRef:
    """A patient found in an event: E.164 digits (no plus) and a name, if any."""

    phone: str
    name: str | None


def clinic_region(profile: Profile) -> str | None:
    """The region national numbers are read in: `phone_region`, else the clinic phone's."""
    region = profile.phone_region
    if region:
        return str(region).upper()
    try:
        parsed = phonenumbers.parse(profile.phone or "", None)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.region_code_for_number(parsed)


def _e164(value: str, region: str | None) -> str | None:
    value = value.strip()
    if not value:
        return None
    if value.startswith("00"):
        value = "+" + value[2:]
    try:
        parsed = phonenumbers.parse(value, None if value.startswith("+") else region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)[1:]


def _values(event, prop: str) -> list:
    value = event.get(prop)
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _param(value, name: str) -> str | None:
    params = getattr(value, "params", None) or {}
    got = params.get(name)
    return str(got).strip() if got else None


class PatientFinder:
    """Finds the patient of an event; the result is cached per distinct event text."""

    def __init__(self, profile: Profile):
        self.region = clinic_region(profile)
        words = set(VISIT_WORDS)
        for service in profile.services:
            words.add(service.id.lower())
            words.update(w.lower() for w in re.split(r"[\s–—-]+", service.name) if w)
        self.service_words = words
        self._cache: dict[tuple, PatientRef | None] = {}

    def find(self, event) -> PatientRef | None:
        """The event's patient, or None when it names no phone number."""
        attendees = tuple(str(a) for a in _values(event, "ATTENDEE"))
        texts = tuple(str(event.get(p, "")) for p in ("SUMMARY", "LOCATION", "DESCRIPTION"))
        own = str(event.get("X-CLINIC-PATIENT-PHONE", ""))
        key = (attendees, own, texts)
        if key not in self._cache:
            self._cache[key] = self._find(event, own, texts)
        return self._cache[key]

    def _find(self, event, own: str, texts: tuple[str, ...]) -> PatientRef | None:
        summary = texts[0]
        for attendee in _values(event, "ATTENDEE"):
            uri = str(attendee).strip()
            if uri.lower().startswith("tel:"):
                phone = _e164(uri[4:], self.region)
                if phone:
                    return PatientRef(phone, _param(attendee, "CN") or self.name_from(summary))
        phone = _e164(own, self.region) if own else None
        if phone:
            cn = str(event.get("X-CLINIC-PATIENT-NAME", "")).strip() or None
            return PatientRef(phone, cn or self.name_from(summary))
        for text in texts:
            if not _DIGITS.search(text):
                continue  # the matcher is slow; most texts hold no number at all
            for match in phonenumbers.PhoneNumberMatcher(text, self.region or "ZZ"):
                digits = phonenumbers.format_number(
                    match.number, phonenumbers.PhoneNumberFormat.E164
                )[1:]
                return PatientRef(digits, self.name_from(summary.replace(match.raw_string, " ")))
        return None

    def name_from(self, summary: str) -> str | None:
        """SUMMARY minus phone numbers, service words and punctuation; None when nothing is left."""
        text = _DIGITS.sub(" ", summary)
        words = [w for w in re.split(r"[\s,;:/|()\[\]–—-]+", text) if w]
        kept = [w for w in words if w.lower().strip(".") not in self.service_words]
        name = " ".join(kept).strip(" .")
        return name[:200] or None


class PractitionerFinder:
    """Matches ORGANIZER / ATTENDEE / CATEGORIES / calendar name against the profile."""

    def __init__(self, profile: Profile):
        self.by_name: dict[str, str] = {}
        self.by_calendar: dict[str, str] = {}
        for p in profile.practitioners:
            for label in (p.id, p.name, p.email):
                if label:
                    self.by_name[str(label).strip().lower()] = p.id
            for label in p.calendar_names:
                self.by_calendar[str(label).strip().lower()] = p.id
                self.by_name.setdefault(str(label).strip().lower(), p.id)

    def for_calendar(self, calendar_name: str | None) -> str | None:
        """The practitioner whose calendar this is, from X-WR-CALNAME."""
        if not calendar_name:
            return None
        key = calendar_name.strip().lower()
        return self.by_calendar.get(key) or self.by_name.get(key)

    def for_event(self, event) -> str | None:
        """The practitioner the event names, or None."""
        for prop in ("ORGANIZER", "ATTENDEE"):
            for person in _values(event, prop):
                uri = str(person).strip()
                address = uri[7:] if uri.lower().startswith("mailto:") else uri
                for label in (address, _param(person, "CN")):
                    pid = self.by_name.get((label or "").strip().lower())
                    if pid:
                        return pid
        for value in _values(event, "CATEGORIES"):
            cats = getattr(value, "cats", None) or str(value).split(",")
            for cat in cats:
                pid = self.by_name.get(str(cat).strip().lower())
                if pid:
                    return pid
        return None
