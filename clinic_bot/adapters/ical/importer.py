"""Calendar (.ics) import: events become appointments, upserted by (source, UID[#RECURRENCE-ID]).

Policy, as operators will ask about it:
- A file that cannot be read as iCalendar is refused whole (`CalendarRefused`) and nothing
  changes. A bad event inside a readable file is one line of the report; the rest imports.
- Bytes are read as UTF-8 (a BOM is fine); failing that as Windows-1252, with a warning, so
  "Müller" never turns into "M�ller".
- Recurring series are expanded only from `now` to `now + WINDOW_DAYS` (90 days): endless
  series would otherwise give thousands of rows. A series that goes on past the window gets a
  warning; importing again later moves the window on. Single events import at any future time.
  Events that started before `now` are skipped: booking never creates past appointments.
- All-day events (VALUE=DATE: holidays, birthdays, out-of-office) are not visits: they are
  skipped with a reason and never get timed reminders. Clinic closures belong in the profile.
- Floating times are clinic-local. A TZID the library cannot resolve is tried as a Windows name
  without a trailing " 1"-style suffix, else read in the clinic's zone; both give a warning.
- SEQUENCE: a lower one never overwrites a higher one; an equal one may update (feeds edit events
  without bumping it). STATUS:CANCELLED and METHOD:CANCEL cancel; METHOD:CANCEL without a
  RECURRENCE-ID cancels every imported occurrence of the UID.
- `mode="full"` treats the file as a snapshot of the source: future appointments of that
  source missing from it (series occurrences: within the window) are cancelled.
- SUMMARY goes to `title` and DESCRIPTION to `notes`, both staff-only (DESIGN rule 7).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import recurring_ical_events
import x_wr_timezone
from icalendar import Calendar, Event
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON
from sqlalchemy import select
from sqlalchemy.orm import Session

from clinic_bot.domain import booking
from clinic_bot.domain.appointment_changes import appointment_changed
from clinic_bot.domain.profile import Profile
from clinic_bot.models import Appointment
from clinic_bot.models.appointments import ACTIVE_STATUSES
from clinic_bot.models.calendar import ImportedEvent

WINDOW_DAYS = 90
# A timed event with no length (DTEND == DTSTART, or none) still occupies the practitioner.
DEFAULT_DURATION = timedelta(minutes=15)
MODES = ("merge", "full")
# iTIP methods whose VEVENTs are answers or requests about events, not events to import.
ANSWER_METHODS = ("REPLY", "COUNTER", "DECLINECOUNTER", "REFRESH")


class CalendarRefused(Exception):
    """The whole file is refused; nothing was changed."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Candidate:
    """What the file says about one appointment-to-be (one event or one occurrence)."""

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


class Report:
    """The CONTRACT §6 import report, with duplicate lines folded."""

    def __init__(self) -> None:
        self.counts = {"created": 0, "updated": 0, "cancelled": 0, "unchanged": 0}
        self.lines: dict[str, list[dict]] = {"skipped": [], "warnings": [], "errors": []}
        self._seen: set[tuple] = set()

    def add(self, kind: str, uid: str | None, reason: str) -> None:
        """Add a skipped / warnings / errors line once."""
        if (kind, uid, reason) in self._seen:
            return
        self._seen.add((kind, uid, reason))
        self.lines[kind].append({"uid": uid, "reason": reason} if uid else {"reason": reason})

    def as_dict(self) -> dict:
        """The report as JSON-ready data."""
        return {**self.counts, **self.lines}


# ------------------------------------------------------------------ reading the file


def decode(raw: bytes, report: Report) -> bytes:
    """UTF-8 bytes of the file: UTF-8 (BOM allowed), else Windows-1252 with a warning."""
    if not raw.strip():
        raise CalendarRefused("the file is empty")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = raw.decode("cp1252")
        except UnicodeDecodeError:
            raise CalendarRefused("the file is neither UTF-8 nor Windows-1252 text") from None
        report.add("warnings", None, "the file is not UTF-8; it was read as Windows-1252 (cp1252)")
    if "BEGIN:" not in text.upper():
        raise CalendarRefused("not an iCalendar file: no BEGIN:VCALENDAR")
    return text.encode("utf-8")


