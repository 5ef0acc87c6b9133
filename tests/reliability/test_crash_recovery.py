"""A send left uncertain (a worker killed mid-send, a lost answer) is settled against Whapi's
own message list instead of waiting for an echo; claims are short leases a heartbeat renews."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from clinic_bot.core.db import claim
from clinic_bot.delivery.leases import LeaseKeeper
from clinic_bot.delivery.relay import LEASE, Relay
from clinic_bot.models import OutboxMessage
from tests.reliability.support import TOKEN, queue_texts, sent_texts

PHONE = "4915112345678"


@pytest.fixture
def relay(live_server, clock):
    rt = live_server.runtime
    r = Relay(rt.db, rt.client, rt.clock)
    yield r
    r.close()


def the_row(runtime) -> OutboxMessage:
    with runtime.db.Session() as s:
        return s.execute(select(OutboxMessage)).scalar_one()


def die_mid_send(live, clock, *, went_out: bool) -> None:
    """A worker claims the row, (maybe) gets it to Whapi, and is killed before recording it."""
    rt = live.runtime
    (row_id,) = claim(
        rt.db, OutboxMessage, now=clock(), lease=LEASE, limit=5, claimed_status="sending"
    )
    if went_out:
        row = the_row(rt)
        r = live.http.post(
            f"{live.base_url}/sandbox/gateway/{row.endpoint}", json=row.body, headers=TOKEN
        )
        assert r.status_code == 200
    clock.advance(seconds=LEASE.total_seconds() + 1)


def test_a_send_that_went_out_before_the_worker_died_is_settled_not_sent_again(
    live_server, relay, clock
):
    rt = live_server.runtime
    queue_texts(rt, PHONE, ["Did it go?"])
    die_mid_send(live_server, clock, went_out=True)
    relay.drain()  # parks it as uncertain, due after a short grace
    clock.advance(seconds=3)
    relay.drain()  # asks GET /messages/list: it is there; the inbox (echo) was never drained
    row = the_row(rt)
    assert row.status == "sent" and row.provider_message_id
    assert sent_texts(rt, PHONE) == ["Did it go?"]  # once


def test_a_send_that_never_left_is_sent_once_within_seconds_of_the_crash(live_server, relay, clock):
    rt = live_server.runtime
    queue_texts(rt, PHONE, ["Lost with its worker"])
    die_mid_send(live_server, clock, went_out=False)
    relay.drain()
    clock.advance(seconds=3)
    relay.drain()
    assert sent_texts(rt, PHONE) == ["Lost with its worker"]


def test_the_same_text_sent_before_does_not_settle_a_new_uncertain_send(live_server, relay, clock):
    rt = live_server.runtime
    queue_texts(rt, PHONE, ["Menu"])
    relay.drain()
    queue_texts(
        rt, PHONE, ["Menu"] * 2, tag="again"
    )  # two more menus; the first went out and is known
    with rt.db.transaction() as s:
        rows = s.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars().all()
        rows[1].uncertain_since = clock()
    relay.drain()
    assert sent_texts(rt, PHONE) == ["Menu", "Menu", "Menu"]


def test_a_heartbeat_keeps_a_slow_batch_claimed_and_a_dead_one_returns_in_one_lease(
    live_server, clock
):
    rt = live_server.runtime
    queue_texts(rt, PHONE, ["slow"])
    lease = timedelta(seconds=10)
    ids = claim(rt.db, OutboxMessage, now=clock(), lease=lease, limit=5, claimed_status="sending")
    keeper = LeaseKeeper(rt.db, OutboxMessage, ids, status="sending", lease=lease, clock=clock)
    clock.advance(seconds=8)
    assert keeper.renew() == 1  # still working on it: pushed a lease ahead
    assert the_row(rt).locked_until == clock() + lease
    clock.advance(seconds=11)  # the worker died: no more renewals, the lease ran out
    again = claim(rt.db, OutboxMessage, now=clock(), lease=lease, limit=5, claimed_status="sending")
    assert again == ids


def test_a_database_failure_between_claim_and_send_leaves_no_row_in_flight_forever(
    live_server, relay, clock
):
    """The database went away right after the relay claimed a row: the row must not count as
    in flight (its lease would be renewed forever with no send to finish it); its lease runs
    out and it is sent once, after the usual check with Whapi."""
    from sqlalchemy.exc import OperationalError

    rt = live_server.runtime
    queue_texts(rt, PHONE, ["Caught by a restart"])
    real_load, failures = relay._load, []

    def load_during_restart(ids):
        if not failures:
            failures.append(ids)
            raise OperationalError("SELECT", {}, ConnectionError("server closed the connection"))
        return real_load(ids)

    relay._load = load_during_restart
    with pytest.raises(OperationalError):
        relay.run_once(wait=False)  # the worker's send loop logs this and goes on
    assert failures and relay._inflight == set()
    assert the_row(rt).status == "sending"
    clock.advance(seconds=LEASE.total_seconds() + 1)
    relay._parked_at = 0  # look for abandoned sends on the next round
    for _ in range(5):
        relay.drain()
        if the_row(rt).status == "sent":
            break
        clock.advance(seconds=3)
    assert the_row(rt).status == "sent"
    assert sent_texts(rt, PHONE) == ["Caught by a restart"]  # once
