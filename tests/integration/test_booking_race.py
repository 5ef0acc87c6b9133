"""Double booking is impossible under concurrency: real parallel transactions on PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from clinic_bot.domain import booking
from clinic_bot.models import Appointment
from tests.booking_support import make_profile, patient
from tests.conftest import TEST_DATABASE_URL

pytestmark = pytest.mark.skipif(
    not TEST_DATABASE_URL,
    reason="a real race needs concurrent writers: SQLite serializes every write transaction",
)

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
PROFILE = make_profile(booking={"horizon_days": 60})
ROUNDS = 25
RACERS = 4


def slot_starts() -> list[datetime]:
    """Distinct free slot starts of Dr. Lee, one per round."""
    out = []
    day = date(2026, 12, 1)
    while len(out) < ROUNDS:
        if day.weekday() in (1, 2, 3):  # Tue-Thu mornings: 09:00, 09:30, ... 11:30
            for minutes in range(0, 180, 30):
                wall = datetime.combine(day, time(9, 0)) + timedelta(minutes=minutes)
                out.append(wall.replace(tzinfo=BERLIN).astimezone(UTC))
        day += timedelta(days=1)
    return out[:ROUNDS]


def race(runtime, phones, start, practitioner_id="dr-lee", profile=PROFILE, **kw):
    """Let every racer book `start` at the same moment; return their outcomes."""
    barrier = threading.Barrier(len(phones))
    outcomes: list[str] = [""] * len(phones)

    def racer(i: int, phone: str):
        try:
            with runtime.db.transaction() as s:
                who = patient(s, phone, NOW)
                barrier.wait(timeout=10)
                a = booking.book(
                    s,
                    profile,
                    patient=who,
                    service_id="checkup",
                    practitioner_id=practitioner_id,
                    starts_at=start,
                    now=NOW,
                    **kw,
                )
                outcomes[i] = f"won:{a.practitioner_id}"
        except booking.SlotTaken:
            outcomes[i] = "taken"
        except booking.Conflict:
            outcomes[i] = "conflict"
        except Exception as exc:  # noqa: BLE001  (anything else is a failure to report)
            outcomes[i] = f"error:{exc!r}"

    threads = [threading.Thread(target=racer, args=(i, p)) for i, p in enumerate(phones)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return outcomes


def test_patients_racing_for_one_slot_get_exactly_one_booking_each_round(runtime):
    phones = [f"49151000000{i:02d}" for i in range(RACERS)]
    with runtime.db.transaction() as s:  # create the patients up front, outside the race
        for phone in phones:
            patient(s, phone, NOW)
    for start in slot_starts():
        outcomes = race(runtime, phones, start)
        assert sorted(outcomes) == ["taken"] * (RACERS - 1) + ["won:dr-lee"], outcomes
    with runtime.db.Session() as s:
        per_start = s.execute(
            select(Appointment.starts_at, func.count()).group_by(Appointment.starts_at)
        ).all()
    assert len(per_start) == ROUNDS and all(n == 1 for _, n in per_start)


def test_api_clients_racing_for_one_practitioner_get_one_booking_and_conflicts(runtime):
    phones = [f"49151000001{i:02d}" for i in range(RACERS)]
    with runtime.db.transaction() as s:
        for phone in phones:
            patient(s, phone, NOW)
    for start in slot_starts()[:10]:
        outcomes = race(
            runtime, phones, start + timedelta(hours=12), enforce_hours=False, source="api"
        )
        assert sorted(outcomes) == ["conflict"] * (RACERS - 1) + ["won:dr-lee"], outcomes


def test_racing_for_any_practitioner_fills_each_practitioner_once(runtime):
    two = make_profile(
        booking={"horizon_days": 60},
        practitioners=[
            {"id": "dr-lee", "name": "Dr. Lee", "hours": {"tue": ["09:00-12:00"]}},
            {"id": "dr-ortiz", "name": "Dr. Ortiz", "hours": {"tue": ["09:00-12:00"]}},
        ],
    )
    phones = [f"49151000002{i:02d}" for i in range(RACERS)]
    with runtime.db.transaction() as s:
        for phone in phones:
            patient(s, phone, NOW)
    for minutes in range(0, 180, 30):
        start = datetime(2026, 12, 1, 8, 0, tzinfo=UTC) + timedelta(minutes=minutes)
        outcomes = race(runtime, phones, start, practitioner_id=None, profile=two)
        assert sorted(outcomes) == ["taken"] * (RACERS - 2) + ["won:dr-lee", "won:dr-ortiz"]
