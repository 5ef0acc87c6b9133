"""Broadcasts: distinct recipients, paced slots, daily cap, quiet hours, pause on refusals."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from clinic_bot.bootstrap import build_runtime
from clinic_bot.delivery.relay import Relay
from clinic_bot.domain.patients import get_or_create_patient
from clinic_bot.models import OutboxMessage
from clinic_bot.models.broadcasts import BroadcastRecipient
from clinic_bot.schedules.broadcasts import pace
from clinic_bot.web.api.auth import create_token
from tests.reminders_support import book, use_profile

# 10:00 in Berlin on a Wednesday: outside the default quiet hours (21:00-08:00).
MORNING = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def phones(n: int, base: int = 0) -> list[str]:
    return [f"+49151{base + i:08d}" for i in range(n)]


@pytest.fixture
def api(runtime, client, clock):
    """An authenticated JSON client for /api/v1."""
    clock.set(MORNING)
    with runtime.db.transaction() as s:
        token = create_token(s, "reception-desk", clock())
    headers = {"Authorization": f"Bearer {token}"}

    class Api:
        def post(self, path, body=None):
            return client.post(f"/api/v1{path}", json=body, headers=headers)

        def get(self, path):
            return client.get(f"/api/v1{path}", headers=headers)

    return Api()


def slots(runtime, broadcast_id: int) -> list[datetime]:
    """Every queued recipient's send slot, in order."""
    with runtime.db.Session() as s:
        return sorted(
            s.execute(
                select(BroadcastRecipient.scheduled_at).where(
                    BroadcastRecipient.broadcast_id == broadcast_id,
                    BroadcastRecipient.scheduled_at.is_not(None),
                )
            ).scalars()
        )


def run_for(runtime, clock, seconds: int, relay: Relay | None = None) -> None:
    """Let time pass a second at a time, running the broadcast tick (and the relay)."""
    for _ in range(seconds):
        clock.advance(seconds=1)
        pace(runtime)
        if relay is not None:
            relay.drain()


def test_a_broadcast_counts_distinct_recipients_and_skips_the_opted_out(api, runtime, clock):
    with runtime.db.transaction() as s:
        get_or_create_patient(s, "4915100000009", clock()).opted_out = True
    r = api.post(
        "/broadcasts",
        {
            "text": "The clinic is closed on Friday.",
            "patient_phones": [
                "+4915100000001",
                "4915100000001@s.whatsapp.net",
                "4915100000002",
                "+4915100000009",
            ],
        },
    )
    assert r.status_code == 201, r.get_json()
    created = r.get_json()
    assert created == {"id": created["id"], "status": "running", "total": 3}
    progress = api.get(f"/broadcasts/{created['id']}").get_json()
    assert {k: progress[k] for k in ("id", "status", "total", "sent", "failed", "skipped")} == {
        "id": created["id"],
        "status": "running",
        "total": 3,
        "sent": 0,
        "failed": 0,
        "skipped": 1,
    }
    run_for(runtime, clock, 20)
    queued = [r for r in _outbox(runtime) if r.purpose == "broadcast"]
    assert sorted(r.chat_id for r in queued) == [
        "4915100000001@s.whatsapp.net",
        "4915100000002@s.whatsapp.net",
    ]


def test_a_bad_phone_or_an_empty_audience_is_a_400_and_nothing_is_stored(api, runtime):
    r = api.post("/broadcasts", {"text": "hi", "patient_phones": ["+4915100000001", "12"]})
    assert r.status_code == 400
    assert r.get_json()["error"]["code"] == "invalid_phone"
    assert api.post("/broadcasts", {"text": "hi"}).status_code == 400
    assert (
        api.post("/broadcasts", {"text": "", "patient_phones": ["+4915100000001"]}).status_code
        == 400
    )
    assert api.get("/broadcasts/1").status_code == 404


def test_sends_are_paced_at_least_min_interval_apart(api, runtime, clock):
    use_profile(runtime, broadcasts={"min_interval": "3s", "jitter": "2s"})
    bid = api.post("/broadcasts", {"text": "Flu shots", "patient_phones": phones(25)}).get_json()[
        "id"
    ]
    run_for(runtime, clock, 200)
    got = slots(runtime, bid)
    assert len(got) == 25
    gaps = [(b - a).total_seconds() for a, b in zip(got, got[1:], strict=False)]
    assert min(gaps) >= 3.0
    assert max(gaps) <= 5.0
    assert len({round(g, 3) for g in gaps}) > 1  # jittered, not a fixed beat
    # The outbox rows carry the same slots, so the relay cannot send them sooner.
    rows = [r for r in _outbox(runtime) if r.purpose == "broadcast"]
    assert sorted(r.next_attempt_at for r in rows) == got
    assert api.get(f"/broadcasts/{bid}").get_json()["queued"] == 25