def parse(raw: bytes, report: Report) -> list[Calendar]:
    """The file's calendars; bare VEVENTs are wrapped in one. Refuses what cannot be read."""
    data = decode(raw, report)
    try:
        # Always bytes: a one-line str would be read as a file path by from_ical.
        components = Calendar.from_ical(data, multiple=True)
    except Exception as exc:  # the parser raises several types on garbage; all mean "refuse"
        raise CalendarRefused(f"not a valid iCalendar file: {exc}") from None
    calendars = [c for c in components if c.name == "VCALENDAR"]
    bare = [c for c in components if c.name == "VEVENT"]
    if bare:
        wrapper = Calendar()
        for event in bare:
            wrapper.add_component(event)
        calendars.append(wrapper)
        report.add("warnings", None, "events without a VCALENDAR around them were read as one")
    if not calendars:
        raise CalendarRefused("not an iCalendar file: no complete VCALENDAR or VEVENT in it")
    return calendars


def default_source(calendars: list[Calendar]) -> str:
    """The calendar's X-WR-CALNAME, else its PRODID, else "ics" (CONTRACT §4)."""
    for prop in ("X-WR-CALNAME", "PRODID"):
        for cal in calendars:
            value = str(cal.get(prop, "")).strip()
            if value:
                return value[:200]
    return "ics"


# ------------------------------------------------------------------ times and zones


def resolve_tzid(tzid: str, clinic: ZoneInfo) -> tuple[ZoneInfo, str]:
    """A zone for a TZID the parser left unresolved, and the warning that says what we did."""
    name = tzid.strip().strip('"')
    # Outlook exports "Eastern Standard Time 1": not in CLDR, so drop the counter and retry.
    base = re.sub(r"\s+\d+$", "", name)
    for candidate in (name, base):
        olson = WINDOWS_TO_OLSON.get(candidate, candidate)
        try:
            return ZoneInfo(olson), f"timezone {tzid!r} is not standard; read as {olson}"
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return clinic, f"timezone {tzid!r} is unknown; read in the clinic's zone ({clinic.key})"


def fix_tzids(event: Event, clinic: ZoneInfo, report: Report, uid: str) -> None:
    """Give naive times that carry an unresolved TZID a zone, before the series is expanded."""
    for prop in ("DTSTART", "DTEND", "RECURRENCE-ID"):
        value = event.get(prop)
        dt = getattr(value, "dt", None)
        if isinstance(dt, datetime) and dt.tzinfo is None and "TZID" in value.params:
            zone, warning = resolve_tzid(str(value.params["TZID"]), clinic)
            value.dt = dt.replace(tzinfo=zone)
            report.add("warnings", uid, warning)


def instant(value: datetime, clinic: ZoneInfo) -> datetime:
    """Aware UTC; floating (naive) times are the clinic's wall clock."""
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=clinic)
    return value.astimezone(UTC)


def is_all_day(value) -> bool:
    return isinstance(value, date) and not isinstance(value, datetime)


def recurrence_suffix(value, clinic: ZoneInfo) -> str:
    """RECURRENCE-ID in UTC as in the external_uid suffix: 20261201T080000Z (dates: 20261201)."""
    if is_all_day(value):
        return value.strftime("%Y%m%d")
    return instant(value, clinic).strftime("%Y%m%dT%H%M%SZ")


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
    # No UID (khal, hand-made files): key on the content, minus the stamp that changes per export.
    body = b"\n".join(
        line for line in event.to_ical().splitlines() if not line.startswith(b"DTSTAMP")
    )
    uid = "nouid-" + hashlib.sha256(body).hexdigest()[:24]
    report.add("warnings", uid, "the event has no UID; it is keyed by its content")
    return uid


