"""From uploaded bytes to icalendar objects: encodings, line endings, stray components, zones.

Everything here runs before any database work, on text the receptionist's calendar app wrote:
- the encoding is found from a BOM (UTF-8, UTF-16, UTF-32), else UTF-8, else Windows-1252;
- CRLF, LF and CR-only line endings are all read; folded lines are unfolded;
- VTODO, VJOURNAL, VFREEBUSY and VAVAILABILITY blocks are dropped before parsing (they are not
  visits), so a broken one costs a warning, never the file;
- a TZID with stray spaces or quotes is cleaned on both sides (the parameter and the file's
  VTIMEZONE), so the file's own VTIMEZONE is found first;
- a file that does not end with a complete END:VCALENDAR is refused (a cut-off upload must not
  import half a calendar, nor cancel the other half in full mode).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar import Calendar
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

from clinic_bot.adapters.ical.windows_zones import DISPLAY_TO_WINDOWS

# Components that are not events: never imported, so never a reason to refuse a file.
SKIPPED_COMPONENTS = ("VTODO", "VJOURNAL", "VFREEBUSY", "VAVAILABILITY")
_BOMS = (
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\xfe\xff", "utf-16-be"),
    (b"\xff\xfe", "utf-16-le"),
)
_TZID_PARAM = re.compile(r';TZID=("[^"]*"|[^;:]*)', re.IGNORECASE)
_OFFSET_PREFIX = re.compile(r"^\(?(?:UTC|GMT)\s*([+-])(\d{1,2}):?(\d{2})?\)?")


class CalendarRefused(Exception):
    """The whole file is refused; nothing was changed."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def decode(raw: bytes, warn) -> str:
    """The file as text: by its BOM, else UTF-8, else Windows-1252 (with a warning).

    Text with NUL characters left after decoding is refused: no calendar has them, and no
    database column stores them.
    """
    text = _decode(raw, warn)
    if "\x00" in text:
        raise CalendarRefused("the file has NUL characters: save the calendar as UTF-8 text")
    return text


def _decode(raw: bytes, warn) -> str:
    if not raw.strip(b" \t\r\n\x00"):
        raise CalendarRefused("the file is empty")
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            try:
                return raw[len(bom) :].decode(encoding)
            except UnicodeDecodeError:
                raise CalendarRefused(f"the file says it is {encoding} but is not") from None
    if raw[:2000].count(b"\x00") > 100:
        # UTF-16 without a BOM: every other byte of ASCII text is a NUL.
        encoding = "utf-16-le" if raw[1:2] == b"\x00" else "utf-16-be"
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            raise CalendarRefused("the file is binary, not calendar text") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        text = raw.decode("cp1252")
    except UnicodeDecodeError:
        raise CalendarRefused("the file is neither UTF-8 nor Windows-1252 text") from None
    warn(None, "the file is not UTF-8; it was read as Windows-1252 (cp1252)")
    return text


def _clean_tzid(value: str) -> str:
    name = value.strip().strip('"').strip()
    return f'"{name}"' if any(c in name for c in ":;,") else name


def _fix_tzid_params(line: str) -> str:
    return _TZID_PARAM.sub(lambda m: ";TZID=" + _clean_tzid(m.group(1)), line)