def test_the_daily_cap_holds_back_the_rest_until_the_next_clinic_day(api, runtime, clock):
    use_profile(
        runtime,
        broadcasts={"daily_cap": 5, "min_interval": "1s", "jitter": "0s", "quiet_hours": []},
    )
    clock.set(datetime(2026, 12, 2, 22, 50, tzinfo=UTC))  # 23:50 in Berlin
    bid = api.post("/broadcasts", {"text": "News", "patient_phones": phones(8)}).get_json()["id"]
    run_for(runtime, clock, 300)  # until 23:55
    assert len(slots(runtime, bid)) == 5
    run_for(runtime, clock, 600)  # past midnight in Berlin
    got = slots(runtime, bid)
    assert len(got) == 8
    berlin = runtime.profile.timezone
    days = Counter(s.astimezone(berlin).date().isoformat() for s in got)
    assert days == {"2026-12-02": 5, "2026-12-03": 3}


def test_nothing_is_sent_in_quiet_hours_that_span_midnight(api, runtime, clock):
    use_profile(
        runtime,
        broadcasts={"quiet_hours": ["21:00", "08:00"], "min_interval": "60s", "jitter": "0s"},
    )
    clock.set(datetime(2026, 12, 2, 19, 55, tzinfo=UTC))  # 20:55 in Berlin
    bid = api.post("/broadcasts", {"text": "Hours", "patient_phones": phones(10)}).get_json()["id"]
    run_for(runtime, clock, 600)  # until 21:05
    before = slots(runtime, bid)
    assert len(before) == 5  # 20:55, 20:56, … 20:59; 21:00 is already quiet
    clock.set(datetime(2026, 12, 3, 6, 59, tzinfo=UTC))  # 07:59 the next morning
    pace(runtime)
    assert len(slots(runtime, bid)) == 5
    run_for(runtime, clock, 400)
    got = slots(runtime, bid)
    assert len(got) == 10
    tz = runtime.profile.timezone
    for s in got:
        local = s.astimezone(tz).time()
        assert not (local.hour >= 21 or local.hour < 8), s


def test_a_restart_mid_broadcast_resumes_without_repeating_anyone(
    live_server, api, runtime, settings, clock
):
    use_profile(runtime, broadcasts={"min_interval": "3s", "jitter": "1s"})
    bid = api.post("/broadcasts", {"text": "Restart", "patient_phones": phones(12)}).get_json()[
        "id"
    ]
    relay = Relay(runtime.db, runtime.client, runtime.clock)
    run_for(runtime, clock, 15, relay)
    relay.close()
    first_part = _sandbox_sends(live_server)
    assert 0 < sum(first_part.values()) < 12

    # A new process on the same database (the old one was killed between two ticks).
    again = build_runtime(settings, clock=clock, profile=runtime.profile)
    again.client.base_url = runtime.client.base_url
    relay = Relay(again.db, again.client, again.clock)
    run_for(again, clock, 80, relay)
    relay.close()
    sends = _sandbox_sends(live_server)
    assert len(sends) == 12 and set(sends.values()) == {1}
    progress = api.get(f"/broadcasts/{bid}").get_json()
    assert (progress["sent"], progress["status"]) == (12, "done")
    again.db.dispose()


def test_a_run_of_gateway_refusals_pauses_the_broadcast_and_says_why(
    live_server, api, runtime, clock
):
    use_profile(runtime, broadcasts={"min_interval": "3s", "jitter": "0s"})
    faults = f"{live_server.base_url}/sandbox/api/faults"
    live_server.http.post(faults, json={"status": 429, "count": 1000, "message": "Too many"})
    bid = api.post("/broadcasts", {"text": "Refused", "patient_phones": phones(10)}).get_json()[
        "id"
    ]
    relay = Relay(runtime.db, runtime.client, runtime.clock)
    run_for(runtime, clock, 12, relay)
    progress = api.get(f"/broadcasts/{bid}").get_json()
    assert progress["status"] == "paused"
    assert "429" in progress["reason"] and "refused 3 sends in a row" in progress["reason"]
    assert progress["pending"] == 10  # the refused (429: not sent) sends are waiting again
    # Paused: the refused rows were taken back, not left to retry, and time changes nothing.
    assert [r for r in _outbox(runtime) if r.purpose == "broadcast"] == []
    run_for(runtime, clock, 60, relay)
    assert api.get(f"/broadcasts/{bid}").get_json()["status"] == "paused"
    assert [r for r in _outbox(runtime) if r.purpose == "broadcast"] == []

    live_server.http.delete(faults)
    assert api.post(f"/broadcasts/{bid}/resume").status_code == 200
    run_for(runtime, clock, 60, relay)
    relay.close()
    sends = _sandbox_sends(live_server)
    assert len(sends) == 10 and set(sends.values()) == {1}
    assert api.get(f"/broadcasts/{bid}").get_json()["sent"] == 10


