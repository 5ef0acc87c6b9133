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


@dataclass
class IntakeQuestion:
    """A question asked at a patient's first booking."""

    id: str
    kind: str  # buttons | list | text
    prompt: dict[str, str]
    options: list[dict] = field(default_factory=list)  # [{"id", "title": {lang: str}}]


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

    def service(self, service_id: str) -> Service | None:
        return next((s for s in self.services if s.id == service_id), None)

    def practitioner(self, practitioner_id: str) -> Practitioner | None:
        return next((p for p in self.practitioners if p.id == practitioner_id), None)
