"""Calendar (.ics) import: events with a patient become appointments, the rest busy time.

Upserted by (source, UID[#RECURRENCE-ID]). Policy, as operators will ask about it:
- Reading (encodings, line endings, stray components, zones, cut-off files): see `reading`.
  A file that cannot be read is refused whole (`CalendarRefused`) and nothing changes. A bad
  event inside a readable file is one line of the report; the rest imports.
- Who: an event naming a patient phone (ATTENDEE tel:, X-CLINIC-PATIENT-PHONE, a number in the
  text) is an appointment for that patient, created if new (see `who`). An event with no phone
  is a busy block: its time is not offered over WhatsApp and the day view shows it blocked.
  All-day events are busy blocks of their practitioner; without one they are skipped.
- Bounded work: series are expanded from `now` for WINDOW_DAYS only, capped per series and per
  file, with sub-daily rules fast-forwarded to the window and a time budget for the whole file.
  All of this runs in `prepare`, outside any transaction; `apply_plan` is the short write.
- SEQUENCE: a lower one never overwrites a higher one; an equal one may update. STATUS:CANCELLED
  and METHOD:CANCEL cancel; METHOD:CANCEL without RECURRENCE-ID cancels every occurrence.
- Re-import: an event whose content hash is unchanged is not written at all.
- `mode="full"` treats the file as a snapshot: this source's future rows missing from it are
  cancelled, but never after a capped or interrupted read (absence then proves nothing).
- SUMMARY goes to `title` and DESCRIPTION to `notes`, both staff-only (DESIGN rule 7).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import recurring_ical_events
import x_wr_timezone
from icalendar import Calendar, Event
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from clinic_bot.adapters.ical.reading import CalendarRefused, fix_tzids, parse
from clinic_bot.adapters.ical.who import PatientFinder, PatientRef, PractitionerFinder
from clinic_bot.core.db import insert_ignore
from clinic_bot.domain import booking
from clinic_bot.domain.appointment_changes import appointment_changed, appointments_created
from clinic_bot.domain.profile import Profile
from clinic_bot.models import Appointment, Patient
from clinic_bot.models.appointments import ACTIVE_STATUSES
from clinic_bot.models.calendar import BusyBlock, ImportedEvent

__all__ = ["CalendarRefused", "import_calendar", "prepare", "apply_plan"]

WINDOW_DAYS = 90
SERIES_CAP = 500  # occurrences of one series inside the window
FILE_CAP = 20_000  # occurrences of the whole file
TIME_BUDGET = timedelta(seconds=20)  # reading and expanding one file
# The API, the staff page and the CLI refuse larger files (the CLI unless --max-size).
MAX_IMPORT_BYTES = 10 * 1024 * 1024
# A timed event with no length (DTEND == DTSTART, or none) still occupies the practitioner.
DEFAULT_DURATION = timedelta(minutes=15)
MODES = ("merge", "full")
# iTIP methods whose VEVENTs are answers or requests about events, not events to import.
ANSWER_METHODS = ("REPLY", "COUNTER", "DECLINECOUNTER", "REFRESH")
NO_PHONE = "no patient phone: kept as busy time"
SUB_DAILY = {"SECONDLY": 1, "MINUTELY": 60, "HOURLY": 3600}


@dataclass
class Candidate:
    """What the file says about one appointment or busy block (one event or one occurrence)."""

    uid: str
    key: str
    sequence: int
    cancelled: bool
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    title: str | None = None
    notes: str | None = None
    series: bool = False  # an occurrence of a recurring series (window-bound)
    whole_series: bool = False  # METHOD:CANCEL without RECURRENCE-ID: every occurrence
    busy: bool = False  # no patient: a busy block, not an appointment
    patient: PatientRef | None = None
    practitioner_id: str | None = None

    def digest(self) -> str:
        """A hash of everything the import writes from this candidate."""
        parts = (
            "busy" if self.busy else "appt",
            self.starts_at.isoformat() if self.starts_at else "",
            self.ends_at.isoformat() if self.ends_at else "",
            self.title or "",
            self.notes or "",
            "1" if self.cancelled else "0",
            self.patient.phone if self.patient else "",
            (self.patient.name or "") if self.patient else "",
            self.practitioner_id or "",
            str(self.sequence),
        )
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class Report:
    """The CONTRACT §6 import report, with duplicate lines folded."""

    def __init__(self) -> None:
        self.counts = {"created": 0, "updated": 0, "cancelled": 0, "unchanged": 0}
        self.busy = {"created": 0, "updated": 0, "cancelled": 0, "unchanged": 0}
        self.lines: dict[str, list[dict]] = {"skipped": [], "warnings": [], "errors": []}
        self.patients_created: list[dict] = []
        self._seen: set[tuple] = set()

    def add(self, kind: str, uid: str | None, reason: str) -> None:
        """Add a skipped / warnings / errors line once."""
        if (kind, uid, reason) in self._seen:
            return
        self._seen.add((kind, uid, reason))
        self.lines[kind].append({"uid": uid, "reason": reason} if uid else {"reason": reason})

    def warn(self, uid: str | None, reason: str) -> None:
        """Add a warnings line once."""
        self.add("warnings", uid, reason)

    def as_dict(self) -> dict:
        """The report as JSON-ready data."""
        return {
            **self.counts,
            **self.lines,
            "busy_blocks": dict(self.busy),
            "patients_created": list(self.patients_created),
        }


# ------------------------------------------------------------------ small readers


def instant(value: datetime, clinic: ZoneInfo) -> datetime:
    """Aware UTC; floating (naive) times are the clinic's wall clock."""
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=clinic)
    return value.astimezone(UTC)


