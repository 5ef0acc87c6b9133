"""Marshmallow fields for the clinic profile's TOML values, with errors an admin can act on."""

from __future__ import annotations

import re
import string
from datetime import date, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import ValidationError, fields

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_RANGE = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")

REQUIRED = {"required": "is required"}


def _type_name(value) -> str:
    return type(value).__name__


def parse_duration(value, *, positive: bool = False) -> timedelta:
    """Parse "90s", "15m", "2h" or "1d" into a timedelta (more than zero when `positive`)."""
    if not isinstance(value, str) or not (m := _DURATION.match(value)):
        raise ValidationError(f"{value!r} is not a duration like '90s', '15m', '2h' or '1d'")
    duration = timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    if positive and not duration:
        raise ValidationError(f"{value!r} must be more than zero")
    return duration


def parse_clock(value) -> time:
    """Parse "08:30" into a time."""
    m = _CLOCK.match(value) if isinstance(value, str) else None
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ValidationError(f"{value!r} is not a time like '08:30'")
    return time(int(m.group(1)), int(m.group(2)))


def parse_time_range(value) -> tuple[time, time]:
    """Parse "09:00-12:00" into (start, end), end after start."""
    m = _RANGE.match(value.strip()) if isinstance(value, str) else None
    if not m:
        raise ValidationError(f"{value!r} is not a range like '09:00-12:00'")
    start = parse_clock(f"{m.group(1)}:{m.group(2)}")
    end = parse_clock(f"{m.group(3)}:{m.group(4)}")
    if end <= start:
        raise ValidationError(f"{value!r} ends before it starts")
    return start, end


class Text(fields.String):
    """A TOML string (numbers are refused, not converted)."""

    default_error_messages = {**REQUIRED, "invalid": "must be a str"}


class Flag(fields.Field):
    """A TOML boolean: true or false."""

    default_error_messages = {**REQUIRED}

    def _deserialize(self, value, attr, data, **kwargs) -> bool:
        if not isinstance(value, bool):
            raise ValidationError(f"{value!r} is not true or false")
        return value


class WholeNumber(fields.Field):
    """A TOML integer within [low, high]; booleans are not numbers here."""

    default_error_messages = {**REQUIRED}

    def __init__(self, low: int, high: int | None = None, **kw):
        super().__init__(**kw)
        self.low, self.high = low, high

    def _deserialize(self, value, attr, data, **kwargs) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"{value!r} is not a whole number")
        if value < self.low or (self.high is not None and value > self.high):
            span = f"from {self.low} to {self.high}" if self.high is not None else ""
            raise ValidationError(f"must be a whole number {span or f'of at least {self.low}'}")
        return value


class Duration(fields.Field):
    """A duration string like "90s", "15m", "2h", "1d"."""

    default_error_messages = {**REQUIRED}

    def __init__(self, *, positive: bool = False, **kw):
        super().__init__(**kw)
        self.positive = positive

    def _deserialize(self, value, attr, data, **kwargs) -> timedelta:
        return parse_duration(value, positive=self.positive)


class TimeZone(fields.Field):
    """An IANA time zone name like "Europe/Berlin"."""

    default_error_messages = {**REQUIRED}

    def _deserialize(self, value, attr, data, **kwargs) -> ZoneInfo:
        if not isinstance(value, str):
            raise ValidationError("must be a str")
        try:
            return ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationError(f"{value!r} is not an IANA time zone") from None


class QuietHours(fields.Field):
    """["21:00", "08:00"] (may span midnight), or [] for none."""

    def _deserialize(self, value, attr, data, **kwargs) -> tuple[time, time] | None:
        if value == []:
            return None
        if not isinstance(value, list) or len(value) != 2:
            raise ValidationError("must be [start, end] or []")
        return parse_clock(value[0]), parse_clock(value[1])


class Weekly(fields.Field):
    """Opening hours or breaks: { mon = ["09:00-12:00", ...], ... }, errors named per weekday."""

    default_error_messages = {**REQUIRED}

    def _deserialize(self, value, attr, data, **kwargs) -> dict[str, list[tuple[time, time]]]:
        if not isinstance(value, dict):
            raise ValidationError("must be a table of weekday = ['HH:MM-HH:MM', ...]")
        out, errors = {}, {}
        for day, ranges in value.items():
            try:
                if day not in WEEKDAYS:
                    raise ValidationError(f"unknown weekday (use {', '.join(WEEKDAYS)})")
                if not isinstance(ranges, list):
                    raise ValidationError("must be a list of ranges")
                out[day] = sorted(parse_time_range(r) for r in ranges)
            except ValidationError as exc:
                errors[day] = exc.messages
        if errors:
            raise ValidationError(errors)
        return out


