"""Free slots: weekly hours − breaks − closures − active appointments − busy blocks, clinic-local.

Busy blocks (imported busy time, staff blocks) take their practitioner's time; a block with no
practitioner takes everyone's.

Slot rules are wall-clock rules (a slot every `slot_step` from the start of each working
window, clinic-local), but every slot is an instant range in UTC lasting the service's real
duration. On daylight-saving days a wall time that does not exist is skipped, and a wall
time that exists twice is offered once (its first occurrence).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from clinic_bot.core.clock import first_instant_from, local_day_bounds, local_instant, local_today
from clinic_bot.domain.profile import WEEKDAYS, Practitioner, Profile
from clinic_bot.models.appointments import ACTIVE_STATUSES, Appointment
from clinic_bot.models.calendar import BusyBlock


@dataclass(frozen=True)
class Slot:
    """A bookable start for one practitioner; instants are aware UTC."""

    practitioner_id: str
    starts_at: datetime
    ends_at: datetime


Interval = tuple[datetime, datetime]


def is_closed(profile: Profile, day: date) -> bool:
    """True when `day` falls in one of the profile's closures."""
    return any(first <= day <= last for first, last in profile.closures)


def last_bookable_day(profile: Profile, now: datetime) -> date:
    """The last clinic-local date patients may book: today plus `horizon_days`."""
    return local_today(now, profile.timezone) + timedelta(days=profile.horizon_days)


def _subtract(
    ranges: list[tuple[time, time]], cuts: list[tuple[time, time]]
) -> list[tuple[time, time]]:
    """Wall-time ranges minus other wall-time ranges (breaks)."""
    out = list(ranges)
    for cut_start, cut_end in cuts:
        nxt = []
        for start, end in out:
            if cut_end <= start or cut_start >= end:
                nxt.append((start, end))
                continue
            if start < cut_start:
                nxt.append((start, cut_start))
            if cut_end < end:
                nxt.append((cut_end, end))
        out = nxt
    return out


def _candidate_starts(
    practitioner: Practitioner, day: date, profile: Profile
) -> Iterable[tuple[datetime, datetime]]:
    """Every (start, window end) on the wall-clock step grid of each working window."""
    tz = profile.timezone
    weekday = WEEKDAYS[day.weekday()]
    ranges = _subtract(practitioner.hours.get(weekday, []), practitioner.breaks.get(weekday, []))
    for start, end in sorted(ranges):
        window_end = first_instant_from(day, end, tz)
        wall = datetime.combine(day, start)
        stop = datetime.combine(day, end)
        while wall < stop:
            instant = local_instant(day, wall.time(), tz)
            if instant is not None:
                yield instant, window_end
            wall += profile.slot_step


def busy_intervals(
    session: Session,
    practitioner_ids: list[str],
    start: datetime,
    end: datetime,
    *,
    ignore_ids: Iterable[int] = (),
) -> dict[str, list[Interval]]:
    """Active appointments (any source) and busy blocks of these practitioners in [start, end).

    A busy block without a practitioner counts for every one of them.
    """
    if not practitioner_ids:
        return {}
    stmt = select(Appointment.practitioner_id, Appointment.starts_at, Appointment.ends_at).where(
        Appointment.practitioner_id.in_(practitioner_ids),
        Appointment.status.in_(ACTIVE_STATUSES),
        Appointment.starts_at < end,
        Appointment.ends_at > start,
    )
    ignore = list(ignore_ids)
    if ignore:
        stmt = stmt.where(Appointment.id.not_in(ignore))
    out: dict[str, list[Interval]] = {pid: [] for pid in practitioner_ids}
    for pid, s, e in session.execute(stmt):
        out[pid].append((s, e))
    blocks = select(BusyBlock.practitioner_id, BusyBlock.starts_at, BusyBlock.ends_at).where(
        or_(BusyBlock.practitioner_id.in_(practitioner_ids), BusyBlock.practitioner_id.is_(None)),
        BusyBlock.cancelled.is_(False),
        BusyBlock.starts_at < end,
        BusyBlock.ends_at > start,
    )
    for pid, s, e in session.execute(blocks):
        for target in practitioner_ids if pid is None else [pid]:
            out[target].append((s, e))
    return out


