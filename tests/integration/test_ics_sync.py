"""Calendar sync as reception uses it: patients found, busy time blocked, bombs bounded, quirks.

Every calendar here is a minimal file written in the test, so each rule has its own evidence.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from clinic_bot.adapters.ical.importer import (
    SERIES_CAP,
    CalendarRefused,
    apply_plan,
    import_calendar,
    prepare,
)
from clinic_bot.domain.availability import free_slots
from clinic_bot.models import Appointment, BusyBlock, Patient
from clinic_bot.models.calendar import ImportedEvent
from clinic_bot.models.reminders import Reminder

NOW = datetime(2026, 11, 24, 9, tzinfo=UTC)  # a Tuesday; 2026-12-01 is one too
TUESDAY = date(2026, 12, 1)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def cal(*events: str, name: str = "Front desk", extra: str = "") -> bytes:
    body = "".join(f"BEGIN:VEVENT\r\n{e.strip()}\r\nEND:VEVENT\r\n" for e in events)
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
        f"X-WR-CALNAME:{name}\r\n{extra}{body}END:VCALENDAR\r\n"
    ).encode()


def event(uid: str, start: str = "20261201T141500Z", minutes: int = 30, *lines: str) -> str:
    begin = datetime.strptime(start, "%Y%m%dT%H%M%SZ")
    end = (begin + timedelta(minutes=minutes)).strftime("%Y%m%dT%H%M%SZ")
    return "\r\n".join([f"UID:{uid}", f"DTSTART:{start}", f"DTEND:{end}", *lines])


def run(runtime, raw: bytes, now: datetime = NOW, **kw) -> dict:
    kw.setdefault("source", "test")
    with runtime.db.transaction() as s:
        return import_calendar(s, runtime.profile, raw, now=now, **kw)


def rows(runtime, model, *where):
    with runtime.db.Session() as s:
        return list(s.execute(select(model).where(*where).order_by(model.id)).scalars())


def reasons(report: dict, kind: str) -> list[str]:
    return [line["reason"] for line in report[kind]]


def starts(runtime, day: date = TUESDAY) -> list[str]:
    """The start times (clinic-local HH:MM) a WhatsApp patient would be offered for a check-up."""
    with runtime.db.Session() as s:
        slots = free_slots(
            s, runtime.profile, service_id="checkup", practitioner_id=None, day=day, now=NOW
        )
    return [f"{x.starts_at.astimezone(runtime.profile.timezone):%H:%M}" for x in slots]


# --------------------------------------------------------------------- 1. who the patient is


def test_a_tel_attendee_becomes_a_patient_whose_appointment_gets_reminders(runtime):
    raw = cal(event("a@x", "20261201T141500Z", 30, "SUMMARY:Check-up",
                    "ATTENDEE;CN=Ana Example:tel:+4915111110001"))  # fmt: skip
    report = run(runtime, raw)
    assert report["created"] == 1
    assert report["patients_created"] == [{"phone": "4915111110001", "name": "Ana Example"}]
    (patient,) = rows(runtime, Patient)
    assert (patient.phone, patient.name) == ("4915111110001", "Ana Example")
    (appt,) = rows(runtime, Appointment)
    assert appt.patient_id == patient.id and appt.source == "ics"
    reminders = rows(runtime, Reminder, Reminder.appointment_id == appt.id)
    assert reminders and {r.status for r in reminders} == {"pending"}


def test_a_phone_written_in_the_description_is_found_in_the_clinic_region(runtime):
    # A national German number: the clinic's phone (+49 30 …) gives the region.
    raw = cal(event("b@x", "20261201T100000Z", 20, "SUMMARY:Check-up Bruno Beispiel",
                    "DESCRIPTION:Patient calls back on 0151 11110002 if late"))  # fmt: skip
    report = run(runtime, raw)
    assert report["created"] == 1
    (patient,) = rows(runtime, Patient)
    assert patient.phone == "4915111110002"
    assert patient.name == "Bruno Beispiel"  # SUMMARY without the service words
    (appt,) = rows(runtime, Appointment)
    assert appt.patient_id == patient.id


def test_our_own_export_property_names_the_patient(runtime):
    own = ("X-CLINIC-PATIENT-PHONE:+34600111222", "X-CLINIC-PATIENT-NAME:Carla")
    raw = cal(event("c@x", "20261201T100000Z", 20, "SUMMARY:General check-up", *own))
    run(runtime, raw)
    (patient,) = rows(runtime, Patient)
    assert (patient.phone, patient.name) == ("34600111222", "Carla")


def test_an_existing_patient_is_reused_and_keeps_their_name(runtime):
    run(runtime, cal(event("a@x", "20261201T100000Z", 20, "ATTENDEE;CN=Ana:tel:+4915111110001")))
    report = run(runtime, cal(event("a2@x", "20261202T100000Z", 20,
                                    "ATTENDEE;CN=Someone Else:tel:+4915111110001")))  # fmt: skip
    assert report["patients_created"] == []
    (patient,) = rows(runtime, Patient)
    assert patient.name == "Ana"
    assert len(rows(runtime, Appointment, Appointment.patient_id == patient.id)) == 2


# --------------------------------------------------------------------- 2. which practitioner


def test_the_practitioner_comes_from_the_organizer_categories_or_calendar_name(runtime):
    lee = runtime.profile.practitioner("dr-lee")
    lee.calendar_names = ["Praxis Lee"]  # the profile's [[practitioners]] calendar_names
    tel = "ATTENDEE:tel:+4915111110001"
    run(runtime, cal(event("o@x", "20261201T080000Z", 20, tel, "ORGANIZER;CN=Dr. Lee:mailto:x@y")))
    run(runtime, cal(event("k@x", "20261201T090000Z", 20, tel, "CATEGORIES:Work,dr-lee")))
    run(runtime, cal(event("n@x", "20261201T100000Z", 20, tel), name="Praxis Lee"), source="n")
    report = run(runtime, cal(event("u@x", "20261201T110000Z", 20, tel)), source="u")
    got = {a.external_uid: a.practitioner_id for a in rows(runtime, Appointment)}
    assert got == {"o@x": "dr-lee", "k@x": "dr-lee", "n@x": "dr-lee", "u@x": None}
    assert any("no practitioner" in r for r in reasons(report, "warnings"))


# --------------------------------------------------------------------- 3. busy time


def test_an_event_without_a_phone_blocks_the_slot_a_whatsapp_patient_would_be_offered(runtime):
    assert "15:15" in starts(runtime)
    report = run(runtime, cal(event("team@x", "20261201T141500Z", 30, "SUMMARY:Team meeting")),
                 practitioner_id="dr-lee")  # fmt: skip
    assert report["created"] == 0 and report["busy_blocks"]["created"] == 1
    assert "no patient phone: kept as busy time" in reasons(report, "skipped")
    assert rows(runtime, Appointment) == []
    (block,) = rows(runtime, BusyBlock)
    assert (block.summary, block.practitioner_id) == ("Team meeting", "dr-lee")
    offered = starts(runtime)
    assert "15:15" not in offered and "15:00" not in offered  # 20 min would run into it
    assert "15:45" in offered


def test_a_busy_block_without_a_practitioner_blocks_the_whole_clinic(runtime):
    report = run(runtime, cal(event("all@x", "20261201T141500Z", 30, "SUMMARY:Fire drill")))
    assert "15:15" not in starts(runtime)
    assert any("whole clinic" in r for r in reasons(report, "warnings"))


def test_an_imported_appointment_blocks_its_practitioners_slot(runtime):
    raw = cal(event("p@x", "20261201T141500Z", 20, "ATTENDEE:tel:+4915111110001"))
    run(runtime, raw, practitioner_id="dr-lee")
    assert "15:15" not in starts(runtime)


def test_an_all_day_event_of_a_practitioner_blocks_the_day_and_transparent_time_blocks_nothing(
    runtime,
):
    allday = "UID:off@x\r\nDTSTART;VALUE=DATE:20261201\r\nDTEND;VALUE=DATE:20261202\r\nSUMMARY:Off"
    free = event("free@x", "20261202T090000Z", 60, "SUMMARY:Lunch?", "TRANSP:TRANSPARENT")
    report = run(runtime, cal(allday, free), practitioner_id="dr-lee")
    assert starts(runtime) == []
    assert starts(runtime, date(2026, 12, 2))[:1] == ["09:00"]
    assert any("TRANSPARENT" in r for r in reasons(report, "skipped"))


def test_a_cancelled_busy_event_frees_the_slot_again(runtime):
    meeting = event("m@x", "20261201T141500Z", 30, "SUMMARY:Team meeting", "SEQUENCE:0")
    run(runtime, cal(meeting), practitioner_id="dr-lee")
    again = meeting.replace("SEQUENCE:0", "SEQUENCE:1\r\nSTATUS:CANCELLED")
    report = run(runtime, cal(again), practitioner_id="dr-lee")
    assert report["busy_blocks"]["cancelled"] == 1
    assert "15:15" in starts(runtime)


# --------------------------------------------------------------------- 4. bounded work


def test_an_endless_minutely_series_is_capped_with_a_warning_naming_it(runtime):
    bomb = "UID:bomb@x\r\nDTSTART:20200101T000000Z\r\nDURATION:PT1M\r\nRRULE:FREQ=MINUTELY\r\n"
    bomb += "SUMMARY:Spam"
    report = run(runtime, cal(bomb))
    assert report["busy_blocks"]["created"] == SERIES_CAP
    assert any("'Spam'" in r and "series capped" in r for r in reasons(report, "warnings"))
    with runtime.db.Session() as s:
        assert s.execute(select(func.count()).select_from(Reminder)).scalar() == 0


def test_a_billion_secondly_occurrences_are_capped(runtime):
    bomb = "UID:sec@x\r\nDTSTART:20261124T100000Z\r\nDURATION:PT1S\r\n"
    bomb += "RRULE:FREQ=SECONDLY;COUNT=1000000000\r\nATTENDEE:tel:+4915111110001"
    report = run(runtime, cal(bomb))
    assert report["created"] == SERIES_CAP
    assert any("series capped" in r for r in reasons(report, "warnings"))


def test_the_per_file_cap_stops_reading_and_full_mode_then_cancels_nothing(runtime):
    daily = [
        f"UID:d{i}@x\r\nDTSTART:20261125T0{i}0000Z\r\nDURATION:PT10M\r\nRRULE:FREQ=DAILY"
        for i in range(3)
    ]
    run(runtime, cal(*daily), mode="full")
    before = len(rows(runtime, BusyBlock, BusyBlock.cancelled.is_(False)))
    plan = prepare(runtime.profile, cal(*daily), now=NOW, mode="full", source="test", file_cap=100)
    assert not plan.complete
    with runtime.db.transaction() as s:
        report = apply_plan(s, runtime.profile, plan).report
    assert any("file capped" in r for r in reasons(report, "warnings"))
    assert report["busy_blocks"]["cancelled"] == 0
    assert len(rows(runtime, BusyBlock, BusyBlock.cancelled.is_(False))) == before


def test_a_file_over_the_time_budget_stops_with_a_warning(runtime):
    many = [event(f"e{i}@x", "20261201T100000Z", 10) for i in range(50)]
    plan = prepare(runtime.profile, cal(*many), now=NOW, time_budget=timedelta(0))
    assert not plan.complete
    assert any("took longer" in r for r in reasons(plan.report.as_dict(), "warnings"))


# --------------------------------------------------------------------- 5. real exports


def test_thisandfuture_keeps_a_key_per_occurrence_and_moves_the_following_ones(runtime):
    tel = "ATTENDEE:tel:+4915111110001"
    master = "UID:s@x\r\nDTSTART:20261201T090000Z\r\nDTEND:20261201T093000Z\r\n"
    master += f"RRULE:FREQ=DAILY;COUNT=20\r\nSUMMARY:Physio\r\n{tel}"
    override = "UID:s@x\r\nRECURRENCE-ID;RANGE=THISANDFUTURE:20261206T090000Z\r\n"
    override += (
        f"DTSTART:20261206T100000Z\r\nDTEND:20261206T103000Z\r\nSUMMARY:Physio (moved)\r\n{tel}"
    )
    report = run(runtime, cal(master, override))
    assert report["created"] == 20
    appts = rows(runtime, Appointment)
    assert len({a.external_uid for a in appts}) == 20
    later = [a for a in appts if a.starts_at >= utc(2026, 12, 6)]
    assert len(later) == 15
    assert {a.starts_at.hour for a in later} == {10}
    assert {a.title for a in later} == {"Physio (moved)"}
    assert "s@x#20261207T090000Z" in {a.external_uid for a in later}


def test_an_outlook_web_display_name_zone_is_mapped_through_cldr(runtime):
    tzid = '"(UTC-05:00) Eastern Time (US & Canada)"'
    owa = f"UID:owa@x\r\nDTSTART;TZID={tzid}:20261201T090000\r\nDTEND;TZID={tzid}:20261201T093000"
    report = run(runtime, cal(owa))
    (block,) = rows(runtime, BusyBlock)
    assert block.starts_at == utc(2026, 12, 1, 14)  # 09:00 New York, not 09:00 Berlin
    assert any("America/New_York" in r for r in reasons(report, "warnings"))


def test_a_tzid_with_a_stray_space_uses_the_files_own_vtimezone(runtime):
    vtz = (
        "BEGIN:VTIMEZONE\r\nTZID:Clinic Time\r\nBEGIN:STANDARD\r\nDTSTART:19700101T000000\r\n"
        "TZOFFSETFROM:+0300\r\nTZOFFSETTO:+0300\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n"
    )
    ev = 'UID:sp@x\r\nDTSTART;TZID=" Clinic Time":20261201T090000\r\nDURATION:PT30M'
    run(runtime, cal(ev, extra=vtz))
    (block,) = rows(runtime, BusyBlock)
    assert block.starts_at == utc(2026, 12, 1, 6)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-16-le (no BOM)"])
def test_utf16_and_utf32_files_are_read(runtime, encoding):
    text = cal(event("u@x", "20261201T100000Z", 20, "SUMMARY:Müller",
                     "ATTENDEE:tel:+4915111110001")).decode()  # fmt: skip
    raw = text.encode(encoding.split()[0])
    if encoding == "utf-16-be":
        raw = b"\xfe\xff" + raw
    assert run(runtime, raw)["created"] == 1
    (appt,) = rows(runtime, Appointment)
    assert appt.title == "Müller"


def test_cr_only_line_endings_are_read(runtime):
    raw = cal(event("cr@x", "20261201T100000Z", 20, "ATTENDEE:tel:+4915111110001"))
    assert run(runtime, raw.replace(b"\r\n", b"\r"))["created"] == 1


def test_a_truncated_concatenation_is_refused_and_never_cancels_in_full_mode(runtime):
    first = cal(event("one@x", "20261201T100000Z", 20, "ATTENDEE:tel:+4915111110001"))
    second = cal(event("two@x", "20261202T100000Z", 20, "ATTENDEE:tel:+4915111110002"))
    run(runtime, first + second, mode="full")
    assert len(rows(runtime, Appointment)) == 2
    cut = first + second[: len(second) // 2]
    with pytest.raises(CalendarRefused, match="cut off"):
        run(runtime, cut, mode="full")
    assert {a.status for a in rows(runtime, Appointment)} == {"booked"}


@pytest.mark.parametrize(
    "stray",
    [
        "BEGIN:VTODO\r\nUID:t@x\r\nthis line is garbage\r\nEND:VTODO\r\n",
        "BEGIN:VFREEBUSY\r\nUID:f@x\r\nFREEBUSY:not-a-period\r\n",  # never closed
        "BEGIN:VJOURNAL\r\nUID:j@x\r\nDTSTART:nonsense\r\nEND:VJOURNAL\r\n",
    ],
)
def test_a_broken_component_outside_the_events_is_skipped_not_the_file(runtime, stray):
    raw = cal(event("ok@x", "20261201T100000Z", 20, "ATTENDEE:tel:+4915111110001"), extra=stray)
    report = run(runtime, raw)
    assert report["created"] == 1
    if "garbage" in stray or "VFREEBUSY" in stray:
        assert any("skipped" in r for r in reasons(report, "warnings"))


def test_an_event_without_uid_that_moves_is_an_update_with_a_warning(runtime):
    ev = "DTSTART:20261201T100000Z\r\nDURATION:PT20M\r\nSUMMARY:Ana\r\nATTENDEE:tel:+4915111110001"
    first = run(runtime, cal(ev))
    assert any("no UID" in r for r in reasons(first, "warnings"))
    moved = run(runtime, cal(ev.replace("T100000Z", "T110000Z")))
    assert moved["updated"] == 1 and moved["created"] == 0
    (appt,) = rows(runtime, Appointment)
    assert appt.starts_at == utc(2026, 12, 1, 11)


def test_a_bad_repeat_rule_is_reported_in_plain_words(runtime):
    bad = "UID:r@x\r\nDTSTART:20261201T100000Z\r\nDURATION:PT20M\r\nRRULE:FREQ=WEEKLY;BYDAY=MO, TU"
    report = run(runtime, cal(bad))
    (line,) = report["errors"]
    assert (
        line["reason"] == "the series could not be expanded: its repeat rule (RRULE) cannot be read"
    )


# --------------------------------------------------------------------- 6. re-import


def test_a_reimport_of_an_unchanged_file_writes_nothing(runtime):
    tel = "ATTENDEE;CN=Ana:tel:+4915111110001"
    raw = cal(*[event(f"r{i}@x", f"202612{i + 1:02d}T100000Z", 20, tel) for i in range(5)],
              event("busy@x", "20261201T141500Z", 30, "SUMMARY:Team"))  # fmt: skip
    run(runtime, raw)

    def snapshot():
        return (
            [(r.id, r.updated_at, r.content_hash) for r in rows(runtime, ImportedEvent)],
            [(a.id, a.updated_at, a.version) for a in rows(runtime, Appointment)],
            [(b.id, b.updated_at) for b in rows(runtime, BusyBlock)],
            [(r.id, r.status) for r in rows(runtime, Reminder)],
        )

    before = snapshot()
    later = NOW + timedelta(hours=1)
    report = run(runtime, raw, later)
    assert report["unchanged"] == 5 and report["busy_blocks"]["unchanged"] == 1
    assert report["created"] == report["updated"] == 0
    assert snapshot() == before


def test_bulk_reminder_planning_leaves_the_rows_a_single_booking_would(runtime):
    from clinic_bot.domain import booking
    from clinic_bot.domain.patients import get_or_create_patient

    soon = event("soon@x", "20261124T103000Z", 20, "ATTENDEE:tel:+4915111110001")
    later = event("later@x", "20261203T100000Z", 20, "ATTENDEE:tel:+4915111110001")
    nobody = event("nobody@x", "20261204T100000Z", 20, "SUMMARY:Team")
    run(runtime, cal(soon, later, nobody))
    imported = {
        a.starts_at: sorted((r.kind, r.due_at, r.status, r.reason) for r in
                            rows(runtime, Reminder, Reminder.appointment_id == a.id))
        for a in rows(runtime, Appointment)
    }  # fmt: skip
    with runtime.db.transaction() as s:
        patient = get_or_create_patient(s, "4915111110009", NOW)
        for start in imported:
            booking.book(s, runtime.profile, patient=patient, service_id=None,
                         practitioner_id=None, starts_at=start, duration=timedelta(minutes=20),
                         now=NOW, source="api", enforce_hours=False)  # fmt: skip
    booked = {
        a.starts_at: sorted((r.kind, r.due_at, r.status, r.reason) for r in
                            rows(runtime, Reminder, Reminder.appointment_id == a.id))
        for a in rows(runtime, Appointment, Appointment.source == "api")
    }  # fmt: skip
    assert imported == booked
    assert {r[2] for rs in imported.values() for r in rs} == {"pending", "skipped"}


def test_an_event_that_gains_a_patient_phone_turns_from_busy_time_into_an_appointment(runtime):
    run(runtime, cal(event("x@x", "20261201T100000Z", 20, "SUMMARY:Ana?")))
    assert len(rows(runtime, BusyBlock, BusyBlock.cancelled.is_(False))) == 1
    report = run(runtime, cal(event("x@x", "20261201T100000Z", 20, "SUMMARY:Ana",
                                    "ATTENDEE;CN=Ana:tel:+4915111110001")))  # fmt: skip
    assert report["created"] == 1 and report["busy_blocks"]["cancelled"] == 1
    assert rows(runtime, BusyBlock, BusyBlock.cancelled.is_(False)) == []
    (appt,) = rows(runtime, Appointment)
    assert appt.patient_id is not None and appt.external_uid == "x@x"