class Closure(fields.Field):
    """A closed day or span: "2026-12-31", "2026-12-24..2026-12-26", a TOML date or {from, to}."""

    def _deserialize(self, value, attr, data, **kwargs) -> tuple[date, date]:
        try:
            if isinstance(value, date):
                span = (value, value)
            elif isinstance(value, str) and ".." in value:
                a, b = value.split("..", 1)
                span = (date.fromisoformat(a.strip()), date.fromisoformat(b.strip()))
            elif isinstance(value, str):
                day = date.fromisoformat(value.strip())
                span = (day, day)
            elif isinstance(value, dict):
                a = value.get("from") or value.get("start")
                b = value.get("to") or value.get("end") or a
                a = a if isinstance(a, date) else date.fromisoformat(str(a))
                b = b if isinstance(b, date) else date.fromisoformat(str(b))
                span = (a, b)
            else:
                raise ValueError
        except (ValueError, TypeError):
            raise ValidationError(
                "must be a date, 'YYYY-MM-DD..YYYY-MM-DD' or {from, to}"
            ) from None
        if span[1] < span[0]:
            raise ValidationError("ends before it starts")
        return span


class Localized(fields.Field):
    """A text in every language ("Hello") or per language ({ en = "Hello", es = "Hola" })."""

    default_error_messages = {**REQUIRED}

    def _deserialize(self, value, attr, data, **kwargs) -> str | dict[str, str]:
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and value and all(isinstance(v, str) for v in value.values()):
            return dict(value)
        raise ValidationError("must be a text or a table of language = text")


class Table(fields.Nested):
    """A TOML table ([name]) validated by a nested schema; a non-table says what it got."""

    def _deserialize(self, value, attr, data, partial=None, **kwargs):
        if not isinstance(value, dict):
            raise ValidationError(f"must be a table ([{attr}]), not {_type_name(value)}")
        return super()._deserialize(value, attr, data, partial=partial, **kwargs)


class Entries(fields.List):
    """An array of tables ([[name]]), each validated by a nested schema."""

    def __init__(self, schema, **kw):
        super().__init__(fields.Nested(schema), **kw)

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list):
            raise ValidationError(f"must be an array of tables ([[{attr}]])")
        errors = {i: ["must be a table"] for i, v in enumerate(value) if not isinstance(v, dict)}
        if errors:
            raise ValidationError(errors)
        return super()._deserialize(value, attr, data, **kwargs)


class Phrases(fields.Field):
    """Trigger phrases: a list for every language, or a table of language = [phrases]."""

    default_error_messages = {**REQUIRED}
    SHAPE = 'must be a list of phrases or a table like en = ["parking", "where can I park"]'

    def _deserialize(self, value, attr, data, **kwargs) -> list[str] | dict[str, list[str]]:
        if isinstance(value, list):
            return self._phrases(value)
        if not isinstance(value, dict) or not value:
            raise ValidationError(self.SHAPE)
        out, errors = {}, {}
        for lang, phrases in value.items():
            try:
                out[lang] = self._phrases(phrases)
            except ValidationError as exc:
                errors[lang] = exc.messages
        if errors:
            raise ValidationError(errors)
        return out

    def _phrases(self, value) -> list[str]:
        if not isinstance(value, list) or not value:
            raise ValidationError(self.SHAPE)
        bad = [i for i, p in enumerate(value) if not isinstance(p, str) or not p.strip()]
        if bad:
            raise ValidationError(f"phrase {bad[0] + 1} must be a non-empty text")
        return [p.strip() for p in value]


def check_placeholders(template: str, allowed: tuple[str, ...]) -> None:
    """Refuse a text with a {placeholder} the app does not fill, or a stray brace."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError:
        raise ValidationError("has a { or } on its own: write {{ or }} for a brace") from None
    unknown = [n for n in names if n not in allowed]
    if unknown:
        known = ", ".join("{" + a + "}" for a in allowed)
        raise ValidationError(f"unknown placeholder {{{unknown[0]}}}: use {known}")