def is_all_day(value) -> bool:
    """True for a DATE (not a DATE-TIME) value."""
    return isinstance(value, date) and not isinstance(value, datetime)


def day_start(day: date, clinic: ZoneInfo) -> datetime:
    """The instant a clinic-local date begins."""
    return datetime.combine(day, datetime.min.time(), tzinfo=clinic).astimezone(UTC)


def recurrence_suffix(value, clinic: ZoneInfo) -> str:
    """RECURRENCE-ID in UTC as in the external_uid suffix: 20261201T080000Z (dates: 20261201)."""
    if is_all_day(value):
        return value.strftime("%Y%m%d")
    return instant(value, clinic).strftime("%Y%m%dT%H%M%SZ")


def default_source(calendars: list[Calendar]) -> str:
    """The calendar's X-WR-CALNAME, else its PRODID, else "ics" (CONTRACT §4)."""
    for prop in ("X-WR-CALNAME", "PRODID"):
        for cal in calendars:
            value = str(cal.get(prop, "")).strip()
            if value:
                return value[:200]
    return "ics"


def _sequence(event: Event) -> int:
    try:
        return int(str(event.get("SEQUENCE", 0)))
    except ValueError:
        return 0


def _text(event: Event, prop: str) -> str | None:
    value = event.get(prop)
    text = str(value).strip() if value is not None else ""
    return text or None


def _uid(event: Event, report: Report) -> str:
    uid = _text(event, "UID")
    if uid:
        return uid
    # No UID (khal, hand-made files): key on what stays when the event moves, so a moved
    # event is an update. Organizer + summary, plus the original start for an override.
    rid = event.get("RECURRENCE-ID")
    parts = [str(event.get("ORGANIZER", "")), str(event.get("SUMMARY", "")).strip().lower()]
    start = event.get("DTSTART")
    parts.append(str(rid.to_ical()) if rid is not None else "")
    if not parts[0] and not parts[1]:
        parts.append(str(start.to_ical()) if start is not None else "")
    uid = "nouid-" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]
    report.warn(uid, "the event has no UID; it is keyed by its organizer and summary")
    return uid


def plain_error(exc: Exception) -> str:
    """An exception from the calendar libraries, said as a receptionist would understand it."""
    name = type(exc).__name__
    if isinstance(exc, KeyError) and "DTSTART" in str(exc):
        return "it has no start time (DTSTART)"
    if "Rule" in name or "rrule" in str(exc).lower() or "BYDAY" in str(exc):
        return "its repeat rule (RRULE) cannot be read"
    if isinstance(exc, ValueError | TypeError) and "date" in str(exc).lower():
        return "one of its dates cannot be read"
    return "its content cannot be read"


# ------------------------------------------------------------------ from events to candidates


@dataclass
class Plan:
    """What a file would do, worked out without the database: the input of `apply_plan`."""

    report: Report
    source: str
    mode: str
    now: datetime
    window_end: datetime
    candidates: dict[str, Candidate] = field(default_factory=dict)
    failed_uids: set[str] = field(default_factory=set)  # never cancel these in full mode
    methods: set[str] = field(default_factory=set)
    complete: bool = True  # False when a cap or the time budget cut the reading short
    occurrences: int = 0


