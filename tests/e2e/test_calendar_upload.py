"""A receptionist imports a calendar in a real Chromium: upload, preview, Apply, the day view."""

from __future__ import annotations

from datetime import UTC, datetime

from playwright.sync_api import expect
from werkzeug.security import generate_password_hash

from clinic_bot.models import StaffUser

# Debian's Chromium, never a downloaded browser build (the fixtures live here: a second
# conftest.py would shadow the suite's `conftest` module).
NOW = datetime(2026, 11, 24, 9, tzinfo=UTC)
EMAIL, PASSWORD = "reception@clinic.test", "correct horse battery"
CALENDAR = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Reception//EN\r\nX-WR-CALNAME:Front desk\r\n"
    "BEGIN:VEVENT\r\nUID:ana@desk\r\nDTSTART;TZID=Europe/Berlin:20261201T151500\r\n"
    "DTEND;TZID=Europe/Berlin:20261201T153500\r\nSUMMARY:Check-up\r\n"
    "ATTENDEE;CN=Ana Example:tel:+4915111110001\r\nEND:VEVENT\r\n"
    "BEGIN:VEVENT\r\nUID:bruno@desk\r\nDTSTART;TZID=Europe/Berlin:20261201T100000\r\n"
    "DTEND;TZID=Europe/Berlin:20261201T102000\r\nSUMMARY:Bruno Beispiel\r\n"
    "DESCRIPTION:call 0151 11110002\r\nEND:VEVENT\r\n"
    "BEGIN:VEVENT\r\nUID:team@desk\r\nDTSTART;TZID=Europe/Berlin:20261201T120000\r\n"
    "DTEND;TZID=Europe/Berlin:20261201T130000\r\nSUMMARY:Team meeting\r\nEND:VEVENT\r\n"
    "END:VCALENDAR\r\n"
)


def record_upload_progress(page) -> None:
    """Keep the upload's last percentage in sessionStorage, which outlives the navigation."""
    page.evaluate(
        """() => document.getElementById("upload").addEventListener("upload-progress", (e) => {
            if (e.detail !== null) sessionStorage.setItem("uploaded", String(e.detail));
        })"""
    )


def reception_logs_in(live_server, clock, page) -> None:
    """A reception login exists at NOW, and the browser is logged in with it."""
    clock.set(NOW)
    with live_server.runtime.db.transaction() as s:
        s.add(StaffUser(email=EMAIL, password_hash=generate_password_hash(PASSWORD),
                        role="reception", created_at=NOW))  # fmt: skip
    page.goto(f"{live_server.base_url}/staff/login")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def test_a_refused_file_shows_the_reason_and_the_next_upload_still_works(
    live_server, clock, page, tmp_path
):
    reception_logs_in(live_server, clock, page)
    bad, good = tmp_path / "notes.ics", tmp_path / "front-desk.ics"
    bad.write_text("these are my notes, not a calendar\n")
    good.write_text(CALENDAR)
    page.get_by_role("link", name="Calendar").click()

    page.locator("input[type=file][name=file]").set_input_files(str(bad))
    page.get_by_role("button", name="Preview import").click()
    expect(page.get_by_role("alert")).to_contain_text("The file was refused")
    expect(page.get_by_role("alert")).to_contain_text("Nothing was changed")

    # The page the refusal drew is a working form: the next file uploads and previews.
    page.locator("input[type=file][name=file]").set_input_files(str(good))
    page.get_by_role("button", name="Preview import").click()
    expect(page.get_by_role("heading", name="Preview: front-desk.ics")).to_be_visible()


def test_reception_uploads_previews_applies_and_sees_the_patients_in_the_day(
    live_server, clock, page, tmp_path
):
    reception_logs_in(live_server, clock, page)
    file = tmp_path / "front-desk.ics"
    file.write_text(CALENDAR)
    page.get_by_role("link", name="Calendar").click()

    page.locator("input[type=file][name=file]").set_input_files(str(file))
    page.get_by_label("Practitioner", exact=True).select_option(label="Dr. Lee")
    record_upload_progress(page)
    page.get_by_role("button", name="Preview import").click()

    expect(page.get_by_role("heading", name="Preview: front-desk.ics")).to_be_visible()
    # The upload's progress bar reached 100% before the preview replaced the page.
    assert page.evaluate("sessionStorage.getItem('uploaded')") == "100"
    expect(page.get_by_text("Ana Example (+4915111110001)")).to_be_visible()
    expect(page.get_by_text("Bruno Beispiel (+4915111110002)")).to_be_visible()
    expect(page.get_by_text("no patient phone: kept as busy time")).to_be_visible()
    page.get_by_role("button", name="Apply").click()

    expect(page.get_by_role("heading", name="Imported: front-desk.ics")).to_be_visible()
    page.get_by_role("link", name="See the appointments of").click()
    main = page.locator("main")
    expect(main).to_contain_text("Ana Example")
    expect(main).to_contain_text("15:15")
    expect(main).to_contain_text("Bruno Beispiel")
    expect(main).to_contain_text("10:00")
