"""A large import while webhooks arrive: the import's write is short, webhooks never get a 500."""

from __future__ import annotations

import copy
import json
import threading
from datetime import UTC, datetime, timedelta

import requests
from sqlalchemy import func, select

from clinic_bot.models import Appointment, InboxEvent
from clinic_bot.web.api.auth import create_token
from tests.conftest import WEBHOOK_SECRET, payloads_dir

NOW = datetime(2026, 11, 24, 9, tzinfo=UTC)


def big_calendar(count: int) -> bytes:
    events = []
    for i in range(count):
        start = NOW + timedelta(days=1 + i % 80, minutes=20 * (i // 80))
        events.append(
            f"BEGIN:VEVENT\r\nUID:load-{i}@x\r\nDTSTART:{start:%Y%m%dT%H%M%SZ}\r\n"
            f"DURATION:PT20M\r\nSUMMARY:Check-up\r\nATTENDEE:tel:+49152{i:08d}\r\nEND:VEVENT\r\n"
        )
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//load//EN\r\n" + "".join(events)
            + "END:VCALENDAR\r\n").encode()  # fmt: skip


def test_webhooks_during_a_large_import_are_accepted_or_503_never_500(live_server, clock):
    clock.set(NOW)
    runtime = live_server.runtime
    with runtime.db.transaction() as s:
        token = create_token(s, "load test", NOW)
    template = json.loads((payloads_dir() / "message_text.json").read_text())
    raw = big_calendar(3000)
    done = threading.Event()
    result: dict = {}

    def upload():
        r = requests.post(
            f"{live_server.base_url}/api/v1/calendar/imports",
            headers={"Authorization": f"Bearer {token}"},
            files={"file": ("big.ics", raw, "text/calendar")},
            timeout=300,
        )
        result["status"], result["body"] = r.status_code, r.json()
        done.set()

    thread = threading.Thread(target=upload)
    thread.start()
    http = requests.Session()
    codes = []
    for n in range(400):  # bounded: at most 400 webhooks, and only while the import runs
        body = copy.deepcopy(template)
        body["messages"][0]["id"] = f"load-{n}"
        r = http.post(f"{live_server.base_url}/webhooks/whapi", json=body,
                      headers={"X-Webhook-Token": WEBHOOK_SECRET}, timeout=60)  # fmt: skip
        codes.append(r.status_code)
        if done.is_set():
            break
    thread.join(timeout=300)
    assert result["status"] == 200 and result["body"]["created"] == 3000
    assert codes and set(codes) <= {200, 503}, sorted(set(codes))
    with runtime.db.Session() as s:
        assert s.execute(select(func.count()).select_from(Appointment)).scalar() == 3000
        accepted = s.execute(select(func.count()).select_from(InboxEvent)).scalar()
    assert accepted == codes.count(200)
