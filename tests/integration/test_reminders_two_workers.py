"""Two `clinic-bot worker` processes on one PostgreSQL database send each due reminder once."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import func, select

from clinic_bot.domain.appointment_changes import appointment_changed
from clinic_bot.models import Appointment, Patient, Reminder
from tests.conftest import TEST_DATABASE_URL

pytestmark = pytest.mark.skipif(
    not TEST_DATABASE_URL,
    reason="needs PostgreSQL (TEST_DATABASE_URL): SQLite serializes writers on one machine, "
    "so two worker processes racing for rows is a PostgreSQL question",
)

N = 1000


class CountingGateway:
    """A fake Whapi on loopback that answers every send and records who it was for."""

    def __init__(self):
        self.sends: list[str] = []
        self.lock = threading.Lock()
        ids = itertools.count(1)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args):
                pass

            def do_POST(self):  # noqa: N802  (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.sends.append(body["to"])
                    mid = f"fake-{next(ids):06d}"
                raw = json.dumps({"sent": True, "message": {"id": mid}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self) -> int:
        with self.lock:
            return len(self.sends)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _book_many(runtime, booked_at: datetime, starts_at: datetime) -> None:
    """N appointments, one patient each, booked a day ago: every 24h reminder is due now."""
    with runtime.db.transaction() as s:
        for i in range(N):
            patient = Patient(phone=f"4915200{i:06d}", name=f"P{i}", state_data={}, intake={})
            s.add(patient)
            s.flush()
            appt = Appointment(
                patient_id=patient.id,
                starts_at=starts_at,
                ends_at=starts_at + timedelta(minutes=20),
                status="booked",
                source="api",
                version=1,
                created_at=booked_at,
                updated_at=booked_at,
            )
            s.add(appt)
            appointment_changed(s, appt, booked_at, "created")


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"not reached within {timeout}s: {what}")


def test_two_worker_processes_send_each_of_1000_due_reminders_exactly_once(
    runtime, settings, clock, tmp_path
):
    now = datetime.now(UTC)
    clock.set(now - timedelta(days=1))
    _book_many(runtime, now - timedelta(days=1), now + timedelta(hours=3))
    with runtime.db.Session() as s:
        due = s.execute(
            select(func.count()).where(Reminder.status == "pending", Reminder.due_at <= now)
        ).scalar()
    assert due == N

    gateway = CountingGateway()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "WHAPI_TOKEN": "two-workers-test",
        "WHAPI_API_URL": gateway.url,
        "CLINIC_BOT_INSTANCE": str(settings.instance_path),
        "CLINIC_CONFIG": str(settings.clinic_config),
        "SECRET_KEY": "test-secret-key",
        "WHAPI_WEBHOOK_SECRET": "test-webhook-secret",
        "WORKER_TICK_SECONDS": "0.3",
        # This test is about claims (each reminder sent once by one of two workers), not the
        # per-number pacer, which would space 1,000 proactive sends a second apart.
        "PROACTIVE_MIN_INTERVAL_SECONDS": "0",
    }
    script = Path(sys.executable).with_name("clinic-bot")
    logs = [open(tmp_path / f"worker{i}.log", "w") for i in range(2)]  # noqa: SIM115
    workers = [
        subprocess.Popen([str(script), "worker"], env=env, stdout=log, stderr=subprocess.STDOUT)
        for log in logs
    ]
    try:

        def all_sent() -> bool:
            with runtime.db.Session() as s:
                left = s.execute(
                    select(func.count()).where(Reminder.kind == "24h", Reminder.status != "sent")
                ).scalar()
            return left == 0 and gateway.count() >= N

        _wait(all_sent, 180, f"{N} reminders sent")
        assert all(w.poll() is None for w in workers), "a worker died"
    finally:
        # Stop both (in-flight sends finish first), so the count below is final.
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()
        for log in logs:
            log.close()
        gateway.close()

    counts = Counter(gateway.sends)
    assert len(gateway.sends) == N
    assert len(counts) == N and set(counts.values()) == {1}
    assert set(counts) == {f"4915200{i:06d}@s.whatsapp.net" for i in range(N)}
    # Both processes really raced for the rows (each claimed a share of them).
    handled = [
        sum(int(n) for n in re.findall(r"reminder tick: (\d+) rows handled", log.read_text()))
        for log in (tmp_path / "worker0.log", tmp_path / "worker1.log")
    ]
    assert sum(handled) == N and min(handled) > 0, handled
