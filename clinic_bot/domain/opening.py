"""When the clinic is open: the union of the practitioners' weekly hours, minus closures."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from clinic_bot.core.clock import first_instant_from
from clinic_bot.domain.profile import WEEKDAYS, Profile

LOOKAHEAD_DAYS = 21


def _ranges(profile: Profile, day: date) -> list[tuple[time, time]]:
    if any(first <= day <= last for first, last in profile.closures):
        return []
    key = WEEKDAYS[day.weekday()]
    ranges = sorted(r for p in profile.practitioners for r in p.hours.get(key, []))
    merged: list[tuple[time, time]] = []
    for start, end in ranges:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def is_open(profile: Profile, now: datetime) -> bool:
    """True while some practitioner's working hours include `now` (clinic-local)."""
    local = now.astimezone(profile.timezone)
    return any(start <= local.time() < end for start, end in _ranges(profile, local.date()))


def next_opening(profile: Profile, now: datetime) -> datetime | None:
    """The next instant the clinic opens after `now` (now itself when open), or None."""
    if is_open(profile, now):
        return now
    local = now.astimezone(profile.timezone)
    for offset in range(LOOKAHEAD_DAYS):
        day = local.date() + timedelta(days=offset)
        for start, _ in _ranges(profile, day):
            instant = first_instant_from(day, start, profile.timezone)
            if instant > now:
                return instant
    return None


def weekly_hours(profile: Profile) -> list[tuple[int, list[tuple[time, time]]]]:
    """(weekday 0-6, merged ranges) for each weekday the clinic opens, ignoring closures."""
    out = []
    for index, key in enumerate(WEEKDAYS):
        ranges = sorted(r for p in profile.practitioners for r in p.hours.get(key, []))
        merged: list[tuple[time, time]] = []
        for start, end in ranges:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        if merged:
            out.append((index, merged))
    return out
