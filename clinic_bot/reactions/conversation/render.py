"""Dates and times as the patient reads them: clinic-local, in the patient's language."""

from __future__ import annotations

from datetime import date, datetime


def local(profile, instant: datetime) -> datetime:
    """An aware instant in the clinic's zone."""
    return instant.astimezone(profile.timezone)


def _names(profile, key: str, lang: str) -> list[str]:
    return [name.strip() for name in profile.text(key, lang).split(",")]


def day_label(profile, lang: str, day: date) -> str:
    """A short day label for list rows: 'Tue 1 Dec'."""
    return profile.text(
        "conv_day_short",
        lang,
        weekday=_names(profile, "conv_weekdays", lang)[day.weekday()],
        day=day.day,
        month=_names(profile, "conv_months", lang)[day.month - 1],
    )


def day_long(profile, lang: str, day: date) -> str:
    """A full date for confirmations: 'Tuesday, 1 December 2026'."""
    return profile.text(
        "conv_day_long",
        lang,
        weekday=_names(profile, "conv_weekdays_long", lang)[day.weekday()],
        day=day.day,
        month=_names(profile, "conv_months_long", lang)[day.month - 1],
        year=day.year,
    )


def clock(profile, instant: datetime) -> str:
    """The clinic-local time of day, 24-hour: '09:15'."""
    return local(profile, instant).strftime("%H:%M")


def when(profile, lang: str, instant: datetime) -> str:
    """Clinic-local date and time in one phrase."""
    at = local(profile, instant)
    return profile.text(
        "conv_when", lang, date=day_long(profile, lang, at.date()), time=clock(profile, instant)
    )


def when_short(profile, lang: str, instant: datetime) -> str:
    """Short clinic-local date and time for list rows: 'Tue 1 Dec 09:15'."""
    at = local(profile, instant)
    return f"{day_label(profile, lang, at.date())} {clock(profile, instant)}"
