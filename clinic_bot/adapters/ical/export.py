"""Appointments as iCalendar: the invitation a patient gets after booking.

Only allow-listed fields go out (DESIGN rule 7): time, service name, clinic name and address;
never notes, intake answers or an imported title.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta

from icalendar import Alarm, Calendar, Event, vCalAddress, vText
from sqlalchemy import select

from clinic_bot.domain.profile import Profile
from clinic_bot.models import Appointment

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


def export_calendar(
    session, profile: Profile, practitioner_id: str | None = None, *, now: datetime | None = None
) -> bytes:
    """Every appointment from `now` - 30 days on (all of them without `now`) as one VCALENDAR.

    One VEVENT per appointment with its lifelong UID, SEQUENCE = version and STATUS:CANCELLED
    for cancelled ones, so subscribed calendars update events in place. Allow-listed fields only.
    """
    stmt = select(Appointment).order_by(Appointment.starts_at, Appointment.id)
    if now is not None:
        stmt = stmt.where(Appointment.ends_at >= now - EXPORT_PAST)
    if practitioner_id is not None:
        stmt = stmt.where(Appointment.practitioner_id == practitioner_id)
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", profile.name)
    cal.add("x-wr-timezone", profile.timezone.key)
    appts = list(session.execute(stmt).scalars())
    for appt in appts:
        cal.add_component(appointment_event(appt, profile))
    if appts:
        cal.add_missing_timezones(
            first_date=(appts[0].starts_at - timedelta(days=366)).date(),
            last_date=(max(a.ends_at for a in appts) + timedelta(days=366)).date(),
        )
    return cal.to_ical()