# ------------------------------------------------------------------ from events to candidates


class Collector:
    """Turns the file's VEVENTs into candidates, keeping the highest SEQUENCE per key."""

    def __init__(self, profile: Profile, now: datetime, report: Report):
        self.clinic = profile.timezone
        self.now = now
        self.window_end = now + timedelta(days=WINDOW_DAYS)
        self.report = report
        self.candidates: dict[str, Candidate] = {}
        self.failed_uids: set[str] = set()  # never cancel what we could not read (full mode)
        self.methods: set[str] = set()

    def offer(self, cand: Candidate) -> None:
        held = self.candidates.get(cand.key)
        if held is None or cand.sequence >= held.sequence:
            self.candidates[cand.key] = cand

    def calendar(self, cal: Calendar) -> None:
        """Collect one VCALENDAR."""
        method = str(cal.get("METHOD", "PUBLISH")).strip().upper() or "PUBLISH"
        self.methods.add(method)
        try:
            # Google's X-WR-TIMEZONE: UTC and floating times are meant in that zone.
            cal = x_wr_timezone.to_standard(cal)
        except Exception as exc:
            self.report.add("warnings", None, f"X-WR-TIMEZONE ignored: {exc}")
        groups: dict[str, list[Event]] = {}
        for event in cal.walk("VEVENT"):
            groups.setdefault(_uid(event, self.report), []).append(event)
        timezones = list(cal.walk("VTIMEZONE"))
        for uid, events in groups.items():
            try:
                self.series(uid, events, method, timezones)
            except Exception as exc:  # one unreadable event must not stop the others
                self.failed_uids.add(uid)
                self.report.add("errors", uid, f"the event could not be read: {exc}")

    def series(self, uid: str, events: list[Event], method: str, timezones: list) -> None:
        """Collect every event with one UID (a master and its overrides)."""
        for event in events:
            for prop, message in getattr(event, "errors", []) or []:
                self.report.add("warnings", uid, f"{prop} ignored: {message}")
            fix_tzids(event, self.clinic, self.report, uid)
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
                self.failed_uids.add(uid)
                self.report.add("errors", uid, "the event has no DTSTART")
            else:
                timed.append(event)
        if not timed:
            return
        master = next((e for e in timed if "RECURRENCE-ID" not in e), timed[0])
        if is_all_day(master["DTSTART"].dt):
            self.report.add("skipped", uid, "all-day event: not an appointment")
            return
        recurring = len(timed) > 1 or any(k in e for e in timed for k in ("RRULE", "RDATE"))
        if recurring:
            self.expand(uid, timed, timezones)
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
        cand = self.candidate(uid, uid, event, series=False)
        if cand is not None:
            self.offer(cand)

    def expand(self, uid: str, events: list[Event], timezones: list) -> None:
        """Occurrences of one series within the window; cancelled ones become cancellations."""
        mini = Calendar()
        for tz in timezones:
            mini.add_component(tz)
        for event in events:
            mini.add_component(event)
        try:
            # skip_bad_series=True would drop a bad series silently: we report it instead.
            query = recurring_ical_events.of(mini, skip_bad_series=False)
            occurrences = list(query.between(self.now, self.window_end))
            beyond = next(iter(query.after(self.window_end)), None)
        except Exception as exc:
            self.failed_uids.add(uid)
            self.report.add("errors", uid, f"the series could not be expanded: {exc}")
            return
        if beyond is not None:
            self.report.add(
                "warnings",
                uid,
                f"the series goes on past {self.window_end.date().isoformat()}; "
                f"only the next {WINDOW_DAYS} days were imported",
            )
        for occ in occurrences:
            start = occ["DTSTART"].dt
            if is_all_day(start):
                self.report.add("skipped", uid, "all-day event: not an appointment")
                continue
            rid = occ.get("RECURRENCE-ID")
            rid_value = rid.dt if rid is not None else start
            key = f"{uid}#{recurrence_suffix(rid_value, self.clinic)}"
            cand = self.candidate(uid, key, occ, series=True)
            if cand is not None:
                self.offer(cand)
        if not occurrences:
            self.report.add(
                "skipped", uid, f"no occurrence in the next {WINDOW_DAYS} days (the import window)"
            )

    def candidate(self, uid: str, key: str, event: Event, *, series: bool) -> Candidate | None:
        """One candidate from an event or occurrence, or None (reported) when it is not one."""
        start_value = event["DTSTART"].dt
        if is_all_day(start_value):
            self.report.add("skipped", uid, "all-day event: not an appointment")
            return None
        starts_at = instant(start_value, self.clinic)
        try:
            end_value = event.end
        except Exception:  # neither DTEND nor DURATION, or a broken one
            end_value = None
        ends_at = instant(end_value, self.clinic) if isinstance(end_value, datetime) else None
        if ends_at is None or ends_at <= starts_at:
            ends_at = starts_at + DEFAULT_DURATION
            self.report.add(
                "warnings",
                uid,
                f"the event has no length; {int(DEFAULT_DURATION.total_seconds() // 60)} "
                "minutes assumed",
            )
        cancelled = str(event.get("STATUS", "")).strip().upper() == "CANCELLED"
        if starts_at <= self.now and not cancelled:
            self.report.add("skipped", uid, "the event is in the past")
            return None
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
        )


