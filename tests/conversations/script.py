"""Runs one scripted conversation (a corpus entry) through the handler layer.

A script is {"name", "setup"?, "steps": [[action, argument, expectations?], ...]}:
actions are what a patient (or reception, or the clock) does; expectations are properties of
what the bot sent in reply to that one step and of the patient afterwards.
"""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from clinic_bot.adapters.whapi import bodies
from clinic_bot.domain import availability, booking
from clinic_bot.domain.patients import get_or_create_patient
from clinic_bot.domain.profile import parse_profile
from clinic_bot.domain.profile.fields import parse_time_range
from clinic_bot.models import Appointment, Patient, StaffAlert
from clinic_bot.models.appointments import ACTIVE_STATUSES
from clinic_bot.reactions.conversation import handoff, words
from clinic_bot.sandbox.gateway import _check_interactive
from clinic_bot.schedules import waitlist

from .chat import Chat, Sent

HERE = Path(__file__).parent
START = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)  # a Tuesday, 09:00 in Berlin
RIVAL = "4915199999999"
FILLER = "4916000"  # the other patients who fill a day


def load_corpus() -> list[dict]:
    """Every scripted conversation in tests/conversations/*.json."""
    scripts = []
    for path in sorted(HERE.glob("*.json")):
        for script in json.loads(path.read_text(encoding="utf-8")):
            scripts.append({**script, "file": path.name})
    return scripts


def assert_fits_whapi(message: Sent) -> None:
    """Every message must pass the limits the gateway enforces."""
    if message.kind in ("buttons", "list"):
        assert _check_interactive(message.body) is None, _check_interactive(message.body)
        assert len(message.text) <= bodies.INTERACTIVE_BODY
    elif message.kind == "text":
        assert 0 < len(message.text) <= bodies.TEXT_BODY


def first_free_slot(session, profile, now, days_ahead: int = 1):
    """The first free slot on or after `days_ahead` clinic-local days from now."""
    today = availability.local_today(now, profile.timezone)
    days = availability.days_with_free_slots(
        session,
        profile,
        service_id=profile.services[0].id,
        practitioner_id=None,
        now=now,
        limit=1,
        after=today + timedelta(days=days_ahead - 1),
    )
    return availability.free_slots(
        session,
        profile,
        service_id=profile.services[0].id,
        practitioner_id=None,
        day=days[0],
        now=now,
    )[0]


