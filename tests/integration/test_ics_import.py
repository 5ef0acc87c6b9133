"""Calendar import over the real-world .ics corpus in shared/ics, and the import rules.

Each corpus file is imported with the clock set to the file's own era, so its events are in the
future and the instants can be checked against the corpus README.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from clinic_bot.adapters.ical.importer import WINDOW_DAYS, CalendarRefused, import_calendar
from clinic_bot.models import Appointment, BusyBlock
from clinic_bot.models.calendar import ImportedEvent
from clinic_bot.models.reminders import Reminder

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "ics"
needs_corpus = pytest.mark.skipif(
    not CORPUS.is_dir(), reason="the shared .ics corpus (shared/ics) is not beside the repository"
)
CORPUS_FILES = sorted(p.name for p in CORPUS.glob("*.ics")) if CORPUS.is_dir() else []


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def run_import(runtime, raw: bytes, now: datetime, **kw) -> dict:
    kw.setdefault("source", "test")
    with runtime.db.transaction() as s:
        return import_calendar(s, runtime.profile, raw, now=now, **kw)


def appointments(runtime, prefix: str = "") -> list[Appointment]:
    with runtime.db.Session() as s:
        stmt = select(Appointment).order_by(Appointment.starts_at, Appointment.id)
        if prefix:
            stmt = stmt.where(Appointment.external_uid.startswith(prefix))
        return list(s.execute(stmt).scalars())


def imported(runtime, prefix: str = "") -> list:
    """Appointments and busy blocks the import made, by start: the corpus has no patients."""
    rows = appointments(runtime, prefix)
    with runtime.db.Session() as s:
        stmt = select(BusyBlock).order_by(BusyBlock.starts_at, BusyBlock.id)
        if prefix:
            stmt = stmt.where(BusyBlock.external_uid.startswith(prefix))
        rows += list(s.execute(stmt).scalars())
    return sorted(rows, key=lambda r: (r.starts_at, r.external_uid))


def created(report: dict) -> int:
    return report["created"] + report["busy_blocks"]["created"]


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def reasons(report: dict, kind: str) -> list[str]:
    return [line["reason"] for line in report[kind]]


# --------------------------------------------------------------------- the 22 corpus files


def _x_wr_timezone(runtime, report):
    ny = ZoneInfo("America/New_York")
    got = [a.starts_at.astimezone(ny) for a in imported(runtime)]
    assert [(d.day, d.hour, d.minute) for d in got] == [(22, 12, 0), (22, 21, 0)]
    assert created(report) == 2


def _moved_occurrence(runtime, report):
    # Google marks this meeting TRANSP:TRANSPARENT (free): it blocks nothing, imports nothing.
    assert imported(runtime) == []
    assert any("TRANSPARENT" in r for r in reasons(report, "skipped"))


def with_patient(raw: bytes) -> bytes:
    """The corpus file with a patient attendee added to every event (derived fixture)."""
    return raw.replace(b"BEGIN:VEVENT", b"BEGIN:VEVENT\r\nATTENDEE:tel:+4915111110001")


@needs_corpus
def test_a_moved_google_occurrence_is_keyed_by_its_recurrence_id(runtime):
    raw = with_patient(corpus("google_moved_occurrence_recurrence_id.ics"))
    run_import(runtime, raw, utc(2021, 11, 20))
    moved = imported(runtime, "38m812jicsrer5gorh3mlp7qhc@google.com#20211231T203000Z")
    assert len(moved) == 1
    assert moved[0].starts_at.astimezone(ZoneInfo("Europe/Berlin")).date().isoformat() == (
        "2021-12-17"
    )
    between = [a for a in imported(runtime) if utc(2021, 11, 20) <= a.starts_at < utc(2022, 1, 5)]
    assert len(between) == 2


def _chicago_dst(runtime, report):
    chicago = ZoneInfo("America/Chicago")
    series = imported(runtime, "c4p6@google.com#")
    local = [a.starts_at.astimezone(chicago) for a in series]
    before = [d for d in local if d.date().isoformat() < "2021-03-14"]
    after = [d for d in local if d.date().isoformat() > "2021-03-14"]
    assert before and after
    assert {(d.hour, d.minute) for d in local} == {(8, 15)}
    assert {d.utcoffset() for d in before} == {timedelta(hours=-6)}
    assert {d.utcoffset() for d in after} == {timedelta(hours=-5)}
    assert report["errors"] == []


def _chicago_exdate(runtime, report):
    thanksgiving = [a for a in imported(runtime) if a.starts_at.date().isoformat() == "2020-11-26"]
    assert thanksgiving == []
    assert created(report) > 0


def _all_day_only(runtime, report):
    assert created(report) == 0
    assert imported(runtime) == []
    assert any("all-day" in r for r in reasons(report, "skipped"))


def _birthday(runtime, report):
    _all_day_only(runtime, report)
    assert sum("RDATE" in r for r in reasons(report, "warnings")) == 2


def _empty_exdate(runtime, report):
    _all_day_only(runtime, report)
    assert any("EXDATE" in r for r in reasons(report, "warnings"))


def _endless_weekdays(runtime, report):
    got = imported(runtime)
    assert 0 < len(got) <= WINDOW_DAYS
    assert max(a.starts_at for a in got) <= utc(2026, 11, 24) + timedelta(days=WINDOW_DAYS)
    assert any("goes on past" in r for r in reasons(report, "warnings"))


def _w_europe(runtime, report):
    berlin = ZoneInfo("Europe/Berlin")
    got = [a.starts_at.astimezone(berlin) for a in imported(runtime)]
    assert [d.strftime("%m-%d %H:%M") for d in got] == ["04-26 14:00", "04-28 14:00"]


def _allday_exchange(runtime, report):
    _all_day_only(runtime, report)


def _pacific(runtime, report):
    (a,) = imported(runtime)
    assert a.starts_at == utc(2017, 2, 24, 20, 0)  # 12:00 at -08:00, from the file's VTIMEZONE


def _bad_byday(runtime, report):
    assert created(report) == 0
    # The broken series is named in the report, not dropped silently.
    assert any("could not be expanded" in r for r in reasons(report, "errors"))


def _brasilia(runtime, report):
    (a,) = imported(runtime)
    assert a.starts_at == utc(2017, 5, 11, 16, 30)


def _holidays(runtime, report):
    _all_day_only(runtime, report)
    assert len(report["skipped"]) == 159


def _new_zealand(runtime, report):
    (a,) = imported(runtime)
    # The file's own VTIMEZONE (+01:00 then) wins over the Windows-name map (Auckland, +13:00).
    assert a.starts_at == utc(2019, 11, 20, 12, 0)


def _thunderbird(runtime, report):
    got = imported(runtime)
    assert [a.starts_at.day for a in got] == [28, 30]
    assert created(report) == 2


def _khal_cancelled(runtime, report):
    berlin = ZoneInfo("Europe/Berlin")
    got = {a.external_uid.split("#")[1]: a.starts_at.astimezone(berlin) for a in imported(runtime)}
    assert "20140714T050000Z" not in got  # the cancelled occurrence
    assert got["20140707T050000Z"].hour == 9  # the moved one, matched by instant
    assert len(got) == 5


def _itip(runtime, report):
    # 53 concatenated messages; CANCEL/REPLY stubs without DTSTART do not break the import.
    assert created(report) > 0
    assert report["errors"] == []
    assert any("METHOD:REPLY" in r for r in reasons(report, "skipped"))


def _calendarlabs(runtime, report):
    _all_day_only(runtime, report)


def _floating(runtime, report):
    (a,) = imported(runtime)
    # 09:30 floating = 09:30 in the clinic's zone (Europe/Berlin, CEST in April).
    assert a.starts_at == utc(2014, 4, 9, 7, 30)


def _missing_vtimezone(runtime, report):
    (a,) = imported(runtime)
    assert a.starts_at == utc(2014, 8, 29, 12, 0)  # 08:00 America/New_York
    assert sum("no DTSTART" in r for r in reasons(report, "errors")) == 2


def _empty(runtime, report):
    assert created(report) == 0 and report["errors"] == []


def _zimbra(runtime, report):
    got = imported(runtime)
    assert len(got) == 5
    assert report["errors"] == []
    assert any("goes on past" in r for r in reasons(report, "warnings"))


REFUSED = {"fuzz_non_utf8_garbage.ics": "not a valid iCalendar file"}
EXPECTED = {
    "bare_vevent_floating_time.ics": (utc(2014, 4, 1), _floating),
    "calendarlabs_dates_without_value_empty_rrule.ics": (utc(2019, 1, 1), _calendarlabs),
    "cancelled_recurrence_id_utc_vs_tzid.ics": (utc(2014, 6, 25), _khal_cancelled),
    "exchange_allday_recurring_recurrence_id_gmt.ics": (utc(2020, 4, 1), _allday_exchange),
    "exchange_cdo_gmt_offset_tzid_bad_byday.ics": (utc(2015, 7, 1), _bad_byday),
    "exchange_request_quoted_pacific_tzid.ics": (utc(2017, 2, 1), _pacific),
    "exchange_w_europe_standard_time_rrule_exdate.ics": (utc(2020, 4, 1), _w_europe),
    "google_allday_birthday_rdate.ics": (utc(2014, 12, 1), _birthday),
    "google_apple_structured_location.ics": (utc(2026, 11, 24), _endless_weekdays),
    "google_broken_empty_exdate.ics": (utc(2008, 3, 1), _empty_exdate),
    "google_moved_occurrence_recurrence_id.ics": (utc(2021, 11, 20), _moved_occurrence),
    "google_weekly_dst_exdate_chicago.ics": (utc(2021, 3, 1), _chicago_dst),
    "google_x_wr_timezone_utc.ics": (utc(2021, 12, 1), _x_wr_timezone),
    "itip_rfc2446_multi_vcalendar_cancel_sequence.ics": (utc(1997, 3, 1), _itip),
    "outlook12_allday_holidays_long_lines.ics": (utc(2008, 1, 1), _holidays),
    "outlook_non_ascii_tzid_brasilia.ics": (utc(2017, 5, 1), _brasilia),
    "thunderbird_cancelled_occurrence.ics": (utc(2020, 1, 20), _thunderbird),
    "tzid_without_vtimezone.ics": (utc(2014, 8, 1), _missing_vtimezone),
    "utf8_bom_empty_calendar.ics": (utc(2026, 11, 24), _empty),
    "windows_tzid_new_zealand.ics": (utc(2019, 11, 1), _new_zealand),
    "zimbra_rdate_exdate_period_recurrence_id.ics": (utc(2012, 9, 25), _zimbra),
}


@needs_corpus
def test_every_corpus_file_has_an_expectation():
    assert sorted({*EXPECTED, *REFUSED}) == CORPUS_FILES
    assert len(CORPUS_FILES) == 22


@needs_corpus
@pytest.mark.parametrize("name", CORPUS_FILES)
def test_corpus_file_imports_with_the_right_instants_or_is_refused_with_a_reason(runtime, name):
    if name in REFUSED:
        with pytest.raises(CalendarRefused) as info:
            run_import(runtime, corpus(name), utc(2026, 11, 24))
        assert REFUSED[name] in info.value.reason
        assert imported(runtime) == []
        return
    now, check = EXPECTED[name]
    report = run_import(runtime, corpus(name), now)
    assert set(report) == {
        "created", "updated", "cancelled", "unchanged", "skipped", "warnings", "errors",
        "busy_blocks", "patients_created",
    }  # fmt: skip
    json.dumps(report)  # JSON-ready as it is
    check(runtime, report)
    # No corpus file names a patient phone: every event is busy time, never an appointment.
    assert appointments(runtime) == []
    for block in imported(runtime):
        assert block.source.startswith("ics:") and block.external_uid
    if created(report):
        assert "no patient phone: kept as busy time" in reasons(report, "skipped")


@needs_corpus
def test_thanksgiving_exdates_are_left_out_of_the_chicago_series(runtime):
    report = run_import(runtime, corpus("google_weekly_dst_exdate_chicago.ics"), utc(2020, 11, 20))
    _chicago_exdate(runtime, report)


@needs_corpus
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_importing_the_same_file_again_changes_nothing(runtime, name):
    now = EXPECTED[name][0]
    first = run_import(runtime, corpus(name), now)
    before = [(a.id, a.starts_at, a.ends_at, a.updated_at) for a in imported(runtime)]
    again = run_import(runtime, corpus(name), now)
    after = [(a.id, a.starts_at, a.ends_at, a.updated_at) for a in imported(runtime)]
    assert after == before
    for counts, was in ((again, first), (again["busy_blocks"], first["busy_blocks"])):
        assert counts["created"] == counts["updated"] == counts["cancelled"] == 0
        assert counts["unchanged"] == was["created"] + was["updated"]


@needs_corpus
def test_a_dry_run_reports_the_same_counts_and_changes_nothing(runtime):
    raw = corpus("google_weekly_dst_exdate_chicago.ics")
    dry = run_import(runtime, raw, utc(2021, 3, 1), dry_run=True)
    assert created(dry) > 100
    assert imported(runtime) == []
    with runtime.db.Session() as s:
        assert s.execute(select(func.count()).select_from(ImportedEvent)).scalar() == 0
        assert s.execute(select(func.count()).select_from(Reminder)).scalar() == 0
    real = run_import(runtime, raw, utc(2021, 3, 1))
    assert real == dry


# --------------------------------------------------------------------- rules on small files


def ics(*events: str, method: str = "PUBLISH", name: str = "Front desk") -> bytes:
    body = "".join(f"BEGIN:VEVENT\r\n{e.strip()}\r\nEND:VEVENT\r\n" for e in events)
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
        f"METHOD:{method}\r\nX-WR-CALNAME:{name}\r\n{body}END:VCALENDAR\r\n"
    ).encode()


def vevent(
    uid: str,
    start: str,
    *,
    seq: int = 0,
    minutes: int = 30,
    extra: str = "",
    patient: str | None = "+4915111110001",
) -> str:
    begin = datetime.strptime(start, "%Y%m%dT%H%M%SZ")
    end = (begin + timedelta(minutes=minutes)).strftime("%Y%m%dT%H%M%SZ")
    lines = [f"UID:{uid}", f"DTSTART:{start}", f"DTEND:{end}", f"SEQUENCE:{seq}", "SUMMARY:Visit"]
    if patient:
        lines.append(f"ATTENDEE;CN=Ana Example:tel:{patient}")
    return "\r\n".join(lines + ([extra] if extra else []))


NOW = utc(2026, 11, 24, 9)


def test_a_higher_sequence_moves_the_appointment_and_a_lower_one_is_ignored(runtime):
    run_import(runtime, ics(vevent("a@x", "20261201T090000Z", seq=1)), NOW)
    moved = run_import(runtime, ics(vevent("a@x", "20261201T100000Z", seq=2)), NOW)
    assert moved["updated"] == 1
    (a,) = appointments(runtime)
    assert a.starts_at == utc(2026, 12, 1, 10) and a.version == 2
    stale = run_import(runtime, ics(vevent("a@x", "20261201T080000Z", seq=1)), NOW)
    assert stale["unchanged"] == 1 and stale["updated"] == 0
    assert any("SEQUENCE 1 is older" in r for r in reasons(stale, "warnings"))
    (a,) = appointments(runtime)
    assert a.starts_at == utc(2026, 12, 1, 10)


def test_a_move_replans_the_reminders_for_the_new_time(runtime):
    run_import(runtime, ics(vevent("a@x", "20261201T090000Z")), NOW)
    run_import(runtime, ics(vevent("a@x", "20261202T090000Z", seq=1)), NOW)
    (a,) = appointments(runtime)
    with runtime.db.Session() as s:
        rows = s.execute(select(Reminder).where(Reminder.appointment_id == a.id)).scalars().all()
    current = {r.kind: r.due_at for r in rows if r.appointment_version == a.version}
    assert current["24h"] == utc(2026, 12, 1, 9)


def test_status_cancelled_cancels_the_appointment(runtime):
    run_import(runtime, ics(vevent("a@x", "20261201T090000Z")), NOW)
    report = run_import(
        runtime, ics(vevent("a@x", "20261201T090000Z", seq=1, extra="STATUS:CANCELLED")), NOW
    )
    assert report["cancelled"] == 1
    assert appointments(runtime)[0].status == "cancelled"


def test_method_cancel_without_dtstart_cancels_every_occurrence_of_the_uid(runtime):
    series = vevent("s@x", "20261201T090000Z", extra="RRULE:FREQ=DAILY;COUNT=3")
    assert run_import(runtime, ics(series), NOW)["created"] == 3
    stub = "UID:s@x\r\nSEQUENCE:1\r\nDTSTAMP:20261124T090000Z"
    report = run_import(runtime, ics(stub, method="CANCEL"), NOW)
    assert report["cancelled"] == 3
    assert {a.status for a in appointments(runtime)} == {"cancelled"}


def test_method_cancel_with_a_recurrence_id_cancels_one_occurrence(runtime):
    series = vevent("s@x", "20261201T090000Z", extra="RRULE:FREQ=DAILY;COUNT=3")
    run_import(runtime, ics(series), NOW)
    stub = "UID:s@x\r\nSEQUENCE:1\r\nRECURRENCE-ID:20261202T090000Z"
    assert run_import(runtime, ics(stub, method="CANCEL"), NOW)["cancelled"] == 1
    got = {a.external_uid: a.status for a in appointments(runtime)}
    assert got == {
        "s@x#20261201T090000Z": "booked",
        "s@x#20261202T090000Z": "cancelled",
        "s@x#20261203T090000Z": "booked",
    }


def test_full_mode_cancels_what_the_snapshot_no_longer_has_and_merge_does_not(runtime):
    two = ics(vevent("a@x", "20261201T090000Z"), vevent("b@x", "20261202T090000Z"))
    one = ics(vevent("a@x", "20261201T090000Z"))
    run_import(runtime, two, NOW)
    assert run_import(runtime, one, NOW, mode="merge")["cancelled"] == 0
    report = run_import(runtime, one, NOW, mode="full")
    assert report["cancelled"] == 1 and report["unchanged"] == 1
    assert {a.external_uid: a.status for a in appointments(runtime)} == {
        "a@x": "booked",
        "b@x": "cancelled",
    }
    # It comes back when the calendar has it again.
    assert run_import(runtime, two, NOW, mode="full")["updated"] == 1
    assert {a.status for a in appointments(runtime)} == {"booked"}


def test_full_mode_only_touches_its_own_source(runtime):
    run_import(runtime, ics(vevent("a@x", "20261201T090000Z")), NOW, source="room 1")
    report = run_import(
        runtime, ics(vevent("b@x", "20261202T090000Z")), NOW, source="room 2", mode="full"
    )
    assert report["cancelled"] == 0
    assert {a.status for a in appointments(runtime)} == {"booked"}


def test_full_mode_is_refused_for_itip_messages(runtime):
    with pytest.raises(CalendarRefused, match="snapshot"):
        run_import(
            runtime, ics(vevent("a@x", "20261201T090000Z"), method="REQUEST"), NOW, mode="full"
        )


def test_a_series_is_expanded_only_within_the_window(runtime):
    daily = vevent("d@x", "20261125T090000Z", extra="RRULE:FREQ=DAILY")
    report = run_import(runtime, ics(daily), NOW)
    # Daily from tomorrow 09:00; the window [now, now + 90 days) ends at 09:00 itself.
    assert report["created"] == WINDOW_DAYS - 1
    assert any("goes on past" in r for r in reasons(report, "warnings"))


def test_a_cp1252_file_is_read_with_a_warning_not_mojibake(runtime):
    # Derived fixture: a corpus-style event re-encoded to Windows-1252 here.
    text = ics(vevent("m@x", "20261201T090000Z", extra="DESCRIPTION:Frau Müller")).decode()
    report = run_import(
        runtime, text.replace("SUMMARY:Visit", "SUMMARY:Müller").encode("cp1252"), NOW
    )
    assert any("Windows-1252" in r for r in reasons(report, "warnings"))
    (a,) = appointments(runtime)
    assert a.title == "Müller" and a.notes == "Frau Müller"


@needs_corpus
def test_the_non_ascii_tzid_file_reencoded_to_cp1252_still_finds_its_timezone(runtime):
    raw = corpus("outlook_non_ascii_tzid_brasilia.ics").decode("utf-8").encode("cp1252")
    report = run_import(runtime, raw, utc(2017, 5, 1))
    assert any("Windows-1252" in r for r in reasons(report, "warnings"))
    assert imported(runtime)[0].starts_at == utc(2017, 5, 11, 16, 30)


def test_a_windows_tzid_with_a_numbered_suffix_is_mapped(runtime):
    event = (
        "UID:w@x\r\nDTSTART;TZID=Eastern Standard Time 1:20261201T090000\r\n"
        "DTEND;TZID=Eastern Standard Time 1:20261201T100000"
    )
    report = run_import(runtime, ics(event), NOW)
    assert imported(runtime)[0].starts_at == utc(2026, 12, 1, 14)
    assert any("America/New_York" in r for r in reasons(report, "warnings"))


def test_description_stays_staff_only_and_summary_is_the_title(runtime):
    run_import(runtime, ics(vevent("a@x", "20261201T090000Z", extra="DESCRIPTION:HIV test")), NOW)
    (a,) = appointments(runtime)
    assert a.title == "Visit" and a.notes == "HIV test"


def test_a_practitioner_is_assigned_and_an_unknown_one_refuses_the_file(runtime):
    pid = runtime.profile.practitioners[0].id
    run_import(runtime, ics(vevent("a@x", "20261201T090000Z")), NOW, practitioner_id=pid)
    assert appointments(runtime)[0].practitioner_id == pid
    with pytest.raises(CalendarRefused, match="unknown practitioner"):
        run_import(runtime, ics(vevent("b@x", "20261201T090000Z")), NOW, practitioner_id="nobody")


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"", "empty"),
        (b"hello world", "not an iCalendar file"),
        (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n", "cut off"),
        (b"BEGIN:VTODO\r\nUID:x\r\nEND:VTODO\r\n", "no complete VCALENDAR or VEVENT"),
    ],
)
def test_unreadable_files_are_refused_with_a_reason(runtime, raw, reason):
    with pytest.raises(CalendarRefused, match=reason):
        run_import(runtime, raw, NOW)


def test_a_one_line_string_that_names_a_file_is_never_read_as_a_path(runtime, tmp_path):
    target = tmp_path / "secret.ics"
    target.write_bytes(ics(vevent("secret@x", "20261201T090000Z")))
    with pytest.raises(CalendarRefused):
        run_import(runtime, str(target).encode(), NOW)
    assert appointments(runtime) == []


# --------------------------------------------------------------------- the command line


def cli(settings, *args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "CLINIC_BOT_INSTANCE": str(settings.instance_path),
        "SECRET_KEY": settings.secret_key,
        "WHAPI_WEBHOOK_SECRET": settings.webhook_secret,
    }
    env.pop("WHAPI_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", "clinic_bot.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        timeout=120,
    )


def future_ics() -> bytes:
    # The CLI runs on the real clock: put the events a few days after today.
    soon = (datetime.now(UTC) + timedelta(days=5)).replace(hour=9, minute=0, second=0)
    return ics(
        vevent("cli-a@x", soon.strftime("%Y%m%dT%H%M%SZ")),
        vevent("cli-b@x", (soon + timedelta(days=1)).strftime("%Y%m%dT%H%M%SZ")),
    )


def test_cli_import_prints_only_the_report_json_on_stdout(runtime, settings, tmp_path):
    path = tmp_path / "cal.ics"
    path.write_bytes(future_ics())
    dry = cli(settings, "calendar", "import", str(path), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["created"] == 2
    assert appointments(runtime) == []
    done = cli(settings, "calendar", "import", str(path), "--source", "front desk")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # nothing but the JSON on stdout
    assert report["created"] == 2 and report["errors"] == []
    assert len(appointments(runtime)) == 2
    again = json.loads(
        cli(settings, "calendar", "import", str(path), "--source", "front desk").stdout
    )
    assert again["unchanged"] == 2


def test_cli_import_of_a_refused_file_exits_2_with_the_reason_on_stderr(
    runtime, settings, tmp_path
):
    path = tmp_path / "bad.ics"
    path.write_bytes(b"(EBEGIN:\nU:\nTJDAT\xdfEBEGIN:VEV:\n")
    result = cli(settings, "calendar", "import", str(path))
    assert result.returncode == 2
    assert result.stdout == b""
    assert b"not a valid iCalendar file" in result.stderr


def test_cli_import_refuses_a_file_over_the_size_limit_unless_max_size_allows_it(
    runtime, settings, tmp_path
):
    path = tmp_path / "big.ics"
    path.write_bytes(ics(vevent("big@x", "20270101T090000Z", extra="DESCRIPTION:" + "x" * 600)))
    small = cli(settings, "calendar", "import", str(path), "--max-size", "500")
    assert small.returncode == 2 and b"the limit is" in small.stderr
    assert appointments(runtime) == []
    allowed = cli(settings, "calendar", "import", str(path), "--max-size", "5000")
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["created"] == 1


def test_cli_import_of_a_missing_file_exits_2(runtime, settings, tmp_path):
    result = cli(settings, "calendar", "import", str(tmp_path / "nope.ics"))
    assert result.returncode == 2
    assert result.stdout == b""


def test_a_cancellation_made_by_staff_holds_until_the_calendar_changes_the_event(runtime):
    from clinic_bot.domain import booking

    run_import(runtime, ics(vevent("a@x", "20261201T090000Z")), NOW)
    with runtime.db.transaction() as s:
        booking.cancel(s, s.execute(select(Appointment)).scalar_one(), now=NOW)
    same = run_import(runtime, ics(vevent("a@x", "20261201T090000Z")), NOW)
    assert same["unchanged"] == 1 and appointments(runtime)[0].status == "cancelled"
    newer = run_import(runtime, ics(vevent("a@x", "20261201T100000Z", seq=1)), NOW)
    assert newer["updated"] == 1
    (a,) = appointments(runtime)
    assert (a.status, a.starts_at) == ("booked", utc(2026, 12, 1, 10))


def test_all_day_events_never_become_appointments_or_reminders(runtime):
    allday = "UID:h@x\r\nDTSTART;VALUE=DATE:20261225\r\nDTEND;VALUE=DATE:20261226\r\nSUMMARY:Xmas"
    report = run_import(runtime, ics(allday), NOW)
    assert report["skipped"] == [{"uid": "h@x", "reason": "all-day event: not an appointment"}]
    assert appointments(runtime) == []
    with runtime.db.Session() as s:
        assert s.execute(select(func.count()).select_from(Reminder)).scalar() == 0