# ------------------------------------------------------------------ applying candidates


class Applier:
    """Creates, updates and cancels appointments for one source, inside the caller's session."""

    def __init__(self, session, profile, *, now, source, practitioner_id, report, window_end):
        self.session = session
        self.profile = profile
        self.now = now
        self.source = source
        self.practitioner_id = practitioner_id
        self.report = report
        self.window_end = window_end
        rows = session.execute(select(ImportedEvent).where(ImportedEvent.source == source))
        self.rows: dict[str, ImportedEvent] = {r.uid_key: r for r in rows.scalars()}

    def _changeable(self, appt: Appointment) -> bool:
        return appt.status in ACTIVE_STATUSES and appt.starts_at > self.now

    def _cancel(self, row: ImportedEvent, appt: Appointment) -> bool:
        if not self._changeable(appt):
            return False
        booking.cancel(self.session, appt, now=self.now)
        row.import_cancelled = True
        row.updated_at = self.now
        return True

    def apply(self, cand: Candidate) -> None:
        """Carry out one candidate and count it."""
        if cand.whole_series:
            self.cancel_series(cand)
            return
        row = self.rows.get(cand.key)
        if row is None:
            self.create(cand)
            return
        appt = self.session.get(Appointment, row.appointment_id)
        counts = self.report.counts
        if cand.sequence < row.sequence:
            counts["unchanged"] += 1
            self.report.add(
                "warnings",
                cand.uid,
                f"SEQUENCE {cand.sequence} is older than the imported {row.sequence}; ignored",
            )
            return
        newer = cand.sequence > row.sequence
        row.sequence = cand.sequence
        if cand.cancelled:
            counts["cancelled" if self._cancel(row, appt) else "unchanged"] += 1
            return
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
        row.updated_at = self.now

    def create(self, cand: Candidate) -> None:
        if cand.cancelled:
            self.report.add("skipped", cand.uid, "cancelled, and never imported before")
            return
        appt = booking.book(
            self.session,
            self.profile,
            patient=None,
            service_id=None,
            practitioner_id=self.practitioner_id,
            starts_at=cand.starts_at,
            duration=cand.ends_at - cand.starts_at,
            now=self.now,
            source="ics",
            enforce_hours=False,
            force=True,
        )
        appt.external_uid = cand.key
        appt.title = cand.title
        appt.notes = cand.notes
        self.session.flush()
        row = ImportedEvent(
            source=self.source,
            uid_key=cand.key,
            uid=cand.uid,
            sequence=cand.sequence,
            appointment_id=appt.id,
            import_cancelled=False,
            created_at=self.now,
            updated_at=self.now,
        )
        self.session.add(row)
        self.rows[cand.key] = row
        self.report.counts["created"] += 1

    def update(self, appt: Appointment, cand: Candidate) -> bool:
        """Bring the appointment in line with the event; True when anything changed."""
        changed = False
        if self.practitioner_id is not None and appt.practitioner_id != self.practitioner_id:
            booking.lock_practitioner(self.session, self.practitioner_id)
            appt.practitioner_id = self.practitioner_id
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
        row.updated_at = self.now
        appointment_changed(self.session, appt, self.now, "moved")

    def cancel_series(self, cand: Candidate) -> None:
        rows = [r for r in self.rows.values() if r.uid == cand.uid]
        if not rows:
            self.report.add("skipped", cand.uid, "cancelled, and never imported before")
            return
        for row in rows:
            appt = self.session.get(Appointment, row.appointment_id)
            if cand.sequence < row.sequence:
                self.report.counts["unchanged"] += 1
                continue
            row.sequence = cand.sequence
            self.report.counts["cancelled" if self._cancel(row, appt) else "unchanged"] += 1

    def drop_missing(self, seen: set[str], keep_uids: set[str]) -> None:
        """Full mode: cancel this source's future appointments that the snapshot no longer has."""
        for key, row in list(self.rows.items()):
            if key in seen or row.uid in keep_uids:
                continue
            appt = self.session.get(Appointment, row.appointment_id)
            # A series is only known within the window, so beyond it absence means nothing.
            if "#" in key and appt.starts_at > self.window_end:
                continue
            if self._cancel(row, appt):
                self.report.counts["cancelled"] += 1