class Runner:
    """Plays a script against a runtime whose clock is a FakeClock."""

    def __init__(self, runtime, clock, script: dict, chat: Chat | None = None):
        self.runtime, self.clock, self.script = runtime, clock, script
        self.chat = chat or Chat(runtime)
        self.step: list = []

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        cfg = self.script.get("setup", {})
        if cfg.get("phone"):
            self.chat.phone = cfg["phone"]
        for key, value in cfg.get("profile", {}).items():
            setattr(self.runtime.profile, key, value)  # a profile switch this script needs
        if cfg.get("faq"):  # the clinic's own [[faq]] entries, through the profile schema
            with Path(self.runtime.profile.source).open("rb") as fh:
                data = tomllib.load(fh)
            data["faq"] = [*data.get("faq", []), *cfg["faq"]]
            self.runtime.profile.faq = parse_profile(data).faq
        if cfg.get("hours"):  # every practitioner works these hours, without breaks
            hours = {
                day: [parse_time_range(r) for r in spans] for day, spans in cfg["hours"].items()
            }
            for person in self.runtime.profile.practitioners:
                person.hours, person.breaks = hours, {}
        self.clock.set(START + timedelta(minutes=cfg.get("minutes_after_start", 0)))
        now = self.clock()
        with self.runtime.db.transaction() as s:
            p = get_or_create_patient(s, self.chat.phone, now)
            p.name = cfg.get("name")
            p.language = cfg.get("language")
            p.intake = cfg.get("intake", {})
            today = availability.local_today(now, self.runtime.profile.timezone)
            for days_ahead in cfg.get("full_days", []):
                self._fill(s, today + timedelta(days=days_ahead), now)
            for days_ahead in cfg.get("appointments", []):
                slot = first_free_slot(s, self.runtime.profile, now, days_ahead)
                booking.book(
                    s,
                    self.runtime.profile,
                    patient=p,
                    service_id=self.runtime.profile.services[0].id,
                    practitioner_id=slot.practitioner_id,
                    starts_at=slot.starts_at,
                    now=now,
                )

    def _fill(self, s, day, now) -> None:
        """Other patients take every free time of `day` (a full day to wait for)."""
        profile = self.runtime.profile
        for i in range(200):
            slots = availability.free_slots(
                s,
                profile,
                service_id=profile.services[0].id,
                practitioner_id=None,
                day=day,
                now=now,
            )
            if not slots:
                return
            other = get_or_create_patient(s, f"{FILLER}{i:05d}", now)
            booking.book(
                s,
                profile,
                patient=other,
                service_id=profile.services[0].id,
                practitioner_id=slots[0].practitioner_id,
                starts_at=slots[0].starts_at,
                now=now,
            )

    def _free_one(self) -> None:
        """One of the other patients cancels (their first visit), freeing a time."""
        with self.runtime.db.transaction() as s:
            appt = s.execute(
                select(Appointment)
                .join(Patient, Patient.id == Appointment.patient_id)
                .where(Patient.phone.like(f"{FILLER}%"), Appointment.status.in_(ACTIVE_STATUSES))
                .order_by(Appointment.starts_at)
                .limit(1)
            ).scalar_one()
            booking.cancel(s, appt, now=self.clock())

    # ------------------------------------------------------------------ actions

    def appointments(self, active_only: bool = True) -> list[Appointment]:
        with self.runtime.db.Session() as s:
            stmt = (
                select(Appointment)
                .join(Patient, Appointment.patient_id == Patient.id)
                .where(Patient.phone == self.chat.phone)
                .order_by(Appointment.starts_at)
            )
            if active_only:
                stmt = stmt.where(Appointment.status.in_(ACTIVE_STATUSES))
            return list(s.execute(stmt).scalars())

    def do(self, action: str, arg) -> list[Sent]:
        chat = self.chat
        if action == "text":
            return chat.text(arg)
        if action == "choose":
            return chat.choose(arg)
        if action == "choose_on":  # [which interactive message from the end, choice]
            interactive = [m for m in chat.history if m.kind in ("buttons", "list")]
            return chat.choose(arg[1], interactive[arg[0]])
        if action == "media":
            return chat.media(arg)
        if action == "location":
            return chat.location()
        if action == "other":
            return chat.other(arg)
        if action == "tap_raw":
            return chat.tap_id(arg)
        if action in ("appt_tap", "appt_tap_stale"):
            appt = self.appointments(active_only=False)[0]
            version = appt.version - (1 if action == "appt_tap_stale" else 0)
            return chat.tap_id(f"appt:{appt.id}:{version}:{arg}")
        if action == "advance":
            self.clock.advance(**arg)
            return []
        if action == "staff":
            return self._reception(
                lambda s, p: handoff.staff_message(s, None, p, arg, self.clock())
            )
        if action == "resolve":
            profile = self.runtime.profile
            return self._reception(lambda s, p: handoff.resolve(s, profile, p, self.clock()))
        if action == "rival_takes":
            self._rival_takes()
            return []
        if action in ("free_one", "waitlist_tick"):
            if action == "free_one":
                self._free_one()
            waitlist.tick(self.runtime)
            flush = getattr(self.chat, "flush", None)
            return flush() if flush else self.chat.new_messages()
        raise AssertionError(f"unknown action {action!r}")

    def _reception(self, fn) -> list[Sent]:
        with self.runtime.db.transaction() as s:
            p = s.execute(select(Patient).where(Patient.phone == self.chat.phone)).scalar_one()
            fn(s, p)
        flush = getattr(self.chat, "flush", None)  # over HTTP: the relay sends it first
        return flush() if flush else self.chat.new_messages()

    def _rival_takes(self) -> None:
        """Another patient books the slot on this patient's summary (a lost race)."""
        slot = self.chat.patient().state_data["slot"]
        now = self.clock()
        with self.runtime.db.transaction() as s:
            rival = get_or_create_patient(s, RIVAL, now)
            booking.book(
                s,
                self.runtime.profile,
                patient=rival,
                service_id=self.runtime.profile.services[0].id,
                practitioner_id=slot["p"],
                starts_at=datetime.fromisoformat(slot["at"]),
                now=now,
            )

    # ------------------------------------------------------------------ expectations

    def check(self, sent: list[Sent], expect: dict) -> None:
        where = f"{self.script['name']} step {self.step}"
        for message in sent:
            assert_fits_whapi(message)
        texts = " | ".join(m.text for m in sent)
        interactive = [m for m in sent if m.kind in ("buttons", "list")]
        patient = self.chat.patient()
        for key, want in expect.items():
            if key == "silent":
                assert (not sent) is want, f"{where}: sent {texts!r}"
            elif key == "kinds":
                assert [m.kind for m in sent] == want, f"{where}: {[m.kind for m in sent]}"
            elif key == "last":
                assert sent and sent[-1].kind == want, f"{where}: {[m.kind for m in sent]}"
            elif key == "titles":
                assert interactive and interactive[-1].titles == want, f"{where}: {interactive}"
            elif key == "has_title":
                assert interactive and want in interactive[-1].titles, f"{where}: {interactive}"
            elif key == "rows":
                assert interactive and len(interactive[-1].choices) == want, where
            elif key == "says":
                for part in [want] if isinstance(want, str) else want:
                    assert words.normalize(part) in words.normalize(texts), f"{where}: {texts!r}"
            elif key == "not_says":
                assert words.normalize(want) not in words.normalize(texts), f"{where}: {texts!r}"
            elif key == "state":
                assert patient.state == want, f"{where}: state {patient.state}"
            elif key == "handoff":
                assert (patient.handoff_since is not None) is want, f"{where}: handoff"
            elif key == "language":
                assert patient.language == want, f"{where}: language {patient.language}"
            elif key == "name":
                assert patient.name == want, f"{where}: name {patient.name}"
            elif key == "intake":
                assert patient.intake == want, f"{where}: intake {patient.intake}"
            elif key == "active_appointments":
                assert len(self.appointments()) == want, f"{where}: {self.appointments()}"
            elif key == "appointment_status":
                got = self.appointments(active_only=False)[0].status
                assert got == want, f"{where}: status {got}"
            elif key == "appointment_version":
                got = self.appointments(active_only=False)[0].version
                assert got == want, f"{where}: version {got}"
            elif key == "alerts":
                with self.runtime.db.Session() as s:
                    kinds = [
                        a.kind
                        for a in s.execute(
                            select(StaffAlert).where(StaffAlert.patient_id == patient.id)
                        ).scalars()
                    ]
                assert kinds == want, f"{where}: alerts {kinds}"
            elif key == "visit_reason":
                got = self.appointments(active_only=False)[-1].visit_reason
                assert got == want, f"{where}: visit_reason {got!r}"
            elif key == "document":
                docs = [m for m in sent if m.kind == "document"]
                assert docs and docs[0].body["mime_type"] == "text/calendar", where
            else:
                raise AssertionError(f"{where}: unknown expectation {key!r}")

    def run(self) -> None:
        self.setup()
        for i, step in enumerate(self.script["steps"], 1):
            self.step = [i, *step[:2]]
            action, arg = step[0], step[1] if len(step) > 1 else None
            sent = self.do(action, arg)
            self.check(sent, step[2] if len(step) > 2 else {})
