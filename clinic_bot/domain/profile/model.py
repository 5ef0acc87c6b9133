"""The validated clinic profile as plain objects: what the rest of the app reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo


@dataclass
class Service:
    """Something patients can book."""

    id: str
    name: str
    duration: timedelta


@dataclass
class Practitioner:
    """Someone who sees patients, with weekly hours and breaks (clinic-local)."""

    id: str
    name: str
    services: list[str]
    hours: dict[str, list[tuple[time, time]]]
    breaks: dict[str, list[tuple[time, time]]] = field(default_factory=dict)
    email: str = ""  # how calendar files name them (ORGANIZER / ATTENDEE)
    calendar_names: list[str] = field(default_factory=list)  # their calendars' X-WR-CALNAME


@dataclass
class IntakeQuestion:
    """A question asked at a patient's first booking."""

    id: str
    kind: str  # buttons | list | text
    prompt: dict[str, str]
    options: list[dict] = field(default_factory=list)  # [{"id", "title": {lang: str}}]


@dataclass
class Faq:
    """A question patients ask: trigger phrases and the clinic's answer, per language."""

    id: str
    triggers: dict[str, list[str]]
    answer: dict[str, str]


@dataclass
class Profile:
    """A validated clinic profile; times are clinic-local, durations timedeltas."""

    name: str
    timezone: ZoneInfo
    language: str
    phone: str
    address: str
    reminder_offsets: list[tuple[str, timedelta]]
    noshow_followup_after: timedelta
    followup_on_delivered: bool
    late_send_min_before: timedelta
    thank_you_after_visit: bool
    broadcast_min_interval: timedelta
    broadcast_jitter: timedelta
    broadcast_daily_cap: int
    quiet_hours: tuple[time, time] | None
    slot_step: timedelta
    horizon_days: int
    min_notice: timedelta
    idle_reset: timedelta
    handoff_idle: timedelta
    notify_on_staff_booking: bool
    closures: list[tuple[date, date]]
    services: list[Service]
    practitioners: list[Practitioner]
    intake: list[IntakeQuestion]
    texts: dict[str, dict[str, str]]
    source: Path | None = None
    notify_on_import: bool = False  # tell patients about appointments a calendar import made
    phone_region: str = ""  # region of national numbers in imported calendars
    sign_staff_replies: bool = True
    retention_keep: timedelta = timedelta(days=180)
    intake_per_visit: bool = False
    date_order: str | None = None  # DMY | MDY | YMD; None = from the clinic's phone
    waitlist_batch: int = 1
    waitlist_offer_ttl: timedelta = timedelta(hours=1)
    faq: list[Faq] = field(default_factory=list)

    @property
    def languages(self) -> list[str]:
        return list(self.texts)

    def text(self, key: str, lang: str | None = None, **values) -> str:
        """A patient-facing text in `lang` (falling back to the clinic language), formatted."""
        table = self.texts.get(lang or self.language) or self.texts[self.language]
        template = table.get(key) or self.texts[self.language].get(key)
        if template is None:
            raise KeyError(f"no text {key!r} in the clinic profile")
        values.setdefault("clinic", self.name)
        return template.format(**values) if values else template

    def faq_triggers(self, faq_id: str, lang: str) -> list[str]:
        """An FAQ entry's phrases in `lang`, else in the clinic language (as texts fall back)."""
        entry = next((f for f in self.faq if f.id == faq_id), None)
        if entry is None:
            return []
        return entry.triggers.get(lang) or entry.triggers.get(self.language) or []

    def faq_answer(self, faq_id: str, lang: str, **values) -> str:
        """An FAQ entry's answer in `lang` (else the clinic language), placeholders filled."""
        entry = next((f for f in self.faq if f.id == faq_id), None)
        if entry is None:
            raise KeyError(f"no FAQ {faq_id!r} in the clinic profile")
        template = (
            entry.answer.get(lang)
            or entry.answer.get(self.language)
            or next(iter(entry.answer.values()))
        )
        values.setdefault("clinic", self.name)
        return template.format(**values)

    def service(self, service_id: str) -> Service | None:
        return next((s for s in self.services if s.id == service_id), None)

    def practitioner(self, practitioner_id: str) -> Practitioner | None:
        return next((p for p in self.practitioners if p.id == practitioner_id), None)