# ------------------------------------------------------------------ the entry point


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
    """Import an .ics file into appointments; returns the CONTRACT §6 report.

    Raises CalendarRefused (nothing changed) for a file that cannot be imported at all.
    `dry_run` does all the work inside a savepoint and rolls it back, so its counts are exact.
    """
    if mode not in MODES:
        raise CalendarRefused(f"mode must be one of {', '.join(MODES)}")
    if practitioner_id is not None and profile.practitioner(practitioner_id) is None:
        raise CalendarRefused(f"unknown practitioner {practitioner_id!r}")
    if not isinstance(raw, bytes | bytearray):
        raise TypeError("import_calendar takes the file's bytes")
    report = Report()
    calendars = parse(bytes(raw), report)
    source = (source or "").strip()[:200] or default_source(calendars)
    collector = Collector(profile, now, report)
    for cal in calendars:
        collector.calendar(cal)
    if mode == "full" and collector.methods - {"PUBLISH"}:
        methods = ", ".join(sorted(collector.methods - {"PUBLISH"}))
        raise CalendarRefused(
            f"mode full needs a published calendar (a snapshot); this file is METHOD:{methods}"
        )
    if not collector.candidates and not any(c.walk("VEVENT") for c in calendars):
        report.add("warnings", None, "the calendar holds no events")
    savepoint = session.begin_nested() if dry_run else None
    try:
        applier = Applier(
            session,
            profile,
            now=now,
            source=source,
            practitioner_id=practitioner_id,
            report=report,
            window_end=collector.window_end,
        )
        ordered = sorted(
            collector.candidates.values(),
            key=lambda c: (c.starts_at or now, c.key),
        )
        for done, cand in enumerate(ordered, 1):
            applier.apply(cand)
            if progress is not None:
                progress(done, len(ordered))
        if mode == "full":
            keep = collector.failed_uids | {
                c.uid for c in ordered if c.whole_series or c.starts_at is None
            }
            applier.drop_missing(set(collector.candidates), keep)
        session.flush()
    finally:
        if savepoint is not None:
            savepoint.rollback()
    return report.as_dict()
