"""Hostile webhook bodies never get a 500 and never a retry-forever: malformed is 400, too many
items 413, odd text stored sanitized, a lock timeout 503; generated envelopes prove it."""

from __future__ import annotations

import json
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinic_bot.intake.inbox_loop import drain_inbox
from clinic_bot.models import InboxEvent
from tests.conftest import TEST_DATABASE_URL, WEBHOOK_SECRET
from tests.reliability.support import inbox

PHONE = "4915112345678"
MSG = {"type": "messages", "event": "post"}


def post(client, raw: bytes | str):
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    return client.post(
        "/webhooks/whapi",
        data=data,
        headers={"X-Webhook-Token": WEBHOOK_SECRET, "Content-Type": "application/json"},
    )


def message(mid: str, **extra) -> dict:
    return {
        "id": mid,
        "from_me": False,
        "type": "text",
        "chat_id": f"{PHONE}@s.whatsapp.net",
        "timestamp": 1772442000,
        "from": PHONE,
        "text": {"body": "hi"},
        **extra,
    }


@pytest.mark.parametrize("depth", [40, 990, 5000])
def test_json_nested_deeply_is_a_400_not_a_500(client, depth):
    raw = (
        '{"messages": ['
        + "[" * depth
        + "]" * depth
        + '], "event": {"type": "messages", "event": "post"}}'
    )
    r = post(client, raw)
    assert r.status_code == 400
    assert r.json["error"]["message"]


def test_lone_surrogates_in_channel_id_and_event_are_stored_replaced(client, runtime):
    raw = (
        '{"messages": [' + json.dumps(message("sur-1")) + "], "
        '"event": {"type": "messages\\ud800", "event": "post\\udfff"}, "channel_id": "CH\\ud83d"}'
    )
    r = post(client, raw)
    assert r.status_code == 200
    (row,) = inbox(runtime)
    assert row.channel_id == "CH\ufffd"
    assert row.event_type == "messages\ufffd"


def test_non_finite_numbers_nul_and_oversized_metadata_are_stored_sanitized(client, runtime):
    raw = (
        '{"messages": [{"id": "odd-1", "from_me": false, "type": "text", "timestamp": 1e999,'
        ' "chat_id": "' + PHONE + '@s.whatsapp.net", "score": NaN, "big": -Infinity,'
        ' "text": {"body": "hel\\u0000lo"}}],'
        ' "event": {"type": "messages", "event": "post"}, "channel_id": "' + "C" * 301 + '"}'
    )
    r = post(client, raw)
    assert r.status_code == 200
    (row,) = inbox(runtime)
    assert row.payload["timestamp"] is None and row.payload["score"] is None
    assert row.payload["text"]["body"] == "hello"
    assert len(row.channel_id) == 100
    drain_inbox(runtime)
    assert inbox(runtime)[0].status == "done"  # the patient gets an answer all the same


def test_more_than_a_thousand_items_in_one_post_is_413_and_nothing_is_stored(client, runtime):
    body = {"chats": [{"id": f"{n}@s.whatsapp.net"} for n in range(1001)], "event": MSG}
    r = post(client, json.dumps(body))
    assert r.status_code == 413
    assert inbox(runtime) == []
    body["chats"] = body["chats"][:1000]
    assert post(client, json.dumps(body)).status_code == 200


@pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="SQLite's write lock")
def test_a_lock_wait_that_runs_out_is_a_503_so_whapi_retries(client, runtime, monkeypatch):
    import clinic_bot.core.db as db

    monkeypatch.setattr(db, "SQLITE_LOCK_WAIT", 0.2)
    path = runtime.settings.database_url.split("///", 1)[1]
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        r = post(client, json.dumps({"messages": [message("locked-1")], "event": MSG}))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert r.status_code == 503
    assert (
        post(client, json.dumps({"messages": [message("locked-1")], "event": MSG})).status_code
        == 200
    )


# ------------------------------------------------------------------ generated envelopes

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=30),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
valid_message = st.builds(
    lambda mid, text, kind: message(mid, type=kind, text={"body": text}),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-", min_size=4, max_size=40),
    st.text(max_size=200),
    st.sampled_from(["text", "link_preview"]),
)
near_valid_message = st.builds(
    lambda base, key, value: {**base, key: value},
    valid_message,
    st.sampled_from(
        ["id", "type", "chat_id", "from_me", "timestamp", "text", "context", "from_name"]
    ),
    json_values,
)
envelopes = st.one_of(
    st.builds(lambda ms: {"messages": ms, "event": MSG}, st.lists(valid_message, max_size=3)),
    st.builds(
        lambda ms, meth: {"messages": ms, "event": {"type": "messages", "method": meth}},
        st.lists(near_valid_message, max_size=3),
        st.sampled_from(["post", "put"]),
    ),
    st.dictionaries(
        st.sampled_from(["messages", "statuses", "chats", "health", "user", "calls", "event", "x"]),
        json_values,
        max_size=4,
    ),
    json_values,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=envelopes)
def test_generated_envelopes_never_get_a_5xx_and_never_kill_the_worker(client, runtime, body):
    raw = json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")
    r = post(client, raw)
    assert r.status_code in (200, 400, 403, 413), r.data[:300]
    drain_inbox(runtime)  # raises if the worker loop itself breaks
    with runtime.db.Session() as s:
        rows = s.query(InboxEvent).filter(InboxEvent.status.in_(("pending", "processing"))).all()
    # What is left waits for a retry (a status for a message never sent), never for a crash.
    assert all(r.kind == "statuses" for r in rows)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ms=st.lists(valid_message, min_size=1, max_size=3, unique_by=lambda m: m["id"]))
def test_well_formed_patient_messages_are_never_dead_lettered(client, runtime, ms):
    before = {r.id for r in inbox(runtime)}
    assert post(client, json.dumps({"messages": ms, "event": MSG})).status_code == 200
    drain_inbox(runtime)
    new = [r for r in inbox(runtime) if r.id not in before]
    assert [r.status for r in new if r.status == "dead"] == []


def test_a_database_that_is_away_is_a_503_so_whapi_retries_later(tmp_path):
    from clinic_bot.app import create_app
    from clinic_bot.bootstrap import build_runtime
    from clinic_bot.settings import Settings

    # A PostgreSQL that is not there (restarting): nothing listens on port 9.
    settings = Settings.from_env(
        env={
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:9/away",
            "WHAPI_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "SECRET_KEY": "k",
        },
        instance_path=tmp_path / "inst",
    )
    rt = build_runtime(settings, connect_args={"connect_timeout": 2})
    try:
        client = create_app(rt).test_client()
        r = post(client, json.dumps({"messages": [message("away-1")], "event": MSG}))
        assert r.status_code == 503
        assert client.get("/healthz").status_code == 503
    finally:
        rt.db.dispose()