def test_a_run_of_403_refusals_pauses_too_and_counts_them_as_failed(
    live_server, api, runtime, clock
):
    use_profile(runtime, broadcasts={"min_interval": "3s", "jitter": "0s"})
    faults = f"{live_server.base_url}/sandbox/api/faults"
    live_server.http.post(faults, json={"status": 403, "count": 3, "message": "Forbidden"})
    bid = api.post("/broadcasts", {"text": "Banned?", "patient_phones": phones(6)}).get_json()["id"]
    relay = Relay(runtime.db, runtime.client, runtime.clock)
    run_for(runtime, clock, 12, relay)
    progress = api.get(f"/broadcasts/{bid}").get_json()
    assert progress["status"] == "paused" and "HTTP 403" in progress["reason"]
    assert (progress["failed"], progress["pending"]) == (3, 3)
    assert api.post(f"/broadcasts/{bid}/resume").status_code == 200
    run_for(runtime, clock, 30, relay)
    relay.close()
    done = api.get(f"/broadcasts/{bid}").get_json()
    assert (done["status"], done["sent"], done["failed"]) == ("done", 3, 3)
    assert sum(_sandbox_sends(live_server).values()) == 3


def test_pause_resume_and_cancel_from_the_api(api, runtime, clock):
    use_profile(runtime, broadcasts={"min_interval": "10s", "jitter": "0s"})
    bid = api.post("/broadcasts", {"text": "Ctl", "patient_phones": phones(10)}).get_json()["id"]
    run_for(runtime, clock, 25)
    r = api.post(f"/broadcasts/{bid}/pause")
    assert r.status_code == 200
    paused = r.get_json()
    assert paused["status"] == "paused" and paused["reason"] == "paused by reception-desk"
    # Queued messages the relay had not started were taken back: nothing is left to send.
    assert paused["pending"] == 10
    assert [r for r in _outbox(runtime) if r.purpose == "broadcast"] == []
    assert api.post(f"/broadcasts/{bid}/pause").status_code == 409
    run_for(runtime, clock, 100)
    assert slots(runtime, bid) == []

    assert api.post(f"/broadcasts/{bid}/resume").get_json()["status"] == "running"
    run_for(runtime, clock, 15)
    assert len(slots(runtime, bid)) >= 2
    cancelled = api.post(f"/broadcasts/{bid}/cancel").get_json()
    assert cancelled["status"] == "cancelled" and cancelled["cancelled"] > 0
    run_for(runtime, clock, 200)
    assert api.get(f"/broadcasts/{bid}").get_json()["cancelled"] == cancelled["cancelled"]
    assert api.post(f"/broadcasts/{bid}/resume").status_code == 409
    assert api.post(f"/broadcasts/{bid}/explode").status_code == 404


def test_a_patient_who_opts_out_mid_broadcast_is_skipped_and_counted(api, runtime, clock):
    from clinic_bot.domain import patients as optout

    use_profile(runtime, broadcasts={"min_interval": "10s", "jitter": "0s"})
    bid = api.post("/broadcasts", {"text": "Mid", "patient_phones": phones(3)}).get_json()["id"]
    with runtime.db.transaction() as s:
        patient = get_or_create_patient(s, phones(3)[2].lstrip("+"), clock())
        optout.opt_out(s, patient, "wamid.stop", clock())
    run_for(runtime, clock, 60)
    progress = api.get(f"/broadcasts/{bid}").get_json()
    assert (progress["total"], progress["skipped"], progress["queued"]) == (3, 1, 2)


def test_audiences_all_opted_in_and_a_days_appointments(api, runtime, clock):
    with runtime.db.transaction() as s:
        for phone in ("4915100000001", "4915100000002", "4915100000003"):
            get_or_create_patient(s, phone, clock())
        get_or_create_patient(s, "4915100000003", clock()).opted_out = True
    r = api.post("/broadcasts", {"text": "All", "all_opted_in": True}).get_json()
    assert r["total"] == 2

    # 00:30 on 5 December in Berlin is still 4 December in UTC: the day is the clinic's.
    book(runtime, "4915100000004", datetime(2026, 12, 4, 23, 30, tzinfo=UTC))
    book(runtime, "4915100000005", datetime(2026, 12, 5, 12, 0, tzinfo=UTC))
    book(runtime, "4915100000006", datetime(2026, 12, 5, 23, 30, tzinfo=UTC))  # the 6th
    r = api.post("/broadcasts", {"text": "Day", "appointments_on": "2026-12-05"}).get_json()
    assert r["total"] == 2


def _outbox(runtime) -> list[OutboxMessage]:
    with runtime.db.Session() as s:
        return list(s.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars())


def _sandbox_sends(live) -> Counter:
    """How many broadcast texts each phone received at the sandbox gateway."""
    from clinic_bot.models import SandboxMessage

    with live.runtime.db.Session() as s:
        rows = s.execute(
            select(SandboxMessage).where(
                SandboxMessage.direction == "out", SandboxMessage.kind == "text"
            )
        ).scalars()
        return Counter(m.phone for m in rows)


def test_the_openapi_document_describes_the_broadcast_routes(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert {
        "/broadcasts",
        "/broadcasts/{broadcast_id}",
        "/broadcasts/{broadcast_id}/{action}",
    } <= set(paths)
    assert "post" in paths["/broadcasts"] and "get" in paths["/broadcasts/{broadcast_id}"]