class Collector:
    """Turns the file's VEVENTs into candidates, keeping the highest SEQUENCE per key."""

    def __init__(self, profile: Profile, plan: Plan, *, practitioner_id, series_cap, file_cap,
                 deadline):  # fmt: skip
        self.clinic = profile.timezone
        self.plan = plan
        self.now = plan.now
        self.window_end = plan.window_end
        self.report = plan.report
        self.patients = PatientFinder(profile)
        self.practitioners = PractitionerFinder(profile)
        self.explicit = practitioner_id
        self.calendar_practitioner: str | None = None
        self.series_cap = series_cap
        self.file_cap = file_cap
        self.deadline = deadline

    def offer(self, cand: Candidate) -> None:
        held = self.plan.candidates.get(cand.key)
        if held is None or cand.sequence >= held.sequence:
            self.plan.candidates[cand.key] = cand

    def out_of_budget(self) -> bool:
        if time.monotonic() <= self.deadline:
            return False
        if self.plan.complete:
            self.report.warn(
                None,
                f"the file took longer than {int(TIME_BUDGET.total_seconds())} s to read; "
                "the import stopped there (split the file or shorten its repeating events)",
            )
        self.plan.complete = False
        return True

    def calendar(self, cal: Calendar) -> None:
        """Collect one VCALENDAR."""
        method = str(cal.get("METHOD", "PUBLISH")).strip().upper() or "PUBLISH"
        self.plan.methods.add(method)
        try:
            # Google's X-WR-TIMEZONE: UTC and floating times are meant in that zone.
            cal = x_wr_timezone.to_standard(cal)
        except Exception:
            self.report.warn(None, "the calendar's X-WR-TIMEZONE could not be applied; ignored")
        self.calendar_practitioner = self.explicit or self.practitioners.for_calendar(
            _text(cal, "X-WR-CALNAME")
        )
        groups: dict[str, list[Event]] = {}
        for event in cal.walk("VEVENT"):
            groups.setdefault(_uid(event, self.report), []).append(event)
        timezones = list(cal.walk("VTIMEZONE"))
        for uid, events in groups.items():
            if not self.plan.complete or self.out_of_budget():
                self.plan.failed_uids.add(uid)
                continue
            try:
                self.series(uid, events, method, timezones)
            except Exception as exc:  # one unreadable event must not stop the others
                self.plan.failed_uids.add(uid)
                self.report.add("errors", uid, f"the event could not be read: {plain_error(exc)}")

    def practitioner_for(self, event: Event) -> str | None:
        return self.explicit or self.practitioners.for_event(event) or self.calendar_practitioner

    def series(self, uid: str, events: list[Event], method: str, timezones: list) -> None:
        """Collect every event with one UID (a master and its overrides)."""
        for event in events:
            for n, (prop, _message) in enumerate(getattr(event, "errors", []) or [], 1):
                self.report.warn(uid, f"{prop} ignored: value {n} of the event cannot be read")
            fix_tzids(event, self.clinic, self.report.warn, uid)
        if method == "CANCEL":
            for event in events:
                self.cancel_stub(uid, event)
            return
        if method in ANSWER_METHODS:
            self.report.add("skipped", uid, f"METHOD:{method} is an answer, not an event")
            return
        timed = []
        for event in events:
            if "DTSTART" not in event:
                self.plan.failed_uids.add(uid)
                self.report.add("errors", uid, "the event has no DTSTART")
            else:
                timed.append(event)
        if not timed:
            return
        master = next((e for e in timed if "RECURRENCE-ID" not in e), timed[0])
        if is_all_day(master["DTSTART"].dt) and self.practitioner_for(master) is None:
            self.report.add("skipped", uid, "all-day event: not an appointment")
            return
        for event in timed:
            # A broken EXDATE or RDATE (already reported) must not stop the whole series.
            broken = {prop for prop, _m in getattr(event, "errors", []) or []}
            for prop in broken & {"EXDATE", "RDATE"}:
                event.pop(prop, None)
        recurring = len(timed) > 1 or any(k in e for e in timed for k in ("RRULE", "RDATE"))
        if recurring:
            self.expand(uid, timed, timezones, master)
        else:
            self.single(uid, master)

    def cancel_stub(self, uid: str, event: Event) -> None:
        """METHOD:CANCEL: cancel by (UID, RECURRENCE-ID); DTSTART is not needed."""
        rid = event.get("RECURRENCE-ID")
        seq = _sequence(event)
        if rid is None:
            self.offer(Candidate(uid, uid, seq, cancelled=True, whole_series=True))
        else:
            key = f"{uid}#{recurrence_suffix(rid.dt, self.clinic)}"
            self.offer(Candidate(uid, key, seq, cancelled=True, series=True))

    def single(self, uid: str, event: Event) -> None:
        self.plan.occurrences += 1
        cand = self.candidate(uid, uid, event, series=False)
        if cand is not None:
            self.offer(cand)

    def fast_forward(self, master: Event) -> timedelta | None:
        """Move a sub-daily series' DTSTART to just before now, keeping its grid and COUNT.

        Expanding FREQ=SECONDLY from a DTSTART years ago would step through every second.
        Returns the rule's step for sub-daily series (None otherwise).
        """
        rule = master.get("RRULE")
        if rule is None or "DTSTART" not in master:
            return None
        freq = (rule.get("FREQ") or [""])[0]
        if freq not in SUB_DAILY:
            return None
        interval = int((rule.get("INTERVAL") or [1])[0] or 1)
        step = timedelta(seconds=SUB_DAILY[freq] * max(interval, 1))
        start = master["DTSTART"].dt
        if not isinstance(start, datetime):
            return step
        now = self.now if start.tzinfo else self.now.astimezone(self.clinic).replace(tzinfo=None)
        behind = now - start
        if behind <= step:
            return step
        steps = behind // step - 1  # occurrences under way or past are never imported anyway
        if "COUNT" in rule:
            left = int(rule["COUNT"][0]) - steps
            # A rule whose last occurrence lies in the past keeps one, still in the past.
            rule["COUNT"] = [max(left, 1)]
            if left < 1:
                steps = int(rule["COUNT"][0]) - 1
        moved = steps * step
        master["DTSTART"].dt = start + moved
        if "DTEND" in master and isinstance(master["DTEND"].dt, datetime):
            master["DTEND"].dt = master["DTEND"].dt + moved
        return step

    def occurrences(self, query, step: timedelta | None):
        """The series' occurrences from now on, in start order, in small windows if sub-daily.

        `after()` expands a day (or more) at a time: 86,400 occurrences for FREQ=SECONDLY.
        """
        if step is None:
            yield from query.after(self.now)
            return
        chunk = max(step * (self.series_cap + 1), timedelta(minutes=1))
        low = self.now
        while low < self.window_end:
            high = min(low + chunk, self.window_end)
            for occ in query.between(low, high):
                start = occ["DTSTART"].dt
                if isinstance(start, datetime) and instant(start, self.clinic) < low:
                    continue  # already given by the previous window
                yield occ
            low = high
        yield from query.between(self.window_end, self.window_end + timedelta(days=1))

    def expand(self, uid: str, events: list[Event], timezones: list, master: Event) -> None:
        """Occurrences of one series within the window, capped; cancelled ones cancel."""
        try:
            step = self.fast_forward(master)
        except Exception as exc:
            self.plan.failed_uids.add(uid)
            self.report.add("errors", uid, f"the series could not be expanded: {plain_error(exc)}")
            return
        mini = Calendar()
        for tz in timezones:
            mini.add_component(tz)
        for event in events:
            mini.add_component(event)
        # RANGE=THISANDFUTURE: every following occurrence carries the override's RECURRENCE-ID,
        # so its own key is its start minus the shift the override made.
        shifts: dict[datetime, timedelta] = {}
        for event in events:
            rid = event.get("RECURRENCE-ID")
            if (
                rid is not None
                and str(rid.params.get("RANGE", "")).upper() == "THISANDFUTURE"
                and not is_all_day(rid.dt)
                and not is_all_day(event["DTSTART"].dt)
            ):
                original = instant(rid.dt, self.clinic)
                shifts[original] = instant(event["DTSTART"].dt, self.clinic) - original
        summary = _text(master, "SUMMARY") or uid
        count = 0
        beyond = False
        try:
            query = recurring_ical_events.of(mini, skip_bad_series=False)
            for occ in self.occurrences(query, step):
                start = occ["DTSTART"].dt
                start_utc = (
                    day_start(start, self.clinic)
                    if is_all_day(start)
                    else instant(start, self.clinic)
                )
                if start_utc >= self.window_end:
                    beyond = True
                    break
                if start_utc <= self.now:
                    continue  # under way already: never imported, never counted
                if count >= self.series_cap:
                    self.plan.failed_uids.add(uid)
                    self.report.warn(
                        uid,
                        f"the series {summary!r} has more than {self.series_cap} occurrences "
                        f"in the next {WINDOW_DAYS} days; only the first {self.series_cap} "
                        "were imported (series capped)",
                    )
                    break
                if self.plan.occurrences >= self.file_cap:
                    self.plan.failed_uids.add(uid)
                    if self.plan.complete:
                        self.report.warn(
                            uid,
                            f"the file has more than {self.file_cap} occurrences; the import "
                            f"stopped at the series {summary!r} (file capped)",
                        )
                    self.plan.complete = False
                    break
                if count % 50 == 0 and self.out_of_budget():
                    self.plan.failed_uids.add(uid)
                    break
                count += 1
                self.plan.occurrences += 1
                rid = occ.get("RECURRENCE-ID")
                rid_value = rid.dt if rid is not None else start
                if shifts and rid is not None and not is_all_day(rid_value):
                    original = instant(rid_value, self.clinic)
                    if original in shifts:
                        rid_value = start_utc - shifts[original]
                key = f"{uid}#{recurrence_suffix(rid_value, self.clinic)}"
                cand = self.candidate(uid, key, occ, series=True)
                if cand is not None:
                    self.offer(cand)
        except Exception as exc:
            self.plan.failed_uids.add(uid)
            self.report.add("errors", uid, f"the series could not be expanded: {plain_error(exc)}")
            return
        if beyond:
            self.report.warn(
                uid,
                f"the series goes on past {self.window_end.date().isoformat()}; "
                f"only the next {WINDOW_DAYS} days were imported",
            )
        if count == 0:
            self.report.add(
                "skipped", uid, f"no occurrence in the next {WINDOW_DAYS} days (the import window)"
            )

    def candidate(self, uid: str, key: str, event: Event, *, series: bool) -> Candidate | None:
        """One candidate from an event or occurrence, or None (reported) when it is not one."""
        start_value = event["DTSTART"].dt
        cancelled = str(event.get("STATUS", "")).strip().upper() == "CANCELLED"
        practitioner = self.practitioner_for(event)
        if is_all_day(start_value):
            if practitioner is None:
                self.report.add("skipped", uid, "all-day event: not an appointment")
                return None
            starts_at = day_start(start_value, self.clinic)
            try:
                end_value = event.end
            except Exception:
                end_value = None
            end_day = end_value if is_all_day(end_value) else None
            if end_day is None or end_day <= start_value:
                end_day = start_value + timedelta(days=1)
            ends_at = day_start(end_day, self.clinic)
            if ends_at <= self.now and not cancelled:
                self.report.add("skipped", uid, "the event is in the past")
                return None
            self.report.add("skipped", uid, "all-day event: kept as busy time")
            return Candidate(
                uid=uid, key=key, sequence=_sequence(event), cancelled=cancelled,
                starts_at=starts_at, ends_at=ends_at, title=_text(event, "SUMMARY"),
                series=series, busy=True, practitioner_id=practitioner,
            )  # fmt: skip
        starts_at = instant(start_value, self.clinic)
        try:
            end_value = event.end
        except Exception:  # neither DTEND nor DURATION, or a broken one
            end_value = None
        ends_at = instant(end_value, self.clinic) if isinstance(end_value, datetime) else None
        if ends_at is None or ends_at <= starts_at:
            ends_at = starts_at + DEFAULT_DURATION
            self.report.warn(
                uid,
                f"the event has no length; {int(DEFAULT_DURATION.total_seconds() // 60)} "
                "minutes assumed",
            )
        if starts_at <= self.now and not cancelled:
            self.report.add("skipped", uid, "the event is in the past")
            return None
        patient = self.patients.find(event)
        busy = patient is None
        if busy:
            if str(event.get("TRANSP", "")).strip().upper() == "TRANSPARENT":
                self.report.add("skipped", uid, "free time (TRANSP:TRANSPARENT): nothing to block")
                return None
            self.report.add("skipped", uid, NO_PHONE)
        return Candidate(
            uid=uid,
            key=key,
            sequence=_sequence(event),
            cancelled=cancelled,
            starts_at=starts_at,
            ends_at=ends_at,
            title=_text(event, "SUMMARY"),
            notes=_text(event, "DESCRIPTION"),
            series=series,
            busy=busy,
            patient=patient,
            practitioner_id=practitioner,
        )


