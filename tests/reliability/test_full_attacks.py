"""The full attacks (make test-reliability): worker SIGKILLs under gateway faults, a flood,
triple shuffled deliveries, a long logged-out channel and a soak, each recording its figures.

Skipped in `make test`; `RELIABILITY_FULL=1` runs them, and `RELIABILITY_REPORT` names a JSON
file the figures are appended to (docs/reliability.md quotes them). Durations scale by env.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from clinic_bot.models import InboxEvent, OutboxMessage
from tests.conftest import WEBHOOK_SECRET
from tests.reliability.support import counts, env_int, phones, record, rss_kib, set_channel

FULL = os.environ.get("RELIABILITY_FULL") == "1"
pytestmark = pytest.mark.skipif(not FULL, reason="the full attacks run with make test-reliability")
# Beside the interpreter running the tests: the project's virtualenv, wherever it lives.
CLINIC_BOT = Path(sys.executable).parent / "clinic-bot"


def worker_env(live, tmp_path: Path, **extra) -> dict[str, str]:
    settings = live.runtime.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHAPI_", "DATABASE_"))}
    env.update(
        DATABASE_URL=settings.database_url,
        WHAPI_WEBHOOK_SECRET=WEBHOOK_SECRET,
        SECRET_KEY="test-secret-key",
        WHAPI_API_URL=f"{live.base_url}/sandbox/gateway",
        CLINIC_BOT_INSTANCE=str(tmp_path / "worker-instance"),
        CLINIC_CONFIG=str(settings.clinic_config),
        WORKER_TICK_SECONDS="1",
        **extra,
    )
    return env


def start_worker(env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(CLINIC_BOT), "worker"], env=env, stdout=subprocess.DEVNULL, stderr=log.open("ab")
    )


def write(live, phone: str, text: str = "hi") -> int:
    r = live.http.post(
        f"{live.base_url}/sandbox/api/patients/{phone}/messages", json={"text": text}
    )
    return r.json().get("webhook_status", 0) if r.status_code == 200 else r.status_code


def answered(live, patients: list[str]) -> bool:
    c = counts(live.runtime)
    return c["answered_patients"] >= len(patients) and c["unsent"] == 0 and c["inbox_open"] == 0


def test_full_worker_sigkills_under_thirty_percent_gateway_faults(live_server, tmp_path):
    n = env_int("RELIABILITY_PATIENTS", 150)
    kills = env_int("RELIABILITY_KILLS", 5)
    live_server.http.put(
        f"{live_server.base_url}/sandbox/api/fault-rate",
        json={"rate": 0.3, "kinds": ["500", "429", "reset", "stall"], "stall": 12},
    )
    env = worker_env(live_server, tmp_path)
    log = tmp_path / "worker.log"
    worker = start_worker(env, log)
    patients = phones(n)
    kill_at = sorted(random.sample(range(5, n - 5), kills))
    five_xx = 0
    try:
        for i, phone in enumerate(patients):
            status = write(live_server, phone)
            five_xx += status >= 500
            if i in kill_at:
                worker.send_signal(signal.SIGKILL)
                worker.wait()
                worker = start_worker(env, log)
            time.sleep(0.05)
        last_webhook = time.monotonic()
        live_server.wait_for(lambda: answered(live_server, patients), timeout=300, interval=0.25)
        recovery = time.monotonic() - last_webhook
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    c = counts(live_server.runtime)
    record(
        "5 worker SIGKILLs, 30% gateway faults (500/429/reset/12 s stall)",
        load=f"{n} patients writing, one every 50 ms",
        lost=n - c["answered_patients"],
        duplicated=c["duplicates"],
        webhook_5xx=five_xx,
        dead_letters=c["dead_letters"],
        all_answered_after_last_webhook_s=round(recovery, 1),
    )
    assert c["answered_patients"] == n
    assert c["dead_letters"] == 0


def test_full_a_hi_during_a_flood_of_chat_events_is_answered_first(live):
    posts = env_int("RELIABILITY_FLOOD_POSTS", 75)
    chats = {"type": "chats", "event": "post"}
    t_flood = time.monotonic()
    for p in range(posts):
        items = [{"id": f"{p}-{k}@s.whatsapp.net", "unread": 1} for k in range(1000)]
        assert live.post_webhook({"chats": items, "event": chats}).status_code == 200
    stored_s = time.monotonic() - t_flood
    t0 = time.monotonic()
    live.patient("4915112345678", text="hi")
    live.wait_for(lambda: live.outgoing("4915112345678"), timeout=60, interval=0.02)
    latency = time.monotonic() - t0
    with live.runtime.db.Session() as s:
        left = s.execute(
            select(func.count()).where(InboxEvent.status.in_(("pending", "processing")))
        ).scalar_one()
    record(
        "flood of chat events, then a patient's hi",
        load=f"{posts} POSTs x 1,000 chats items ({posts * 1000} events) in {stored_s:.1f} s",
        hi_answered_s=round(latency, 2),
        flood_items_still_waiting_when_answered=left,
        webhook_5xx=0,
    )


def test_full_three_shuffled_deliveries_statuses_first_give_no_duplicates_or_regressions(
    live,
):
    n = env_int("RELIABILITY_SHUFFLE_EVENTS", 1000) // 2
    patients = phones(n, 4916100000000)
    messages = [
        {
            "id": f"shuffle-{p}",
            "from_me": False,
            "type": "text",
            "chat_id": f"{p}@s.whatsapp.net",
            "timestamp": 1772442000,
            "from": p,
            "text": {"body": "hi"},
        }
        for p in patients
    ]
    msg_env = [{"messages": [m], "event": {"type": "messages", "event": "post"}} for m in messages]
    # Read receipts of the patients' own messages, delivered before the messages themselves.
    receipts = [
        {
            "statuses": [
                {"id": m["id"], "status": "read", "recipient_id": m["chat_id"], "timestamp": "1"}
            ],
            "event": {"type": "statuses", "event": "post"},
        }
        for m in messages
    ]
    bodies = receipts * 3 + msg_env * 3
    random.shuffle(bodies)
    five_xx = sum(live.post_webhook(b).status_code >= 500 for b in bodies)
    live.wait_for(lambda: answered(live, patients), timeout=300, interval=0.25)
    with live.runtime.db.Session() as s:
        sent = s.execute(
            select(OutboxMessage.provider_message_id, OutboxMessage.chat_id).where(
                OutboxMessage.provider_message_id.is_not(None)
            )
        ).all()
    statuses = []
    for mid, chat in sent:
        for st in ("sent", "delivered", "read"):
            statuses.append(
                {
                    "statuses": [{"id": mid, "status": st, "recipient_id": chat, "timestamp": "2"}],
                    "event": {"type": "statuses", "event": "post"},
                }
            )
    statuses *= 3
    random.shuffle(statuses)
    five_xx += sum(live.post_webhook(b).status_code >= 500 for b in statuses)
    live.settle(timeout=300)
    with live.runtime.db.Session() as s:
        not_read = s.execute(
            select(func.count()).where(
                OutboxMessage.provider_message_id.is_not(None), OutboxMessage.status != "read"
            )
        ).scalar_one()
    c = counts(live.runtime)
    record(
        "1,000 events x 3 deliveries, shuffled, statuses before their messages",
        load=f"{len(bodies)} message/receipt POSTs, then {len(statuses)} status POSTs",
        lost=n - c["answered_patients"],
        duplicated=c["duplicates"],
        status_regressions=not_read,
        webhook_5xx=five_xx,
    )
    assert c["duplicates"] == 0 and not_read == 0 and five_xx == 0


def test_full_a_long_logged_out_channel_loses_nothing(live):
    seconds = env_int("RELIABILITY_LOGOUT_SECONDS", 600)
    n = env_int("RELIABILITY_LOGOUT_PATIENTS", 60)
    patients = phones(n, 4917100000000)
    set_channel(live, "logged_out")
    started = time.monotonic()
    for i, phone in enumerate(patients):
        write(live, phone)
        time.sleep(max(0.0, started + (i + 1) * seconds / (n + 1) - time.monotonic()))
    while time.monotonic() - started < seconds:
        time.sleep(1)
    during = counts(live.runtime)
    t0 = time.monotonic()
    set_channel(live, "auth")
    live.wait_for(lambda: answered(live, patients), timeout=300, interval=0.25)
    c = counts(live.runtime)
    record(
        f"channel logged out for {seconds} s (401 on every send), then back",
        load=f"{n} patients writing while it was out",
        sent_while_out=during["gateway_sends"],
        lost=n - c["answered_patients"],
        duplicated=c["duplicates"],
        dead_letters=c["dead_letters"],
        all_delivered_after_recovery_s=round(time.monotonic() - t0, 1),
    )
    assert during["gateway_sends"] == 0 and c["dead_letters"] == 0


def callbacks_owed() -> int:
    """Webhook callbacks the in-process sandbox still owes the app (its queue holds them)."""
    from clinic_bot.sandbox.gateway import CALLBACKS

    return sum(q.qsize() for q in CALLBACKS.queues.values())


def test_full_soak_keeps_memory_flat(live_server, tmp_path):
    seconds = env_int("RELIABILITY_SOAK_SECONDS", 600)
    rate = env_int("RELIABILITY_SOAK_RATE", 20)
    env = worker_env(live_server, tmp_path)
    worker = start_worker(env, tmp_path / "worker.log")
    patients = phones(300, 4918100000000)
    texts = ["hi", "book", "menu", "my appointments", "where are you", "1", "2"]
    samples = []
    sent = five_xx = 0
    try:
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            five_xx += write(live_server, random.choice(patients), random.choice(texts)) >= 500
            sent += 1
            if sent % (rate * 30) == 0:
                samples.append(
                    (round(elapsed), rss_kib(os.getpid()), rss_kib(worker.pid), callbacks_owed())
                )
            time.sleep(max(0.0, started + sent / rate - time.monotonic()))
        load_end = time.monotonic()
        backlog = counts(live_server.runtime)["inbox_open"]
        samples.append((round(load_end - started), rss_kib(os.getpid()), rss_kib(worker.pid)))
        drained = True
        try:
            live_server.wait_for(
                lambda: counts(live_server.runtime)["inbox_open"] == 0, timeout=600, interval=1
            )
        except AssertionError:
            drained = False
        drain_s = time.monotonic() - load_end
        samples.append(
            (round(time.monotonic() - started), rss_kib(os.getpid()), rss_kib(worker.pid))
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    warm = samples[min(1, len(samples) - 1)]
    end = samples[-2]  # at the end of the load
    c = counts(live_server.runtime)
    record(
        f"soak: {seconds} s at {rate} events/s",
        load=f"{sent} patient messages from 300 patients",
        webhook_5xx=five_xx,
        dead_letters=c["dead_letters"],
        duplicated=c["duplicates"],
        web_rss_mib=f"{warm[1] / 1024:.0f} -> {end[1] / 1024:.0f}",
        worker_rss_mib=f"{warm[2] / 1024:.0f} -> {end[2] / 1024:.0f}",
        inbox_backlog_at_end_of_load=backlog,
        backlog_drained_s=round(drain_s, 1) if drained else f"not within {round(drain_s)} s",
        samples=samples,
    )
    assert five_xx == 0


def test_full_ten_thousand_generated_envelopes(client, runtime):
    import warnings

    from hypothesis.errors import NonInteractiveExampleWarning

    from clinic_bot.intake.inbox_loop import drain_inbox
    from tests.reliability.test_hostile_webhook import envelopes, post, valid_message

    n = env_int("RELIABILITY_FUZZ_BODIES", 10_000)
    codes: dict[int, int] = {}
    well_formed: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonInteractiveExampleWarning)
        for i in range(n):
            body = envelopes.example()
            if i % 10 == 0:  # a well-formed patient message among the hostile ones
                msg = valid_message.example()
                msg["id"] = f"wf-{i}"
                well_formed.add(f"msg:wf-{i}")
                body = {"messages": [msg], "event": {"type": "messages", "event": "post"}}
            raw = json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")
            status = post(client, raw).status_code
            codes[status] = codes.get(status, 0) + 1
            if i % 50 == 0:
                drain_inbox(runtime)
    drain_inbox(runtime)
    with runtime.db.Session() as s:
        dead = s.execute(
            select(func.count()).where(
                InboxEvent.status == "dead", InboxEvent.dedupe_key.in_(well_formed)
            )
        ).scalar_one()
        dead_all = s.execute(select(func.count()).where(InboxEvent.status == "dead")).scalar_one()
    record(
        "generated Whapi envelopes (valid, near-valid, hostile)",
        load=f"{n} bodies, {len(well_formed)} of them well-formed patient messages",
        answers=dict(sorted(codes.items())),
        webhook_5xx=sum(v for k, v in codes.items() if k >= 500),
        dead_letters_of_well_formed=dead,
        dead_letters_all=dead_all,
        worker="alive (every drain returned)",
    )
    assert not any(k >= 500 for k in codes) and dead == 0
