"""The worker keeps its promises: a real `clinic-bot worker` killed with SIGKILL mid-batch loses
and repeats nothing; a poison event is dead-lettered without stopping the rest; every kind of
event ends where it should (missed calls answered, reactions, groups, labels, channel state)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from clinic_bot.core.db import claim
from clinic_bot.delivery.outbox import Outbox
from clinic_bot.delivery.relay import Relay
from clinic_bot.domain.patients import get_or_create_patient
from clinic_bot.intake.inbox_loop import (
    INBOX_LEASE,
    MAX_EVENT_ATTEMPTS,
    drain_inbox,
    process_inbox_row,
)
from clinic_bot.models import InboxEvent, OutboxMessage, Reaction, SandboxMessage
from tests.conftest import WEBHOOK_SECRET, payloads_dir

PHONE = "4915112345678"
CLINIC_BOT = Path(sys.executable).with_name("clinic-bot")


def text_message(mid: str, phone: str, text: str = "hi") -> dict:
    return {
        "id": mid,
        "from_me": False,
        "type": "text",
        "chat_id": f"{phone}@s.whatsapp.net",
        "timestamp": 1795500000,
        "source": "mobile",
        "text": {"body": text},
        "from": phone,
    }


def envelope(*items: dict) -> dict:
    return {"messages": list(items), "event": {"type": "messages", "event": "post"}}


def inbox_by_status(runtime) -> dict[str, int]:
    with runtime.db.Session() as s:
        rows = s.execute(select(InboxEvent.status, func.count()).group_by(InboxEvent.status))
        return dict(rows.all())


# ------------------------------------------------------------------ SIGKILL mid-batch


def worker_env(live, tmp_path: Path) -> dict[str, str]:
    """The environment a separate worker process needs to share the live server's world."""
    settings = live.runtime.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHAPI_", "DATABASE_"))}
    env.update(
        DATABASE_URL=settings.database_url,
        WHAPI_WEBHOOK_SECRET=WEBHOOK_SECRET,
        SECRET_KEY="test-secret-key",
        WHAPI_API_URL=f"{live.base_url}/sandbox/gateway",
        CLINIC_BOT_INSTANCE=str(tmp_path / "worker-instance"),
        CLINIC_CONFIG=str(settings.clinic_config),
        WORKER_TICK_SECONDS="0.5",
        WORKER_LEASE_SECONDS="2",
    )
    return env


def start_worker(env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(CLINIC_BOT), "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
        cwd=log.parent,
    )


def sent_count(runtime) -> int:
    """Messages the sandbox gateway has accepted (what patients' phones received)."""
    with runtime.db.Session() as s:
        return s.execute(select(func.count()).where(SandboxMessage.direction == "out")).scalar()


