"""Time helpers used everywhere: the system clock, clinic-local days, the API's instant format."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def system_clock() -> datetime:
    """The real time, aware UTC."""
    return datetime.now(UTC)


def iso_z(value: datetime | None) -> str | None:
    """UTC ISO 8601 with a Z, as the API and the staff pages show instants."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def local_instant(day: date, at: time, tz: ZoneInfo) -> datetime | None:
    """The UTC instant of wall time `at` on `day` in `tz`; None when that wall time does not exist.

    An ambiguous wall time (fall-back) gives its first occurrence. Existence is checked by a
    round trip through UTC: a wall time inside a spring-forward gap comes back different.
    """
    wall = datetime.combine(day, at, tzinfo=tz)
    utc = wall.astimezone(UTC)
    if utc.astimezone(tz).replace(tzinfo=None) != wall.replace(tzinfo=None):
        return None
    return utc


def first_instant_from(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The instant of wall time `at` on `day`; a time inside a DST gap means the end of the gap."""
    wall = datetime.combine(day, at)
    for _ in range(24 * 60):
        instant = local_instant(wall.date(), wall.time(), tz)
        if instant is not None:
            return instant
        wall += timedelta(minutes=1)
    raise ValueError(f"no existing wall time after {day} {at} in {tz}")


def local_day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants where clinic-local `day` begins and the next day begins (23–25 h)."""
    midnight = time(0, 0)
    return first_instant_from(day, midnight, tz), first_instant_from(
        day + timedelta(days=1), midnight, tz
    )


def local_today(now: datetime, tz: ZoneInfo) -> date:
    """The clinic-local date at instant `now`."""
    return now.astimezone(tz).date()
