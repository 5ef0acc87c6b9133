"""Free slots: hours − breaks − closures − appointments, in the clinic's zone, DST-correct."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinic_bot.domain.availability import days_with_free_slots, free_slots, local_instant
from clinic_bot.models import Appointment
from tests.booking_support import make_profile

BERLIN = ZoneInfo("Europe/Berlin")
TUESDAY = date(2026, 12, 1)
BEFORE_TUESDAY = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)  # Monday morning


def berlin(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=BERLIN).astimezone(UTC)


def appt(session, start: datetime, minutes: int = 20, **kw) -> Appointment:
    kw.setdefault("practitioner_id", "dr-lee")
    a = Appointment(
        starts_at=start,
        ends_at=start + timedelta(minutes=minutes),
        status=kw.pop("status", "booked"),
        source=kw.pop("source", "whatsapp"),
        version=1,
        created_at=start,
        updated_at=start,
        **kw,
    )
    session.add(a)
    session.flush()
    return a


def two_doctors():
    return make_profile(
        practitioners=[
            {"id": "dr-lee", "name": "Dr. Lee", "hours": {"tue": ["09:00-10:00"]}},
            {"id": "dr-ortiz", "name": "Dr. Ortiz", "hours": {"tue": ["09:00-10:00"]}},
        ]
    )


@pytest.fixture
def session(runtime):
    with runtime.db.Session() as s:
        yield s
        s.rollback()


def slots(session, profile, day=TUESDAY, now=BEFORE_TUESDAY, practitioner_id="dr-lee"):
    return free_slots(
        session,
        profile,
        service_id="checkup",
        practitioner_id=practitioner_id,
        day=day,
        now=now,
    )


def test_a_tuesday_has_slots_every_step_inside_hours_and_around_the_break(session):
    profile = make_profile()
    got = slots(session, profile)
    local = [s.starts_at.astimezone(BERLIN).strftime("%H:%M") for s in got]
    assert local[0] == "09:00" and local[10] == "11:30"  # 11:45 + 20 min would cross the break
    assert local[11] == "13:00" and local[-1] == "16:30"  # 16:45 + 20 min would pass 17:00
    assert len(got) == 11 + 15
    assert all(s.ends_at - s.starts_at == timedelta(minutes=20) for s in got)
    assert got[0].starts_at == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)  # stored in UTC


def test_a_closed_day_and_a_day_without_hours_have_no_slots(session):
    profile = make_profile()
    assert slots(session, profile, day=date(2026, 12, 24), now=BEFORE_TUESDAY) == []
    assert slots(session, profile, day=date(2026, 12, 5)) == []  # a Saturday


def test_no_slot_starts_within_the_minimum_notice(session):
    profile = make_profile()
    now = berlin(TUESDAY, 9, 5)
    got = slots(session, profile, now=now)
    assert got[0].starts_at == berlin(TUESDAY, 11, 15)  # 09:05 + 2h, rounded up to the grid


def test_no_slot_lies_beyond_the_booking_horizon(session):
    profile = make_profile(booking={"horizon_days": 7})
    assert slots(session, profile, day=date(2026, 12, 8)) == []  # Monday + 8 days
    assert slots(session, profile, day=date(2026, 12, 7)) != []


def test_active_appointments_of_any_source_block_their_slots(session):
    profile = make_profile()
    appt(session, berlin(TUESDAY, 9, 0), source="ics")
    appt(session, berlin(TUESDAY, 10, 0), minutes=60, source="api")
    local = {s.starts_at.astimezone(BERLIN).strftime("%H:%M") for s in slots(session, profile)}
    assert "09:00" not in local and "09:15" not in local and "09:30" in local
    assert "09:45" not in local  # would run into 10:00
    assert not {"10:00", "10:15", "10:30", "10:45"} & local and "11:00" in local


def test_cancelled_unassigned_and_other_practitioners_appointments_do_not_block(session):
    profile = make_profile()
    appt(session, berlin(TUESDAY, 9, 0), status="cancelled")
    appt(session, berlin(TUESDAY, 9, 0), practitioner_id=None, source="api")
    appt(session, berlin(TUESDAY, 9, 0), practitioner_id="dr-someone-else")
    assert slots(session, profile)[0].starts_at == berlin(TUESDAY, 9, 0)


def test_any_practitioner_offers_one_slot_per_start_in_profile_order(session):
    profile = two_doctors()
    got = slots(session, profile, practitioner_id=None)
    assert [s.practitioner_id for s in got] == ["dr-lee"] * 3
    appt(session, berlin(TUESDAY, 9, 0))
    got = slots(session, profile, practitioner_id=None)
    assert [(s.starts_at, s.practitioner_id) for s in got] == [
        (berlin(TUESDAY, 9, 0), "dr-ortiz"),
        (berlin(TUESDAY, 9, 15), "dr-ortiz"),
        (berlin(TUESDAY, 9, 30), "dr-lee"),
    ]


def test_a_practitioner_who_does_not_offer_the_service_has_no_slots(session):
    profile = make_profile(
        services=[
            {"id": "checkup", "name": "Check-up", "duration": "20m"},
            {"id": "xray", "name": "X-ray", "duration": "10m"},
        ],
        practitioners=[
            {
                "id": "dr-lee",
                "name": "Dr. Lee",
                "services": ["xray"],
                "hours": {"tue": ["9:00-10:00"]},
            }
        ],
    )
    assert slots(session, profile) == []
    assert slots(session, profile, practitioner_id=None) == []
    assert (
        free_slots(
            session,
            profile,
            service_id="nope",
            practitioner_id=None,
            day=TUESDAY,
            now=BEFORE_TUESDAY,
        )
        == []
    )


def night_shift(day: str):
    return make_profile(
        booking={"horizon_days": 365},
        practitioners=[{"id": "dr-lee", "name": "Dr. Lee", "hours": {day: ["01:00-04:00"]}}],
    )


def test_spring_forward_day_has_no_slot_at_a_wall_time_that_does_not_exist(session):
    day = date(2027, 3, 28)  # Berlin: 02:00 CET jumps to 03:00 CEST
    got = slots(session, night_shift("sun"), day=day, now=datetime(2027, 3, 20, tzinfo=UTC))
    local = [s.starts_at.astimezone(BERLIN).strftime("%H:%M") for s in got]
    assert local == ["01:00", "01:15", "01:30", "01:45", "03:00", "03:15", "03:30"]
    # 01:45 CET + 20 minutes of real time is 03:05 CEST.
    assert got[3].ends_at.astimezone(BERLIN).strftime("%H:%M") == "03:05"


def test_fall_back_day_offers_each_wall_time_once(session):
    day = date(2027, 10, 31)  # Berlin: 03:00 CEST falls back to 02:00 CET
    got = slots(session, night_shift("sun"), day=day, now=datetime(2027, 10, 20, tzinfo=UTC))
    local = [s.starts_at.astimezone(BERLIN).strftime("%H:%M") for s in got]
    assert local == [f"{h:02d}:{m:02d}" for h in (1, 2, 3) for m in (0, 15, 30, 45)][:-1]
    assert len({s.starts_at for s in got}) == len(got)
    assert all(a.starts_at < b.starts_at for a, b in zip(got, got[1:], strict=False))
    # 02:45 CEST to 03:00 CET is 75 minutes of real time; no 02:xx CET slot is offered.
    assert got[8].starts_at - got[7].starts_at == timedelta(minutes=75)


def test_local_instant_refuses_a_nonexistent_wall_time_and_takes_the_first_of_two():
    assert local_instant(date(2027, 3, 28), time(2, 30), BERLIN) is None
    first = local_instant(date(2027, 10, 31), time(2, 30), BERLIN)
    assert first == datetime(2027, 10, 31, 0, 30, tzinfo=UTC)


def test_days_with_free_slots_skip_closed_and_full_days_and_page_on(session):
    profile = make_profile()
    now = datetime(2026, 12, 21, 6, 0, tzinfo=UTC)  # Monday before Christmas
    days = days_with_free_slots(
        session, profile, service_id="checkup", practitioner_id=None, now=now, limit=5
    )
    assert days == [
        date(2026, 12, 21),
        date(2026, 12, 22),
        date(2026, 12, 23),
        date(2026, 12, 28),
        date(2026, 12, 29),
    ]
    later = days_with_free_slots(
        session,
        profile,
        service_id="checkup",
        practitioner_id=None,
        now=now,
        limit=2,
        after=days[-1],
    )
    assert later == [date(2026, 12, 30), date(2027, 1, 4)]
    # Fill Tuesday 22nd completely: it disappears from the list.
    appt(session, berlin(date(2026, 12, 22), 9, 0), minutes=8 * 60)
    days = days_with_free_slots(
        session, profile, service_id="checkup", practitioner_id=None, now=now, limit=3
    )
    assert days == [date(2026, 12, 21), date(2026, 12, 23), date(2026, 12, 28)]


def test_days_with_free_slots_end_at_the_horizon(session):
    profile = make_profile(booking={"horizon_days": 3})
    days = days_with_free_slots(
        session, profile, service_id="checkup", practitioner_id=None, now=BEFORE_TUESDAY
    )
    assert days == [date(2026, 11, 30), date(2026, 12, 1), date(2026, 12, 2), date(2026, 12, 3)]


# ---- properties -------------------------------------------------------------------------

EXAMPLE = make_profile()
WEEK = [date(2026, 11, 30) + timedelta(days=i) for i in range(7)]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    day=st.sampled_from(WEEK),
    now_minutes=st.integers(min_value=0, max_value=6 * 24 * 60),
    booked=st.lists(
        st.tuples(st.integers(min_value=0, max_value=7 * 24 * 4), st.integers(1, 12)),
        max_size=12,
    ),
)
def test_free_slots_never_overlap_appointments_never_start_too_soon_and_stay_in_hours(
    runtime, day, now_minutes, booked
):
    now = datetime(2026, 11, 30, 0, 0, tzinfo=UTC) + timedelta(minutes=now_minutes)
    with runtime.db.Session() as session:
        busy = []
        for quarter, length in booked:
            start = datetime(2026, 11, 30, tzinfo=BERLIN).astimezone(UTC) + timedelta(
                minutes=15 * quarter
            )
            busy.append(appt(session, start, minutes=10 * length))
        got = slots(session, EXAMPLE, day=day, now=now)
        session.rollback()
    lee = EXAMPLE.practitioner("dr-lee")
    weekday = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[day.weekday()]
    for s in got:
        assert s.starts_at >= now + EXAMPLE.min_notice
        assert not any(a.starts_at < s.ends_at and s.starts_at < a.ends_at for a in busy)
        start, end = s.starts_at.astimezone(BERLIN), s.ends_at.astimezone(BERLIN)
        assert start.date() == day
        assert any(a <= start.time() and end.time() <= b for a, b in lee.hours[weekday])
        assert not any(a < end.time() and start.time() < b for a, b in lee.breaks.get(weekday, []))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    zone=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC"]),
    day=st.sampled_from(
        [
            date(2027, 3, 14),
            date(2027, 3, 28),
            date(2027, 4, 4),
            date(2027, 10, 3),
            date(2027, 10, 31),
            date(2027, 11, 7),
            date(2027, 6, 6),
        ]
    ),
    step=st.sampled_from(["5m", "15m", "30m"]),
)
def test_slots_on_any_day_exist_as_wall_times_are_distinct_and_last_real_duration(
    runtime, zone, day, step
):
    profile = make_profile(
        clinic={"timezone": zone},
        booking={"horizon_days": 365, "slot_step": step},
        practitioners=[{"id": "dr-lee", "name": "Dr. Lee", "hours": {"sun": ["00:00-23:59"]}}],
    )
    tz = ZoneInfo(zone)
    with runtime.db.Session() as session:
        got = slots(session, profile, day=day, now=datetime(2027, 1, 1, tzinfo=UTC))
    assert got
    starts = [s.starts_at for s in got]
    assert starts == sorted(set(starts))
    for s in got:
        wall = s.starts_at.astimezone(tz)
        assert wall.date() == day
        assert local_instant(day, wall.time().replace(fold=0), tz) == s.starts_at
        assert s.ends_at - s.starts_at == timedelta(minutes=20)
