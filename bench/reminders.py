"""Reminder tick benchmark (issue 4 "Done when").

1. An idle tick: 100,000 future appointments (200,000 pending reminder rows, none due). The
   tick's due query must hit the (status, due_at) index: its query plan is printed. Target
   ≤ 20 ms.
2. A burst: 5,000 reminders fall due together; the tick turns them into outbox rows and the
   relay hands them all to a fake gateway on loopback. The times are printed.

Runs on SQLite (a temporary file) and, with --pg-url, on PostgreSQL too. Prints a summary and
writes bench/results/reminders.json. Usage:
    python bench/reminders.py [--pg-url postgresql://postgres@127.0.0.1:5432/DB] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, event, insert, text

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
sys.path.insert(0, str(BENCH_DIR))

from fake_gateway import FakeGateway  # noqa: E402

from clinic_bot.bootstrap import build_runtime  # noqa: E402
from clinic_bot.core.migrate import upgrade  # noqa: E402
from clinic_bot.core.runtime import Runtime  # noqa: E402
from clinic_bot.delivery.relay import Relay  # noqa: E402
from clinic_bot.models import Appointment, Patient, Reminder  # noqa: E402
from clinic_bot.schedules.reminders.tick import send_due  # noqa: E402
from clinic_bot.settings import Settings, normalize_database_url  # noqa: E402

TARGET_IDLE_TICK_MS = 20.0
CHUNK = 5000


def _fresh_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def _runtime(url: str, gateway_url: str, instance: Path) -> Runtime:
    settings = Settings.from_env(
        env={
            "DATABASE_URL": url,
            "SECRET_KEY": "bench",
            "WHAPI_WEBHOOK_SECRET": "bench",
            "WHAPI_TOKEN": "bench-token",
            "WHAPI_API_URL": gateway_url,
        },
        instance_path=instance,
    )
    return build_runtime(settings)


def _insert_appointments(runtime: Runtime, start_id: int, count: int, starts_at, now) -> None:
    """`count` patients with one appointment each and its 24h and 2h reminder rows.

    Bulk inserts of what the planner writes (same due instants), so that setting up 100,000
    appointments takes seconds rather than minutes.
    """
    offsets = runtime.profile.reminder_offsets
    for lo in range(start_id, start_id + count, CHUNK):
        ids = range(lo, min(lo + CHUNK, start_id + count))
        with runtime.db.transaction() as s:
            s.execute(
                insert(Patient),
                [
                    dict(
                        id=i,
                        phone=f"49160{i:08d}",
                        name=f"Patient {i}",
                        state="idle",
                        state_data={},
                        intake={},
                        prompt_seq=0,
                        opted_out=False,
                        created_at=now,
                        version=1,
                    )
                    for i in ids
                ],
            )
            s.execute(
                insert(Appointment),
                [
                    dict(
                        id=i,
                        patient_id=i,
                        starts_at=starts_at(i),
                        ends_at=starts_at(i) + timedelta(minutes=20),
                        status="booked",
                        source="api",
                        version=1,
                        created_at=now,
                        updated_at=now,
                    )
                    for i in ids
                ],
            )
            s.execute(
                insert(Reminder),
                [
                    dict(
                        appointment_id=i,
                        appointment_version=1,
                        kind=label,
                        due_at=starts_at(i) - offset,
                        status="pending",
                        attempts=0,
                        created_at=now,
                    )
                    for i in ids
                    for label, offset in offsets
                ],
            )


def _fix_sequences(runtime: Runtime) -> None:
    """Explicit ids leave PostgreSQL's sequences behind; move them past the rows."""
    if not runtime.db.is_postgres:
        return
    with runtime.db.engine.begin() as conn:
        for table in ("patient", "appointment"):
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
            )


def _analyze(runtime: Runtime) -> None:
    with runtime.db.engine.begin() as conn:
        conn.execute(text("ANALYZE"))


def _capture_due_query(runtime: Runtime) -> tuple[str, object]:
    """The exact SQL and parameters of the tick's due query, as it ran."""
    seen = []

    def listener(conn, cursor, statement, parameters, context, executemany):
        if "FROM reminder" in statement and statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(runtime.db.engine, "before_cursor_execute", listener)
    try:
        send_due(runtime)
    finally:
        event.remove(runtime.db.engine, "before_cursor_execute", listener)
    return seen[0]


def _plan(runtime: Runtime, statement: str, parameters) -> list[str]:
    prefix = "EXPLAIN " if runtime.db.is_postgres else "EXPLAIN QUERY PLAN "
    with runtime.db.engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + statement, parameters).fetchall()
        conn.rollback()
    return [" ".join(str(c) for c in row) for row in rows]