def prepare(
    profile: Profile,
    raw: bytes,
    *,
    now: datetime,
    mode: str = "merge",
    source: str | None = None,
    practitioner_id: str | None = None,
    series_cap: int = SERIES_CAP,
    file_cap: int = FILE_CAP,
    time_budget: timedelta = TIME_BUDGET,
) -> Plan:
    """Read and expand the file without touching the database; raises CalendarRefused."""
    if mode not in MODES:
        raise CalendarRefused(f"mode must be one of {', '.join(MODES)}")
    if practitioner_id is not None and profile.practitioner(practitioner_id) is None:
        raise CalendarRefused(f"unknown practitioner {practitioner_id!r}")
    if not isinstance(raw, bytes | bytearray):
        raise TypeError("the calendar import takes the file's bytes")
    report = Report()
    calendars = parse(bytes(raw), report.warn)
    plan = Plan(
        report=report,
        source=(source or "").strip()[:200] or default_source(calendars),
        mode=mode,
        now=now,
        window_end=now + timedelta(days=WINDOW_DAYS),
    )
    collector = Collector(
        profile,
        plan,
        practitioner_id=practitioner_id,
        series_cap=series_cap,
        file_cap=file_cap,
        deadline=time.monotonic() + time_budget.total_seconds(),
    )
    for cal in calendars:
        collector.calendar(cal)
    if mode == "full" and plan.methods - {"PUBLISH"}:
        methods = ", ".join(sorted(plan.methods - {"PUBLISH"}))
        raise CalendarRefused(
            f"mode full needs a published calendar (a snapshot); this file is METHOD:{methods}"
        )
    if not plan.candidates and not any(c.walk("VEVENT") for c in calendars):
        report.warn(None, "the calendar holds no events")
    return plan


