"""The clinic profile: a TOML file loaded and validated at start-up (CONTRACT §3)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clinic_bot.settings import EXAMPLE_PROFILE

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_RANGE = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")


class ProfileError(ValueError):
    """A clinic profile that does not validate; the message names the key."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"clinic profile: {key}: {problem}")
        self.key = key
        self.problem = problem


def parse_duration(value: str, key: str = "duration", *, positive: bool = False) -> timedelta:
    """Parse "90s", "15m", "2h" or "1d" into a timedelta (more than zero when `positive`)."""
    if not isinstance(value, str) or not (m := _DURATION.match(value)):
        raise ProfileError(key, f"{value!r} is not a duration like '90s', '15m', '2h' or '1d'")
    duration = timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    if positive and not duration:
        raise ProfileError(key, f"{value!r} must be more than zero")
    return duration


def _table(data: dict, name: str) -> dict:
    """An optional top-level table; present but not a table is an error naming it."""
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProfileError(name, f"must be a table ([{name}]), not {type(value).__name__}")
    return value


def _whole(value, key: str, low: int, high: int | None = None) -> int:
    """A whole number in range; TOML booleans are not numbers here."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProfileError(key, f"{value!r} is not a whole number")
    if value < low or (high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise ProfileError(key, f"must be a whole number {span}")
    return value


def _clock(value: str, key: str) -> time:
    m = _CLOCK.match(value) if isinstance(value, str) else None
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ProfileError(key, f"{value!r} is not a time like '08:30'")
    return time(int(m.group(1)), int(m.group(2)))


def _time_range(value: str, key: str) -> tuple[time, time]:
    m = _RANGE.match(value.strip()) if isinstance(value, str) else None
    if not m:
        raise ProfileError(key, f"{value!r} is not a range like '09:00-12:00'")
    start = _clock(f"{m.group(1)}:{m.group(2)}", key)
    end = _clock(f"{m.group(3)}:{m.group(4)}", key)
    if end <= start:
        raise ProfileError(key, f"{value!r} ends before it starts")
    return start, end


def _weekly(table, key: str) -> dict[str, list[tuple[time, time]]]:
    if not isinstance(table, dict):
        raise ProfileError(key, "must be a table of weekday = ['HH:MM-HH:MM', ...]")
    out: dict[str, list[tuple[time, time]]] = {}
    for day, ranges in table.items():
        if day not in WEEKDAYS:
            raise ProfileError(f"{key}.{day}", f"unknown weekday (use {', '.join(WEEKDAYS)})")
        if not isinstance(ranges, list):
            raise ProfileError(f"{key}.{day}", "must be a list of ranges")
        out[day] = sorted(_time_range(r, f"{key}.{day}") for r in ranges)
    return out


def _require(table: dict, name: str, key: str, kind=str):
    if name not in table:
        raise ProfileError(f"{key}.{name}" if key else name, "is required")
    value = table[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProfileError(f"{key}.{name}" if key else name, f"must be a {kind.__name__}")
    return value


@dataclass
class Service:
    id: str
    name: str
    duration: timedelta


@dataclass
class Practitioner:
    id: str
    name: str
    services: list[str]
    hours: dict[str, list[tuple[time, time]]]
    breaks: dict[str, list[tuple[time, time]]] = field(default_factory=dict)


@dataclass
class IntakeQuestion:
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


def _default_texts() -> dict[str, dict[str, str]]:
    with EXAMPLE_PROFILE.open("rb") as fh:
        return tomllib.load(fh).get("texts", {})


def _closures(items, key: str) -> list[tuple[date, date]]:
    out = []
    for i, item in enumerate(items or []):
        k = f"{key}[{i}]"
        try:
            if isinstance(item, date):
                out.append((item, item))
            elif isinstance(item, str) and ".." in item:
                a, b = item.split("..", 1)
                out.append((date.fromisoformat(a.strip()), date.fromisoformat(b.strip())))
            elif isinstance(item, str):
                d = date.fromisoformat(item.strip())
                out.append((d, d))
            elif isinstance(item, dict):
                a = item.get("from") or item.get("start")
                b = item.get("to") or item.get("end") or a
                a = a if isinstance(a, date) else date.fromisoformat(str(a))
                b = b if isinstance(b, date) else date.fromisoformat(str(b))
                out.append((a, b))
            else:
                raise ValueError
        except (ValueError, TypeError):
            raise ProfileError(
                k, "must be a date, 'YYYY-MM-DD..YYYY-MM-DD' or {from, to}"
            ) from None
        if out[-1][1] < out[-1][0]:
            raise ProfileError(k, "ends before it starts")
    return out


def _intake(items, languages: list[str]) -> list[IntakeQuestion]:
    out = []
    seen = set()
    for i, q in enumerate(items or []):
        key = f"intake[{i}]"
        if not isinstance(q, dict):
            raise ProfileError(key, "must be a table")
        qid = _require(q, "id", key)
        if qid in seen:
            raise ProfileError(f"{key}.id", f"duplicate question id {qid!r}")
        seen.add(qid)
        kind = q.get("kind", "text")
        if kind not in ("buttons", "list", "text"):
            raise ProfileError(f"{key}.kind", "must be one of buttons, list, text")
        prompt = q.get("prompt")
        if isinstance(prompt, str):
            prompt = {lang: prompt for lang in languages}
        if not isinstance(prompt, dict) or not prompt:
            raise ProfileError(f"{key}.prompt", "must be a text or a table of language = text")
        options = []
        for j, opt in enumerate(q.get("options") or []):
            okey = f"{key}.options[{j}]"
            if isinstance(opt, str):
                opt = {"id": opt, "title": opt}
            if not isinstance(opt, dict) or "id" not in opt or "title" not in opt:
                raise ProfileError(okey, "must be a text or a table with id and title")
            title = opt["title"]
            if isinstance(title, str):
                title = {lang: title for lang in languages}
            options.append({"id": str(opt["id"]), "title": title})
        if kind in ("buttons", "list") and not options:
            raise ProfileError(f"{key}.options", f"a {kind} question needs options")
        if kind == "buttons" and len(options) > 3:
            raise ProfileError(
                f"{key}.options", "WhatsApp shows at most 3 buttons: use kind 'list'"
            )
        if kind == "list" and len(options) > 10:
            raise ProfileError(f"{key}.options", "WhatsApp lists hold at most 10 rows")
        out.append(IntakeQuestion(id=qid, kind=kind, prompt=prompt, options=options))
    return out


def parse_profile(data: dict, source: Path | None = None) -> Profile:
    """Validate a profile dict (as read from TOML); raise ProfileError naming the bad key."""
    clinic = data.get("clinic")
    if not isinstance(clinic, dict):
        raise ProfileError("clinic", "the [clinic] table is required")
    name = _require(clinic, "name", "clinic")
    tzname = _require(clinic, "timezone", "clinic")
    try:
        tz = ZoneInfo(tzname)
    except (ZoneInfoNotFoundError, ValueError):
        raise ProfileError("clinic.timezone", f"{tzname!r} is not an IANA time zone") from None
    language = clinic.get("language", "en")

    texts = {lang: dict(table) for lang, table in _default_texts().items()}
    for lang, table in _table(data, "texts").items():
        if not isinstance(table, dict):
            raise ProfileError(f"texts.{lang}", "must be a table of key = text")
        texts.setdefault(lang, {}).update({k: str(v) for k, v in table.items()})
    if language not in texts:
        raise ProfileError("clinic.language", f"no texts for language {language!r}")
    base = texts[language]
    for table in texts.values():
        for k, v in base.items():
            table.setdefault(k, v)

    rem = _table(data, "reminders")
    raw_offsets = rem.get("offsets", ["24h", "2h"])
    if not isinstance(raw_offsets, list):
        raise ProfileError("reminders.offsets", 'must be a list like ["24h", "2h"]')
    offsets = []
    for i, raw in enumerate(raw_offsets):
        offsets.append((raw, parse_duration(raw, f"reminders.offsets[{i}]", positive=True)))
    if len({label for label, _ in offsets}) != len(offsets):
        raise ProfileError("reminders.offsets", "has the same offset twice")

    bc = _table(data, "broadcasts")
    quiet = bc.get("quiet_hours", ["21:00", "08:00"])
    if quiet and (not isinstance(quiet, list) or len(quiet) != 2):
        raise ProfileError("broadcasts.quiet_hours", "must be [start, end] or []")
    quiet_hours = (
        (_clock(quiet[0], "broadcasts.quiet_hours"), _clock(quiet[1], "broadcasts.quiet_hours"))
        if quiet
        else None
    )
    daily_cap = _whole(bc.get("daily_cap", 1000), "broadcasts.daily_cap", 1)

    bk = _table(data, "booking")
    horizon = _whole(bk.get("horizon_days", 30), "booking.horizon_days", 1, 365)

    services = []
    for i, s in enumerate(data.get("services") or []):
        key = f"services[{i}]"
        if not isinstance(s, dict):
            raise ProfileError(key, "must be a table")
        sid = _require(s, "id", key)
        if any(x.id == sid for x in services):
            raise ProfileError(f"{key}.id", f"duplicate service id {sid!r}")
        duration = parse_duration(_require(s, "duration", key), f"{key}.duration", positive=True)
        services.append(Service(id=sid, name=_require(s, "name", key), duration=duration))
    if not services:
        raise ProfileError("services", "at least one [[services]] entry is required")

    practitioners = []
    for i, p in enumerate(data.get("practitioners") or []):
        key = f"practitioners[{i}]"
        if not isinstance(p, dict):
            raise ProfileError(key, "must be a table")
        pid = _require(p, "id", key)
        if pid == "any" or any(x.id == pid for x in practitioners):
            raise ProfileError(f"{key}.id", f"{pid!r} is reserved or used twice")
        offered = p.get("services", [s.id for s in services])
        if not isinstance(offered, list):
            raise ProfileError(f"{key}.services", 'must be a list of service ids like ["checkup"]')
        for sid in offered:
            if not any(s.id == sid for s in services):
                raise ProfileError(f"{key}.services", f"unknown service {sid!r}")
        practitioners.append(
            Practitioner(
                id=pid,
                name=_require(p, "name", key),
                services=list(offered),
                hours=_weekly(_require(p, "hours", key, dict), f"{key}.hours"),
                breaks=_weekly(p.get("breaks", {}), f"{key}.breaks"),
            )
        )
    if not practitioners:
        raise ProfileError("practitioners", "at least one [[practitioners]] entry is required")

    return Profile(
        name=name,
        timezone=tz,
        language=language,
        phone=str(clinic.get("phone", "")),
        address=str(clinic.get("address", "")),
        reminder_offsets=offsets,
        noshow_followup_after=parse_duration(
            rem.get("noshow_followup_after", "2h"), "reminders.noshow_followup_after"
        ),
        followup_on_delivered=bool(rem.get("followup_on_delivered", False)),
        late_send_min_before=parse_duration(
            rem.get("late_send_min_before", "30m"), "reminders.late_send_min_before"
        ),
        thank_you_after_visit=bool(rem.get("thank_you_after_visit", False)),
        broadcast_min_interval=parse_duration(
            bc.get("min_interval", "3s"), "broadcasts.min_interval"
        ),
        broadcast_jitter=parse_duration(bc.get("jitter", "2s"), "broadcasts.jitter"),
        broadcast_daily_cap=daily_cap,
        quiet_hours=quiet_hours,
        slot_step=parse_duration(bk.get("slot_step", "15m"), "booking.slot_step", positive=True),
        horizon_days=horizon,
        min_notice=parse_duration(bk.get("min_notice", "2h"), "booking.min_notice"),
        idle_reset=parse_duration(bk.get("idle_reset", "30m"), "booking.idle_reset"),
        handoff_idle=parse_duration(bk.get("handoff_idle", "24h"), "booking.handoff_idle"),
        notify_on_staff_booking=bool(bk.get("notify_patient_on_staff_booking", True)),
        # The example profile writes closures inside [booking]; a top-level key also works.
        closures=_closures(
            data["closures"] if "closures" in data else bk.get("closures", []),
            "closures" if "closures" in data else "booking.closures",
        ),
        services=services,
        practitioners=practitioners,
        intake=_intake(data.get("intake"), list(texts)),
        texts=texts,
        source=source,
    )


def load_profile(path: Path) -> Profile:
    """Read and validate the profile at `path`."""
    try:
        with Path(path).open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ProfileError(str(path), "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(str(path), f"not valid TOML: {exc}") from None
    return parse_profile(data, source=Path(path))