def idle_tick(runtime: Runtime, n_appointments: int, runs: int) -> dict:
    """Tick cost with `n_appointments` future appointments and nothing due."""
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    # Spread over the next 30 days, all at least 3 days away: no reminder is due.
    _insert_appointments(
        runtime,
        1,
        n_appointments,
        lambda i: now + timedelta(days=3) + timedelta(seconds=(i * 997) % (30 * 86400)),
        now,
    )
    _fix_sequences(runtime)
    _analyze(runtime)
    setup_s = time.perf_counter() - t0
    statement, parameters = _capture_due_query(runtime)
    plan = _plan(runtime, statement, parameters)
    for _ in range(5):
        assert send_due(runtime) == 0
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        handled = send_due(runtime)
        times.append((time.perf_counter() - t) * 1000)
        assert handled == 0
    times.sort()
    return {
        "future_appointments": n_appointments,
        "pending_reminder_rows": n_appointments * len(runtime.profile.reminder_offsets),
        "setup_s": round(setup_s, 1),
        "runs": runs,
        "tick_ms_median": round(statistics.median(times), 2),
        "tick_ms_p95": round(times[int(0.95 * (len(times) - 1))], 2),
        "tick_ms_max": round(times[-1], 2),
        "target_ms": TARGET_IDLE_TICK_MS,
        "met": statistics.median(times) <= TARGET_IDLE_TICK_MS,
        "due_query": " ".join(statement.split()),
        "query_plan": plan,
    }


def due_burst(runtime: Runtime, gateway: FakeGateway, first_id: int, n_due: int) -> dict:
    """`n_due` reminders fall due together: tick, then relay, to the fake gateway."""
    now = datetime.now(UTC)
    # Their 24h reminder fell due a minute ago (on time); the 2h one is still ahead.
    _insert_appointments(
        runtime, first_id, n_due, lambda i: now + timedelta(hours=24, minutes=-1), now
    )
    _fix_sequences(runtime)
    _analyze(runtime)
    before = gateway.total_sends()
    relay = Relay(runtime.db, runtime.client, runtime.clock, concurrency=8, batch=50)
    t0 = time.perf_counter()
    handled = send_due(runtime)
    t_queued = time.perf_counter()
    relay.drain(max_rounds=100000)
    t_sent = time.perf_counter()
    relay.close()
    sends = gateway.total_sends() - before
    chats = {to for _, _, to in gateway.sends[before:]}
    return {
        "due_together": n_due,
        "tick_handled": handled,
        "tick_s": round(t_queued - t0, 2),
        "relay_s": round(t_sent - t_queued, 2),
        "total_s": round(t_sent - t0, 2),
        "per_second": round(sends / (t_sent - t0), 1),
        "gateway_sends": sends,
        "distinct_chats": len(chats),
        "all_handed_over": sends == n_due and len(chats) == n_due,
    }


def run(db: str, url: str, args, gateway: FakeGateway) -> dict:
    """Both measurements on one database."""
    with tempfile.TemporaryDirectory(prefix="bench-reminders-") as tmp:
        if db == "sqlite":
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        else:
            url = normalize_database_url(url)
            _fresh_postgres(url)
        upgrade(url)
        runtime = _runtime(url, gateway.url, Path(tmp) / "instance")
        try:
            idle = idle_tick(runtime, args.appointments, args.runs)
            burst = due_burst(runtime, gateway, args.appointments + 1, args.due)
        finally:
            runtime.db.dispose()
        if db != "sqlite":
            _fresh_postgres(url)  # leave the database empty
    return {"idle_tick": idle, "due_burst": burst}


def main() -> None:
    """Run on SQLite (and PostgreSQL when asked), print, write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", help="also run on this PostgreSQL database (it is wiped)")
    parser.add_argument("--appointments", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="10,000 / 1,000: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.appointments, args.due, args.runs = 10_000, 1_000, 50
    gateway = FakeGateway().start()
    results = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        },
    }
    try:
        dbs = [("sqlite", "")] + ([("postgresql", args.pg_url)] if args.pg_url else [])
        for db, url in dbs:
            print(f"== {db}", flush=True)
            results[db] = out = run(db, url, args, gateway)
            idle, burst = out["idle_tick"], out["due_burst"]
            print(
                f"idle tick, {idle['future_appointments']:,} future appointments "
                f"({idle['pending_reminder_rows']:,} pending rows): median "
                f"{idle['tick_ms_median']} ms, p95 {idle['tick_ms_p95']} ms, max "
                f"{idle['tick_ms_max']} ms (target <= {TARGET_IDLE_TICK_MS} ms: "
                f"{'met' if idle['met'] else 'NOT met'})"
            )
            print("  due query plan: " + " | ".join(idle["query_plan"]))
            print(
                f"{burst['due_together']:,} reminders due together: tick {burst['tick_s']} s, "
                f"relay {burst['relay_s']} s, total {burst['total_s']} s "
                f"({burst['per_second']}/s); gateway got {burst['gateway_sends']:,} sends to "
                f"{burst['distinct_chats']:,} chats"
            )
    finally:
        gateway.stop()
    results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / "reminders.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path.relative_to(BENCH_DIR.parent)}")


if __name__ == "__main__":
    main()