def clean_text(text: str, warn) -> tuple[str, bool]:
    """Unfolded, cleaned lines joined by CRLF, and whether the file had a VCALENDAR at all."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"\n[ \t]", "", text)  # unfold (RFC 5545 §3.1)
    if "BEGIN:" not in text.upper():
        raise CalendarRefused("not an iCalendar file: no BEGIN:VCALENDAR")
    out: list[str] = []
    depth = 0  # VCALENDAR nesting
    wrapped = False
    skipping: str | None = None
    skip_broken = False
    last = ""
    for line in text.split("\n"):
        if not line.strip():
            continue
        upper = line[:24].upper()
        last = upper
        if skipping is not None:
            if upper.startswith("END:") and upper[4:].strip() == skipping:
                if skip_broken:
                    warn(None, f"a {skipping} could not be read and was skipped")
                skipping = None
                continue
            elif upper.startswith(("BEGIN:VEVENT", "END:VCALENDAR", "BEGIN:VCALENDAR")):
                # The stray component never ended: what follows belongs to the calendar again.
                warn(None, f"a {skipping} was not closed; it was skipped")
                skipping = None
            else:
                if ":" not in line:
                    skip_broken = True
                continue
        if upper.startswith("BEGIN:"):
            name = upper[6:].strip()
            if name in SKIPPED_COMPONENTS:
                skipping, skip_broken = name, False
                continue
            if name == "VCALENDAR":
                depth += 1
                wrapped = True
        elif upper.startswith("END:") and upper[4:].strip() == "VCALENDAR":
            depth -= 1
        if ":" not in line:
            warn(None, f"a line that is not a property was ignored: {line[:40]!r}")
            continue
        if "TZID" in upper or "TZID" in line.upper():
            if upper.startswith("TZID:") or upper.startswith("TZID;"):
                head, _, value = line.partition(":")
                line = f"{head}:{value.strip().strip(chr(34)).strip()}"
            else:
                line = _fix_tzid_params(line)
        out.append(line)
    if wrapped and (depth != 0 or not last.startswith("END:VCALENDAR")):
        raise CalendarRefused(
            "the file is cut off: it does not end with a complete END:VCALENDAR, "
            "so nothing was imported (upload the whole file again)"
        )
    return "\r\n".join(out) + "\r\n", wrapped


def parse(raw: bytes, warn) -> list[Calendar]:
    """The file's calendars; bare VEVENTs are wrapped in one. Refuses what cannot be read."""
    text, _wrapped = clean_text(decode(raw, warn), warn)
    try:
        # Always bytes: a one-line str would be read as a file path by from_ical.
        components = Calendar.from_ical(text.encode("utf-8"), multiple=True)
    except Exception:  # the parser raises several types on garbage; all mean "refuse"
        raise CalendarRefused(
            "not a valid iCalendar file: its lines are not calendar properties"
        ) from None
    calendars = [c for c in components if c.name == "VCALENDAR"]
    bare = [c for c in components if c.name == "VEVENT"]
    if bare:
        wrapper = Calendar()
        for event in bare:
            wrapper.add_component(event)
        calendars.append(wrapper)
        warn(None, "events without a VCALENDAR around them were read as one")
    if not calendars:
        raise CalendarRefused("not an iCalendar file: no complete VCALENDAR or VEVENT in it")
    return calendars


def _zone(name: str):
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def resolve_tzid(tzid: str, clinic: ZoneInfo) -> tuple[object, str]:
    """A zone for a TZID that neither the file nor icalendar resolved, and what we did."""
    name = tzid.strip().strip('"').strip()
    # Outlook exports "Eastern Standard Time 1": not in CLDR, so drop the counter and retry.
    base = re.sub(r"\s+\d+$", "", name)
    # OWA writes the display name: "(UTC-05:00) Eastern Time (US & Canada)".
    display = re.sub(r"^\((?:UTC|GMT)[^)]*\)\s*", "", name)
    for candidate in (name, base, DISPLAY_TO_WINDOWS.get(display, "")):
        if not candidate:
            continue
        olson = WINDOWS_TO_OLSON.get(candidate, candidate)
        zone = _zone(olson)
        if zone is not None:
            return zone, f"timezone {tzid!r} is not standard; read as {olson}"
    match = _OFFSET_PREFIX.match(name)
    if match:
        sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3) or 0)
        delta = timedelta(hours=hours, minutes=minutes) * (-1 if sign == "-" else 1)
        return timezone(delta), (
            f"timezone {tzid!r} is unknown; read at its stated offset {sign}{hours:02d}:"
            f"{minutes:02d} (no daylight saving)"
        )
    return clinic, f"timezone {tzid!r} is unknown; read in the clinic's zone ({clinic.key})"


def fix_tzids(event, clinic: ZoneInfo, warn, uid: str) -> None:
    """Give naive times that carry an unresolved TZID a zone, before the series is expanded."""
    for prop in ("DTSTART", "DTEND", "RECURRENCE-ID"):
        value = event.get(prop)
        dt = getattr(value, "dt", None)
        if isinstance(dt, datetime) and dt.tzinfo is None and "TZID" in value.params:
            zone, warning = resolve_tzid(str(value.params["TZID"]), clinic)
            value.dt = dt.replace(tzinfo=zone)
            warn(uid, warning)
    for prop in ("EXDATE", "RDATE"):
        values = event.get(prop)
        for value in values if isinstance(values, list) else [values]:
            try:
                items = list(getattr(value, "dts", []) or [])
            except Exception:  # a broken value (already reported from event.errors)
                continue
            for item in items:
                dt = getattr(item, "dt", None)
                if isinstance(dt, datetime) and dt.tzinfo is None and "TZID" in value.params:
                    zone, _warning = resolve_tzid(str(value.params["TZID"]), clinic)
                    item.dt = dt.replace(tzinfo=zone)