def candidates(
    profile: Profile, service_id: str, practitioner_id: str | None
) -> list[Practitioner]:
    """The practitioners to look at, in profile order; empty for an unknown or unoffered choice."""
    if profile.service(service_id) is None:
        return []
    offering = [p for p in profile.practitioners if service_id in p.services]
    if practitioner_id is None:
        return offering
    return [p for p in offering if p.id == practitioner_id]


def _slots_for_day(
    profile: Profile,
    practitioners: list[Practitioner],
    duration: timedelta,
    day: date,
    now: datetime,
    busy: dict[str, list[Interval]],
    one_per_start: bool,
) -> list[Slot]:
    if is_closed(profile, day):
        return []
    today = local_today(now, profile.timezone)
    if day < today or day > last_bookable_day(profile, now):
        return []
    earliest = now + profile.min_notice
    slots: list[Slot] = []
    for order, p in enumerate(practitioners):
        taken = busy.get(p.id, [])
        for start, window_end in _candidate_starts(p, day, profile):
            end = start + duration
            if start < earliest or start <= now or end > window_end:
                continue
            if any(s < end and start < e for s, e in taken):
                continue
            slots.append((start, order, Slot(p.id, start, end)))
    slots.sort(key=lambda item: (item[0], item[1]))
    result: list[Slot] = []
    seen: set[datetime] = set()
    for start, _order, slot in slots:
        if one_per_start and start in seen:
            continue
        seen.add(start)
        result.append(slot)
    return result


def free_slots(
    session: Session,
    profile: Profile,
    *,
    service_id: str,
    practitioner_id: str | None,
    day: date,
    now: datetime,
    ignore_ids: Iterable[int] = (),
) -> list[Slot]:
    """Free slots on clinic-local `day`; practitioner None = any practitioner offering the service;
    sorted by start, then practitioner order in the profile; with "any", one slot per start time.

    `ignore_ids` leaves those appointments out of the busy times (a reschedule's own row).
    """
    service = profile.service(service_id)
    practitioners = candidates(profile, service_id, practitioner_id)
    if service is None or not practitioners:
        return []
    start, end = local_day_bounds(day, profile.timezone)
    busy = busy_intervals(session, [p.id for p in practitioners], start, end, ignore_ids=ignore_ids)
    return _slots_for_day(
        profile, practitioners, service.duration, day, now, busy, practitioner_id is None
    )


def days_with_free_slots(
    session: Session,
    profile: Profile,
    *,
    service_id: str,
    practitioner_id: str | None,
    now: datetime,
    limit: int = 10,
    after: date | None = None,
) -> list[date]:
    """Clinic-local dates within the booking horizon that have at least one free slot.

    `after` pages on: only dates strictly later than it are returned.
    """
    service = profile.service(service_id)
    practitioners = candidates(profile, service_id, practitioner_id)
    if service is None or not practitioners or limit <= 0:
        return []
    tz = profile.timezone
    first = local_today(now, tz)
    if after is not None and after >= first:
        first = after + timedelta(days=1)
    last = last_bookable_day(profile, now)
    if first > last:
        return []
    # One query for the whole range, instead of one per day.
    range_start = local_day_bounds(first, tz)[0]
    range_end = local_day_bounds(last, tz)[1]
    busy = busy_intervals(session, [p.id for p in practitioners], range_start, range_end)
    days: list[date] = []
    day = first
    while day <= last and len(days) < limit:
        if _slots_for_day(profile, practitioners, service.duration, day, now, busy, True):
            days.append(day)
        day += timedelta(days=1)
    return days