def test_a_worker_killed_mid_batch_and_restarted_handles_every_event_once(live_server, tmp_path):
    live = live_server
    phones = [f"4915112{n:06d}" for n in range(60)]
    batches = [phones[i : i + 5] for i in range(0, len(phones), 5)]
    # Every send takes a moment, so the kill lands while replies are being sent.
    r = live.http.post(
        f"{live.base_url}/sandbox/api/faults", json={"delay": 0.1, "deliver": True, "count": 999}
    )
    assert r.status_code == 200

    def post(batch):
        items = [text_message(f"kill-{p}", p) for p in batch]
        assert live.post_webhook(envelope(*items)).status_code == 200

    env = worker_env(live, tmp_path)
    log = tmp_path / "worker.log"
    first = start_worker(env, log)
    try:
        for batch in batches[: len(batches) // 2]:  # events keep arriving while it works
            post(batch)
        live.wait_for(lambda: sent_count(live.runtime) >= 5, timeout=30, interval=0.01)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    assert sent_count(live.runtime) < len(phones), "the worker finished before the kill"
    for batch in batches[len(batches) // 2 :]:  # and while no worker runs at all
        post(batch)

    second = start_worker(env, log)
    try:
        live.wait_for(
            lambda: all(_status(live.runtime, f"msg:kill-{p}") == "done" for p in phones),
            timeout=60,
        )
        live.settle(timeout=30)
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            code = second.wait(timeout=15)
        except subprocess.TimeoutExpired:
            second.kill()
            code = "did not stop on SIGTERM"
    assert code == 0, log.read_text()[-3000:]  # and it stops cleanly on SIGTERM
    assert inbox_by_status(live.runtime).get("dead", 0) == 0, log.read_text()[-3000:]
    menus = {p: [m for m in live.outgoing(p) if m.get("buttons")] for p in phones}
    assert {p: len(m) for p, m in menus.items()} == {p: 1 for p in phones}
    assert sent_count(live.runtime) == len(phones)
    with live.runtime.db.Session() as s:
        stuck = s.execute(
            select(func.count()).where(OutboxMessage.status.in_(("pending", "sending")))
        ).scalar()
    assert stuck == 0


def _status(runtime, key: str) -> str | None:
    with runtime.db.Session() as s:
        return s.execute(select(InboxEvent.status).where(InboxEvent.dedupe_key == key)).scalar()


# ------------------------------------------------------------------ poison events


class HookExploded(RuntimeError):
    pass


@pytest.fixture
def exploding_status_hook(runtime):
    """A buggy hook from another area: it raises for one message's statuses."""

    def hook(ctx, event, outcome):
        if event.event_id == "wamid-poison":
            raise HookExploded("a status hook failed for wamid-poison")

    runtime.registry.on_status(hook)
    yield hook
    runtime.registry.status_hooks.remove(hook)


def _sent_row(runtime, provider_id: str) -> None:
    with runtime.db.transaction() as s:
        patient = get_or_create_patient(s, PHONE, runtime.clock())
        Outbox(s, runtime.clock(), "test").text(patient, "hello", key=f"test:{provider_id}")
        s.flush()
        row = s.execute(
            select(OutboxMessage).where(OutboxMessage.idempotency_key == f"test:{provider_id}")
        ).scalar_one()
        row.status, row.provider_message_id = "sent", provider_id


def test_a_poison_event_is_retried_with_backoff_then_dead_lettered_with_its_error(
    live_server, clock, exploding_status_hook
):
    rt = live_server.runtime
    _sent_row(rt, "wamid-poison")
    status = {
        "statuses": [{"id": "wamid-poison", "status": "read", "timestamp": "1795500000"}],
        "event": {"type": "statuses", "event": "post"},
    }
    assert live_server.post_webhook(status).status_code == 200
    assert live_server.post_webhook(envelope(text_message("fine-1", "4915199999999"))).ok

    gaps, attempts = [], []
    for _ in range(MAX_EVENT_ATTEMPTS + 2):
        drain_inbox(rt)
        with rt.db.Session() as s:
            poison = s.execute(
                select(InboxEvent).where(InboxEvent.dedupe_key == "status:wamid-poison:read")
            ).scalar_one()
        attempts.append(poison.attempts)
        if poison.status == "dead":
            break
        assert poison.status == "pending"
        gaps.append((poison.next_attempt_at - clock()).total_seconds())
        clock.set(poison.next_attempt_at)

    assert poison.status == "dead"
    assert poison.attempts == MAX_EVENT_ATTEMPTS
    assert attempts == [1, 2, 3, 4, 5]
    assert gaps == [2, 4, 8, 16]
    assert "HookExploded" in poison.last_error
    assert "a status hook failed for wamid-poison" in poison.last_error
    # Everything else went on: the other event was handled at once, and new ones still are.
    assert _status(rt, "msg:fine-1") == "done"
    assert live_server.post_webhook(envelope(text_message("fine-2", "4915199999998"))).ok
    drain_inbox(rt)
    assert _status(rt, "msg:fine-2") == "done"
    clock.advance(hours=1)
    drain_inbox(rt)
    assert _status(rt, "status:wamid-poison:read") == "dead"  # a dead letter stays put


def test_an_event_whose_worker_died_every_time_is_dead_lettered(live_server, clock):
    rt = live_server.runtime
    assert live_server.post_webhook(envelope(text_message("crashy-1", PHONE))).ok
    # Five claims whose process died (the lease ran out each time), then a sixth that looks.
    for _ in range(MAX_EVENT_ATTEMPTS + 1):
        ids = claim(rt.db, InboxEvent, now=clock(), lease=INBOX_LEASE, limit=10)
        assert len(ids) == 1
        clock.advance(seconds=INBOX_LEASE.total_seconds() + 1)
    process_inbox_row(rt, ids[0])
    with rt.db.Session() as s:
        row = s.get(InboxEvent, ids[0])
    assert row.status == "dead"
    assert "stopped while handling it" in row.last_error
    assert live_server.outgoing(PHONE) == []


# ------------------------------------------------------------------ each kind of event


def load(name: str) -> dict:
    return json.loads((payloads_dir() / f"{name}.json").read_text(encoding="utf-8"))


def send_all(live) -> None:
    drain_inbox(live.runtime)
    relay = Relay(live.runtime.db, live.runtime.client, live.runtime.clock)
    try:
        relay.drain()
    finally:
        relay.close()


def test_a_missed_call_gets_the_short_message_and_the_menu_once(live):
    call_id = live.patient(PHONE, call="missed")["message_id"]
    sent = live.wait_for(lambda: len(live.outgoing(PHONE)) >= 2 and live.outgoing(PHONE))
    live.settle()
    sent = live.outgoing(PHONE)
    assert len(sent) == 2
    assert not sent[0].get("buttons") and "call" in sent[0]["text"].lower()
    assert sent[1].get("buttons")
    assert call_id


def test_a_call_webhook_delivered_twice_is_answered_once(live_server):
    body = load("calls_missed")
    body["calls"][0]["chat_id"] = body["calls"][0]["from"] = f"{PHONE}@s.whatsapp.net"
    assert live_server.post_webhook(body).json()["stored"] == 1
    assert live_server.post_webhook(body).json()["stored"] == 0
    send_all(live_server)
    assert len(live_server.outgoing(PHONE)) == 2


@pytest.mark.parametrize("status", ["ringing", "answered", "initiated"])
def test_calls_that_were_not_missed_are_recorded_without_an_answer(live_server, status):
    body = load("calls_missed")
    body["calls"][0]["status"] = status
    assert live_server.post_webhook(body).status_code == 200
    send_all(live_server)
    assert _status(live_server.runtime, f"call:{body['calls'][0]['id']}:{status}") == "done"
    with live_server.runtime.db.Session() as s:
        assert s.execute(select(func.count()).select_from(OutboxMessage)).scalar() == 0


def test_a_missed_group_call_is_not_answered(live_server):
    body = load("calls_missed")
    body["calls"][0]["group_call"] = True
    assert live_server.post_webhook(body).status_code == 200
    send_all(live_server)
    with live_server.runtime.db.Session() as s:
        assert s.execute(select(func.count()).select_from(OutboxMessage)).scalar() == 0


def test_a_reaction_is_recorded_against_the_message_it_targets(live):
    live.patient(PHONE, text="hi")
    menu = live.wait_for(lambda: [m for m in live.outgoing(PHONE) if m.get("buttons")])[0]
    live.settle()
    live.patient(PHONE, reaction={"message_id": menu["message_id"], "emoji": "👍"})

    def reactions_on_menu():
        with live.runtime.db.Session() as s:
            row = s.execute(
                select(OutboxMessage).where(OutboxMessage.provider_message_id == menu["message_id"])
            ).scalar_one()
            return row.reactions

    assert live.wait_for(reactions_on_menu) == [{"phone": PHONE, "emoji": "👍"}]
    with live.runtime.db.Session() as s:
        (reaction,) = s.execute(select(Reaction)).scalars().all()
    assert (reaction.target_message_id, reaction.emoji) == (menu["message_id"], "👍")

    live.patient(PHONE, reaction={"message_id": menu["message_id"], "emoji": ""})
    live.wait_for(lambda: reactions_on_menu() == [])
    live.settle()
    assert len(live.outgoing(PHONE)) == 1  # a reaction needs no answer


@pytest.mark.parametrize(
    "name, outcome",
    [
        ("groups", "recorded GroupChanged"),
        ("groups_participants", "recorded GroupChanged"),
        ("labels", "recorded LabelChanged"),
        ("labels_removed", "recorded LabelChanged"),
        ("chats", "recorded ChatChanged"),
        ("chats_updates", "recorded ChatChanged"),
    ],
)
def test_group_label_and_chat_events_are_recorded(live_server, name, outcome):
    assert live_server.post_webhook(load(name)).status_code == 200
    send_all(live_server)
    with live_server.runtime.db.Session() as s:
        (row,) = s.execute(select(InboxEvent)).scalars().all()
        sends = s.execute(select(func.count()).select_from(OutboxMessage)).scalar()
    assert (row.status, row.outcome) == ("done", outcome)
    assert row.payload == load(name)[row.kind][0]
    assert sends == 0


def healthz(live) -> dict:
    r = live.http.get(f"{live.base_url}/healthz")
    assert r.status_code == 200
    return r.json()


def test_a_logged_out_channel_shows_in_healthz_until_it_is_back(live_server, clock):
    assert healthz(live_server)["channel"]["status"] == "unknown"
    steps = [
        ("user_logged_out", "LOGGED_OUT", "degraded"),
        ("user_connected", "CONNECTED", "ok"),
        ("user_logged_out", "LOGGED_OUT", "degraded"),  # the same body again still counts
        ("health_auth", "AUTH", "ok"),
        ("health_qr", "QR", "degraded"),
    ]
    for name, channel, overall in steps:
        clock.advance(minutes=1)
        assert live_server.post_webhook(load(name)).status_code == 200
        drain_inbox(live_server.runtime)
        body = healthz(live_server)
        assert (body["channel"]["status"], body["status"]) == (channel, overall), name
        assert ("attention" in body) == (overall == "degraded")


def test_healthz_shows_the_workers_last_tick(live):
    def ticked():
        return healthz(live)["worker"]["last_tick"]

    assert live.wait_for(ticked)
    assert healthz(live)["db"] == "ok"


def test_a_database_outage_while_handling_is_retried_and_never_dead_letters_the_event(
    live_server, clock, runtime
):
    """More failed tries than the dead-letter cap, all the database's fault: the patient's
    message is still handled once the database answers again."""
    from sqlalchemy.exc import OperationalError

    outage = {"left": MAX_EVENT_ATTEMPTS + 3}

    def database_away(ctx, event, outcome):
        if event.event_id == "wamid-outage" and outage["left"] > 0:
            outage["left"] -= 1
            raise OperationalError("SELECT 1", {}, ConnectionError("server closed the connection"))

    runtime.registry.on_status(database_away)
    try:
        _sent_row(runtime, "wamid-outage")
        status = {
            "statuses": [{"id": "wamid-outage", "status": "read", "timestamp": "1795500000"}],
            "event": {"type": "statuses", "event": "post"},
        }
        assert live_server.post_webhook(status).status_code == 200
        seen = []
        while _status(runtime, "status:wamid-outage:read") != "done":
            assert len(seen) <= MAX_EVENT_ATTEMPTS + 5, seen
            drain_inbox(runtime)
            with runtime.db.Session() as s:
                row = s.execute(
                    select(InboxEvent).where(InboxEvent.dedupe_key == "status:wamid-outage:read")
                ).scalar_one()
            seen.append(row.status)
            assert row.status in ("pending", "done"), row.last_error
            if row.next_attempt_at:
                clock.set(max(clock(), row.next_attempt_at))
        assert outage["left"] == 0  # every failing try happened, none of them dead-lettered it
        assert seen.count("pending") == MAX_EVENT_ATTEMPTS + 3
    finally:
        runtime.registry.status_hooks.remove(database_away)
