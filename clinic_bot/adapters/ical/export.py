"""Appointments as iCalendar: the invitation a patient gets after booking.

Only allow-listed fields go out (DESIGN rule 7): time, service name, clinic name and address;
never notes, intake answers or an imported title.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date, datetime, timedelta

from icalendar import Alarm, Calendar, Event, vCalAddress, vText
from sqlalchemy import func, select

from clinic_bot.domain.profile import Profile
from clinic_bot.models import Appointment, Patient

PRODID = "-//clinic_bot//appointments//EN"


def clinic_slug(profile: Profile) -> str:
    """The clinic's name as a stable, ASCII host-like label: 'sunrise-family-clinic'."""
    ascii_name = unicodedata.normalize("NFKD", profile.name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug or "clinic"


def appointment_uid(appt: Appointment, profile: Profile) -> str:
    """The UID an appointment keeps for life, so calendars update the event, not add one."""
    return f"appt-{appt.id}@{clinic_slug(profile)}"


def appointment_summary(appt: Appointment, profile: Profile) -> str:
    """Service name and clinic name (the imported title stays internal)."""
    service = profile.service(appt.service_id) if appt.service_id else None
    return f"{service.name} – {profile.name}" if service else profile.name


def appointment_event(appt: Appointment, profile: Profile) -> Event:
    """One VEVENT for the appointment, in the clinic's zone; SEQUENCE follows the version."""
    tz = profile.timezone
    event = Event()
    event.add("uid", appointment_uid(appt, profile))
    event.add("sequence", appt.version)
    event.add("dtstamp", appt.updated_at or appt.created_at)
    event.add("dtstart", appt.starts_at.astimezone(tz))
    event.add("dtend", appt.ends_at.astimezone(tz))
    event.add("summary", appointment_summary(appt, profile))
    if profile.address:
        event.add("location", profile.address)
    event.add("status", "CANCELLED" if appt.status == "cancelled" else "CONFIRMED")
    if profile.phone:
        # iTIP REQUEST names an organizer; the clinic's phone is the address we can stand behind.
        organizer = vCalAddress("tel:" + re.sub(r"[^\d+]", "", profile.phone))
        organizer.params["cn"] = vText(profile.name)
        event.add("organizer", organizer)
    return event


def _patient_event(appt: Appointment, profile: Profile, *, cancel: bool, title=None) -> Event:
    """The VEVENT a patient's calendar gets: the practitioner named, an alarm before it."""
    event = appointment_event(appt, profile)
    if title:  # the service in the patient's language
        event.pop("summary")
        event.add("summary", title)
    person = profile.practitioner(appt.practitioner_id) if appt.practitioner_id else None
    if person is not None:
        # The practitioner has no address we publish; a URN names them for calendars.
        attendee = vCalAddress(f"urn:x-clinic:practitioner:{person.id}")
        attendee.params["cn"] = vText(person.name)
        attendee.params["role"] = vText("CHAIR")
        attendee.params["cutype"] = vText("INDIVIDUAL")
        event.add("attendee", attendee)
    if cancel:
        # A CANCEL must outrank the last REQUEST the patient got for this UID (RFC 5546).
        event.pop("sequence")
        event.add("sequence", appt.version + 1)
        event.pop("status")
        event.add("status", "CANCELLED")
    elif profile.reminder_offsets:
        # AUDIO needs no DESCRIPTION, so the invitation carries no free text at all; phone
        # calendars show it as their usual notification.
        alarm = Alarm()
        alarm.add("action", "AUDIO")
        alarm.add("trigger", -profile.reminder_offsets[0][1])
        event.add_component(alarm)
    return event


def _itip(appt: Appointment, profile: Profile, method: str, title=None) -> bytes:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", method)
    cal.add_component(_patient_event(appt, profile, cancel=method == "CANCEL", title=title))
    # A VTIMEZONE covering a year either side keeps the file small and valid past 2038.
    cal.add_missing_timezones(
        first_date=(appt.starts_at - timedelta(days=366)).date(),
        last_date=(appt.ends_at + timedelta(days=366)).date(),
    )
    return cal.to_ical()


def appointment_invitation(appt: Appointment, profile: Profile, *, title=None) -> bytes:
    """A METHOD:REQUEST VCALENDAR: the appointment's VEVENT with ORGANIZER, practitioner, VALARM.

    `title` replaces the SUMMARY (the service's name in the patient's language)."""
    return _itip(appt, profile, "REQUEST", title)


def appointment_cancellation(appt: Appointment, profile: Profile) -> bytes:
    """A METHOD:CANCEL VCALENDAR: same UID, a higher SEQUENCE, so calendars remove the event."""
    return _itip(appt, profile, "CANCEL")


# How far back the calendar export and feed reach: recent visits stay visible in the calendar.
EXPORT_PAST = timedelta(days=30)
# Rendered VEVENTs by (profile, appointment, version and what the event shows): a feed of
# 10,000 appointments re-renders only what changed. Bounded; cleared when it grows past this.
_EVENT_CACHE: dict[tuple, str] = {}
_EVENT_CACHE_MAX = 100_000
_TZ_CACHE: dict[tuple, str] = {}


def _escape(text: str) -> str:
    return (
        text.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
    )


def _fold(line: str) -> str:
    """RFC 5545 §3.1: lines of at most 75 octets, never splitting a UTF-8 character."""
    data = line.encode("utf-8")
    if len(data) <= 75:
        return line
    parts, chunk, size, limit = [], [], 0, 75
    for ch in line:
        width = len(ch.encode("utf-8"))
        if size + width > limit:
            parts.append("".join(chunk))
            chunk, size, limit = [], 0, 74  # continuation lines start with a space
        chunk.append(ch)
        size += width
    parts.append("".join(chunk))
    return "\r\n ".join(parts)


def _utc_stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def staff_summary(service_name: str | None, patient_name: str | None, profile: Profile) -> str:
    """What a staff calendar shows: service and patient name (never notes or intake answers)."""
    parts = [p for p in (service_name, patient_name) if p]
    return " – ".join(parts) if parts else f"Appointment – {profile.name}"


def _vtimezone(profile: Profile, first: date, last: date) -> str:
    key = (profile.timezone.key, first.year, last.year)
    if key not in _TZ_CACHE:
        cal = Calendar()
        probe = Event()
        probe.add("dtstart", datetime.combine(first, datetime.min.time(), profile.timezone))
        cal.add_component(probe)
        cal.add_missing_timezones(
            first_date=date(first.year, 1, 1), last_date=date(last.year, 12, 31)
        )
        _TZ_CACHE[key] = "".join(tz.to_ical().decode() for tz in cal.walk("VTIMEZONE"))
    return _TZ_CACHE[key]


def _render(row, profile: Profile, slug: str, organizer: str) -> str:
    tz = profile.timezone
    service = profile.service(row.service_id) if row.service_id else None
    tzid = tz.key
    lines = [
        "BEGIN:VEVENT",
        f"UID:appt-{row.id}@{slug}",
        f"SEQUENCE:{row.version}",
        f"DTSTAMP:{_utc_stamp(row.updated_at or row.created_at)}",
        f"DTSTART;TZID={tzid}:{row.starts_at.astimezone(tz):%Y%m%dT%H%M%S}",
        f"DTEND;TZID={tzid}:{row.ends_at.astimezone(tz):%Y%m%dT%H%M%S}",
        "SUMMARY:" + _escape(staff_summary(service.name if service else None, row.name, profile)),
    ]
    if profile.address:
        lines.append("LOCATION:" + _escape(profile.address))
    lines.append("STATUS:" + ("CANCELLED" if row.status == "cancelled" else "CONFIRMED"))
    if organizer:
        lines.append(organizer)
    if row.phone:
        # Read back by our importer, so a round trip keeps the patient.
        lines.append(f"X-CLINIC-PATIENT-PHONE:+{row.phone}")
        if row.name:
            lines.append("X-CLINIC-PATIENT-NAME:" + _escape(row.name))
    lines.append("END:VEVENT")
    return "".join(_fold(line) + "\r\n" for line in lines)


def export_query(practitioner_id: str | None, now: datetime | None):
    """The rows a staff export or feed shows (appointment columns and the patient's name)."""
    stmt = (
        select(
            Appointment.id, Appointment.version, Appointment.status, Appointment.starts_at,
            Appointment.ends_at, Appointment.updated_at, Appointment.created_at,
            Appointment.service_id, Patient.phone, Patient.name,
        )
        .outerjoin(Patient, Patient.id == Appointment.patient_id)
        .order_by(Appointment.starts_at, Appointment.id)
    )  # fmt: skip
    if now is not None:
        stmt = stmt.where(Appointment.ends_at >= now - EXPORT_PAST)
    if practitioner_id is not None:
        stmt = stmt.where(Appointment.practitioner_id == practitioner_id)
    return stmt


def export_fingerprint(session, practitioner_id: str | None = None, *, now=None):
    """(ETag seed, last change) of what the export would show, from one aggregate query."""
    stmt = select(
        func.count(Appointment.id),
        func.max(Appointment.updated_at),
        func.coalesce(func.sum(Appointment.version), 0),
        func.coalesce(func.max(Appointment.id), 0),
        func.coalesce(func.sum(Patient.version), 0),
    ).outerjoin(Patient, Patient.id == Appointment.patient_id)
    if now is not None:
        stmt = stmt.where(Appointment.ends_at >= now - EXPORT_PAST)
    if practitioner_id is not None:
        stmt = stmt.where(Appointment.practitioner_id == practitioner_id)
    count, last, versions, top, patients = session.execute(stmt).one()
    return f"{count}-{versions}-{top}-{patients}-{last.isoformat() if last else ''}", last


def export_calendar(
    session, profile: Profile, practitioner_id: str | None = None, *, now: datetime | None = None
) -> bytes:
    """Every appointment from `now` - 30 days on (all of them without `now`) as one VCALENDAR.

    For staff (CLI export, subscription feeds): SUMMARY is the service and the patient's name,
    and X-CLINIC-PATIENT-PHONE lets a re-import find the patient; never notes or intake answers.
    One VEVENT per appointment with its lifelong UID, SEQUENCE = version and STATUS:CANCELLED
    for cancelled ones, so subscribed calendars update events in place. Each VEVENT is rendered
    once per appointment version and then served from a cache.
    """
    slug = clinic_slug(profile)
    organizer = ""
    if profile.phone:
        phone = re.sub(r"[^\d+]", "", profile.phone)
        organizer = _fold(f"ORGANIZER;CN={_quote(profile.name)}:tel:{phone}")
    pkey = (profile.name, profile.address, profile.timezone.key, profile.phone, slug,
            tuple((x.id, x.name) for x in profile.services))  # fmt: skip
    rows = session.execute(export_query(practitioner_id, now)).all()
    if len(_EVENT_CACHE) > _EVENT_CACHE_MAX:
        _EVENT_CACHE.clear()
    out = [
        "BEGIN:VCALENDAR\r\n",
        f"VERSION:2.0\r\nPRODID:{PRODID}\r\nCALSCALE:GREGORIAN\r\nMETHOD:PUBLISH\r\n",
        _fold("X-WR-CALNAME:" + _escape(profile.name)) + "\r\n",
        f"X-WR-TIMEZONE:{profile.timezone.key}\r\n",
    ]
    if rows:
        first = min(r.starts_at for r in rows) - timedelta(days=366)
        last = max(r.ends_at for r in rows) + timedelta(days=366)
        out.append(_vtimezone(profile, first.date(), last.date()))
    for row in rows:
        key = (pkey, row.id, row.version, row.status, row.updated_at, row.starts_at,
               row.ends_at, row.service_id, row.phone, row.name)  # fmt: skip
        text = _EVENT_CACHE.get(key)
        if text is None:
            text = _EVENT_CACHE[key] = _render(row, profile, slug, organizer)
        out.append(text)
    out.append("END:VCALENDAR\r\n")
    return "".join(out).encode("utf-8")


def _quote(value: str) -> str:
    """A parameter value, quoted when it holds characters that end a parameter."""
    return f'"{value}"' if any(c in value for c in ":;,") else value