# ------------------------------------------------------------------ applying candidates


@dataclass
class Outcome:
    """What `apply_plan` did: the report, and the new appointments that have a patient."""

    report: dict
    created_with_patient: list[int] = field(default_factory=list)


ROW_COLUMNS = ("id", "uid_key", "uid", "sequence", "appointment_id", "busy_block_id",
               "content_hash", "import_cancelled")  # fmt: skip


@dataclass
class NewAppointment:
    """An appointment just inserted in bulk: its columns, as the "created" hooks read them."""

    id: int
    patient_id: int | None
    service_id: str | None
    practitioner_id: str | None
    starts_at: datetime
    ends_at: datetime
    status: str
    source: str
    version: int
    external_uid: str
    title: str | None
    notes: str | None
    created_at: datetime
    updated_at: datetime


class Applier:
    """Creates, updates and cancels appointments and busy blocks for one source."""

    def __init__(self, session: Session, profile: Profile, plan: Plan):
        self.session = session
        self.profile = profile
        self.plan = plan
        self.now = plan.now
        self.source = plan.source
        self.report = plan.report
        # Plain column rows: a re-import compares 10,000 hashes without building ORM objects;
        # `orm()` loads the one row a change needs.
        cols = [getattr(ImportedEvent, c) for c in ROW_COLUMNS]
        found = session.execute(select(*cols).where(ImportedEvent.source == plan.source))
        self.rows: dict = {r.uid_key: r for r in found}
        self.new_appts: list[Candidate] = []
        self.new_busy: list[Candidate] = []
        self.patient_ids: dict[str, int] = {}
        self.created_with_patient: list[int] = []

    # -- helpers

    def orm(self, row) -> ImportedEvent:
        """The ImportedEvent behind a plain row, to write it (the identity map caches it)."""
        return row if isinstance(row, ImportedEvent) else self.session.get(ImportedEvent, row.id)

    def counts(self, cand_or_row) -> dict:
        busy = (
            cand_or_row.busy
            if isinstance(cand_or_row, Candidate)
            else cand_or_row.busy_block_id is not None
        )
        return self.report.busy if busy else self.report.counts

    def _changeable(self, appt: Appointment) -> bool:
        return appt.status in ACTIVE_STATUSES and appt.starts_at > self.now

    def _cancel(self, row: ImportedEvent) -> bool:
        if row.busy_block_id is not None:
            block = self.session.get(BusyBlock, row.busy_block_id)
            if block is None or block.cancelled or block.ends_at <= self.now:
                return False
            block.cancelled = True
            block.updated_at = self.now
        else:
            appt = self.session.get(Appointment, row.appointment_id)
            if appt is None or not self._changeable(appt):
                return False
            booking.cancel(self.session, appt, now=self.now)
        row.import_cancelled = True
        row.updated_at = self.now
        return True

    def patient_for(self, cand: Candidate) -> int | None:
        return self.patient_ids.get(cand.patient.phone) if cand.patient else None

    # -- the walk

    def ensure_patients(self, cands: list[Candidate]) -> None:
        """Find or create every patient the candidates name, in two statements."""
        refs: dict[str, PatientRef] = {}
        for cand in cands:
            if cand.patient is not None and not cand.cancelled:
                refs.setdefault(cand.patient.phone, cand.patient)
        if not refs:
            return
        phones = list(refs)
        existing = {}
        for chunk in range(0, len(phones), 500):
            part = phones[chunk : chunk + 500]
            for pid, phone, name in self.session.execute(
                select(Patient.id, Patient.phone, Patient.name).where(Patient.phone.in_(part))
            ):
                existing[phone] = (pid, name)
        new = [p for p in phones if p not in existing]
        if new:
            insert_ignore(
                self.session,
                Patient,
                [
                    dict(
                        phone=p,
                        name=refs[p].name,
                        state="idle",
                        state_data={},
                        intake={},
                        prompt_seq=0,
                        opted_out=False,
                        created_at=self.now,
                        version=1,
                    )
                    for p in new
                ],  # fmt: skip
                key="phone",
                returning=None,
            )
            self.report.patients_created = [{"phone": p, "name": refs[p].name} for p in new]
            for chunk in range(0, len(new), 500):
                part = new[chunk : chunk + 500]
                for pid, phone in self.session.execute(
                    select(Patient.id, Patient.phone).where(Patient.phone.in_(part))
                ):
                    existing[phone] = (pid, refs[phone].name)
        self.patient_ids = {phone: pid for phone, (pid, _name) in existing.items()}

    def run(self, progress: Callable[[int, int], None] | None) -> None:
        ordered = sorted(
            self.plan.candidates.values(), key=lambda c: (c.starts_at or self.now, c.key)
        )
        changed = [
            c for c in ordered
            if (row := self.rows.get(c.key)) is None or row.content_hash != c.digest()
            or row.import_cancelled or c.whole_series
        ]  # fmt: skip
        self.ensure_patients(changed)
        total = len(ordered)
        for done, cand in enumerate(ordered, 1):
            self.apply(cand)
            if progress is not None and (done % 500 == 0 or done == total):
                progress(done, total)
        self.create_appointments()
        self.create_busy_blocks()
        if self.plan.mode == "full":
            self.drop_missing()

    def apply(self, cand: Candidate) -> None:
        """Carry out one candidate and count it (creations are batched for the end)."""
        if cand.whole_series:
            self.cancel_series(cand)
            return
        row = self.rows.get(cand.key)
        if row is None:
            if cand.cancelled:
                self.report.add("skipped", cand.uid, "cancelled, and never imported before")
            elif cand.busy:
                self.new_busy.append(cand)
            else:
                self.new_appts.append(cand)
            return
        counts = self.counts(row)
        digest = cand.digest()
        if row.content_hash == digest and not row.import_cancelled:
            counts["unchanged"] += 1  # nothing to write: the re-import fast path
            return
        row = self.orm(row)
        if cand.sequence < row.sequence:
            counts["unchanged"] += 1
            self.report.warn(
                cand.uid,
                f"SEQUENCE {cand.sequence} is older than the imported {row.sequence}; ignored",
            )
            return
        newer = cand.sequence > row.sequence
        row.sequence = cand.sequence
        row.content_hash = digest
        row.updated_at = self.now
        if cand.cancelled:
            counts["cancelled" if self._cancel(row) else "unchanged"] += 1
            return
        was_busy = row.busy_block_id is not None
        if was_busy != cand.busy:
            self.switch_kind(row, cand)
            return
        if cand.busy:
            counts["updated" if self.update_busy(row, cand) else "unchanged"] += 1
            return
        appt = self.session.get(Appointment, row.appointment_id)
        if appt.status == "cancelled":
            # Brought back by the calendar; a cancellation made here holds until the event changes.
            if (row.import_cancelled or newer) and cand.starts_at > self.now:
                self.reactivate(row, appt, cand)
                counts["updated"] += 1
            else:
                counts["unchanged"] += 1
            return
        if not self._changeable(appt):
            counts["unchanged"] += 1
            return
        counts["updated" if self.update(appt, cand) else "unchanged"] += 1

    def switch_kind(self, row: ImportedEvent, cand: Candidate) -> None:
        """The event gained or lost its patient phone: the old row goes, a new one comes."""
        self._cancel(row)
        self.counts(row)["cancelled"] += 1
        if row.busy_block_id is not None:
            row.busy_block_id = None
            self.new_appts.append(cand)
            if cand.patient is not None and cand.patient.phone not in self.patient_ids:
                self.ensure_patients([cand])
        else:
            row.appointment_id = None
            self.new_busy.append(cand)
        self.session.delete(row)
        self.session.flush()
        del self.rows[cand.key]

    def update_busy(self, row: ImportedEvent, cand: Candidate) -> bool:
        block = self.session.get(BusyBlock, row.busy_block_id)
        wanted = (cand.starts_at, cand.ends_at, cand.title or "", cand.practitioner_id, False)
        have = (block.starts_at, block.ends_at, block.summary, block.practitioner_id,
                block.cancelled)  # fmt: skip
        if wanted == have:
            return False
        block.starts_at, block.ends_at, block.summary, block.practitioner_id = wanted[:4]
        block.cancelled = False
        block.updated_at = self.now
        row.import_cancelled = False
        return True

    def update(self, appt: Appointment, cand: Candidate) -> bool:
        """Bring the appointment in line with the event; True when anything changed."""
        changed = False
        pid = cand.practitioner_id
        if pid is not None and appt.practitioner_id != pid:
            booking.lock_practitioner(self.session, pid)
            appt.practitioner_id = pid
            changed = True
        patient_id = self.patient_for(cand)
        if patient_id is not None and appt.patient_id != patient_id:
            appt.patient_id = patient_id
            changed = True
        if (appt.title, appt.notes) != (cand.title, cand.notes):
            appt.title, appt.notes = cand.title, cand.notes
            changed = True
        if (appt.starts_at, appt.ends_at) != (cand.starts_at, cand.ends_at):
            booking.lock_appointment(self.session, appt)
            appt.starts_at, appt.ends_at = cand.starts_at, cand.ends_at
            appt.version += 1
            appt.updated_at = self.now
            appointment_changed(self.session, appt, self.now, "moved")
            return True
        if changed:
            appt.updated_at = self.now
            # A patient found since the last import: the reminders can be planned now.
            appointment_changed(self.session, appt, self.now, "created")
        return changed

    def reactivate(self, row: ImportedEvent, appt: Appointment, cand: Candidate) -> None:
        booking.lock_appointment(self.session, appt)
        appt.status = "booked"
        appt.cancelled_at = None
        appt.starts_at, appt.ends_at = cand.starts_at, cand.ends_at
        appt.title, appt.notes = cand.title, cand.notes
        appt.version += 1
        appt.updated_at = self.now
        row.import_cancelled = False
        appointment_changed(self.session, appt, self.now, "moved")

    def cancel_series(self, cand: Candidate) -> None:
        rows = [r for r in self.rows.values() if r.uid == cand.uid]
        if not rows:
            self.report.add("skipped", cand.uid, "cancelled, and never imported before")
            return
        for row in map(self.orm, rows):
            if cand.sequence < row.sequence:
                self.counts(row)["unchanged"] += 1
                continue
            row.sequence = cand.sequence
            row.content_hash = None
            self.counts(row)["cancelled" if self._cancel(row) else "unchanged"] += 1

    def _event_rows(self, cands: list[Candidate], ids: list[int], column: str) -> None:
        rows = [
            dict(source=self.source, uid_key=c.key, uid=c.uid, sequence=c.sequence,
                 appointment_id=None, busy_block_id=None, content_hash=c.digest(),
                 import_cancelled=False, created_at=self.now, updated_at=self.now)
            | {column: ident}
            for c, ident in zip(cands, ids, strict=True)
        ]  # fmt: skip
        if rows:
            self.session.execute(insert(ImportedEvent), rows)

    def create_appointments(self) -> None:
        """Insert the new appointments in batches, then plan their reminders (the hooks)."""
        cands = self.new_appts
        if not cands:
            return
        for pid in sorted({c.practitioner_id for c in cands if c.practitioner_id}):
            booking.lock_practitioner(self.session, pid)
        rows = [
            dict(
                patient_id=self.patient_for(c), service_id=None,
                practitioner_id=c.practitioner_id, starts_at=c.starts_at, ends_at=c.ends_at,
                status="booked", source="ics", version=1, external_uid=c.key, title=c.title,
                notes=c.notes, created_at=self.now, updated_at=self.now,
            )
            for c in cands
        ]  # fmt: skip
        # Core INSERT … RETURNING in batches: the ORM's unit of work would cost more than the
        # whole write for 10,000 rows. The hooks get light rows with the same attributes.
        stmt = insert(Appointment).returning(Appointment.id, sort_by_parameter_order=True)
        ids = list(self.session.execute(stmt, rows).scalars())
        appts = [NewAppointment(id=i, **row) for i, row in zip(ids, rows, strict=True)]
        self._event_rows(cands, ids, "appointment_id")
        appointments_created(self.session, appts, self.now)  # reminders, in one batch
        self.created_with_patient += [a.id for a in appts if a.patient_id is not None]
        self.report.counts["created"] += len(appts)
        unassigned = sum(1 for a in appts if a.practitioner_id is None)
        if unassigned:
            self.report.warn(
                None,
                f"{unassigned} appointment(s) have no practitioner: choose one when importing, "
                "or name the calendar in the profile ([[practitioners]] calendar_names)",
            )

    def create_busy_blocks(self) -> None:
        cands = self.new_busy
        if not cands:
            return
        blocks = [
            BusyBlock(
                practitioner_id=c.practitioner_id, starts_at=c.starts_at, ends_at=c.ends_at,
                summary=c.title or "", source=f"ics:{self.source}"[:200], external_uid=c.key,
                cancelled=False, created_at=self.now, updated_at=self.now,
            )
            for c in cands
        ]  # fmt: skip
        self.session.add_all(blocks)
        self.session.flush()
        self._event_rows(cands, [b.id for b in blocks], "busy_block_id")
        self.report.busy["created"] += len(blocks)
        clinic_wide = sum(1 for c in cands if c.practitioner_id is None)
        if clinic_wide:
            self.report.warn(
                None,
                f"{clinic_wide} busy block(s) have no practitioner, so they block the whole "
                "clinic: choose a practitioner when importing to block only theirs",
            )

    def drop_missing(self) -> None:
        """Full mode: cancel this source's future rows that the snapshot no longer has."""
        if not self.plan.complete:
            self.report.warn(
                None, "full mode: nothing was cancelled, because the file was not read whole"
            )
            return
        seen = set(self.plan.candidates)
        keep = self.plan.failed_uids | {
            c.uid for c in self.plan.candidates.values() if c.whole_series or c.starts_at is None
        }
        for key, row in list(self.rows.items()):
            if key in seen or row.uid in keep or row.import_cancelled:
                continue
            if row.busy_block_id is not None:
                target = self.session.get(BusyBlock, row.busy_block_id)
            else:
                target = self.session.get(Appointment, row.appointment_id)
            # A series is only known within the window, so beyond it absence means nothing.
            if target is None or ("#" in key and target.starts_at > self.plan.window_end):
                continue
            if self._cancel(self.orm(row)):
                self.counts(row)["cancelled"] += 1


def apply_plan(
    session: Session,
    profile: Profile,
    plan: Plan,
    *,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Outcome:
    """Write what the plan says, inside the caller's (short) transaction.

    `dry_run` does all the work inside a savepoint and rolls it back, so its counts are exact.
    """
    savepoint = session.begin_nested() if dry_run else None
    try:
        applier = Applier(session, profile, plan)
        applier.run(progress)
        session.flush()
    finally:
        if savepoint is not None:
            savepoint.rollback()
    created = [] if dry_run else applier.created_with_patient
    return Outcome(plan.report.as_dict(), created)


def import_calendar(
    session: Session,
    profile: Profile,
    raw: bytes,
    *,
    now: datetime,
    mode: str = "merge",
    source: str | None = None,
    practitioner_id: str | None = None,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Import an .ics file (prepare + apply in the given session); returns the report.

    Raises CalendarRefused (nothing changed) for a file that cannot be imported at all.
    Callers that hold a write transaction should prefer `prepare` outside it, then `apply_plan`.
    """
    plan = prepare(profile, raw, now=now, mode=mode, source=source, practitioner_id=practitioner_id)
    return apply_plan(session, profile, plan, dry_run=dry_run, progress=progress).report
