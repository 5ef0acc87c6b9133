"""API tokens as an admin sees and an integration uses them: last use, roles, revocation."""

from __future__ import annotations

import re

import pytest

from clinic_bot.models import ApiToken, InboxEvent
from clinic_bot.web.api.auth import create_token
from tests.staff_support import add_user, log_in, post

BOSS = "boss@clinic.test"


@pytest.fixture
def boss(live_server):
    add_user(live_server.runtime, BOSS, "admin")
    return log_in(live_server.base_url, BOSS)[0]


def new_token(runtime, name: str, **kw) -> str:
    with runtime.db.transaction() as s:
        return create_token(s, name, runtime.clock(), **kw)


def call(live, token: str, path: str = "/api/v1/appointments", method: str = "GET", **kw):
    headers = {"Authorization": f"Bearer {token}"}
    return live.http.request(method, f"{live.base_url}{path}", headers=headers, **kw)


def last_used(runtime, name: str):
    with runtime.db.ReadSession() as s:
        return s.query(ApiToken).filter_by(name=name).one().last_used_at


def test_a_tokens_last_use_is_recorded_at_most_once_a_minute_and_shown_to_admins(
    clock, live_server, boss
):
    rt = live_server.runtime
    token = new_token(rt, "lab")
    new_token(rt, "never-used")
    assert last_used(rt, "lab") is None
    first = clock()
    assert call(live_server, token).status_code == 200
    assert last_used(rt, "lab") == first

    clock.advance(seconds=30)
    assert call(live_server, token).status_code == 200
    assert last_used(rt, "lab") == first  # within the minute: not written again

    later = clock.advance(seconds=31)
    assert call(live_server, token).status_code == 200
    assert last_used(rt, "lab") == later

    page = boss.get(f"{live_server.base_url}/staff/admin").text
    shown = later.astimezone(rt.profile.timezone).strftime("%Y-%m-%d %H:%M")
    lab_row = page[page.index("<td>lab</td>") :].split("</tr>")[0]
    assert shown in lab_row
    never_row = page[page.index("<td>never-used</td>") :].split("</tr>")[0]
    assert "—" in never_row


def test_an_unknown_token_records_nothing(live_server):
    rt = live_server.runtime
    new_token(rt, "lab")
    assert call(live_server, "cb_not-a-token").status_code == 401
    assert last_used(rt, "lab") is None


ADMIN_ROUTES = {
    ("get", "/dead-letters/events"),
    ("post", "/dead-letters/events/{event_id}/{action}"),
    ("get", "/dead-letters/messages"),
    ("post", "/dead-letters/messages/{message_id}/{action}"),
    ("get", "/audit"),
    ("get", "/staff-users"),
    ("get", "/api-tokens"),
}


def dead_event(runtime) -> int:
    with runtime.db.transaction() as s:
        ev = InboxEvent(
            dedupe_key="dead-1",
            kind="messages",
            payload={"id": "dead-1"},
            status="dead",
            attempts=5,
            last_error="RuntimeError: the handler fell over",
            received_at=runtime.clock(),
        )
        s.add(ev)
        s.flush()
        return ev.id


def test_a_reception_token_gets_403_on_every_admin_route_and_changes_nothing(live_server):
    rt = live_server.runtime
    eid = dead_event(rt)
    desk = new_token(rt, "front-desk", role="reception")
    doc = live_server.http.get(f"{live_server.base_url}/api/v1/openapi.json").json()
    documented = {
        (method, path)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "403" in op.get("responses", {})
    }
    assert documented == ADMIN_ROUTES
    for method, path in sorted(ADMIN_ROUTES):
        url = path.format(event_id=eid, message_id=1, action="retry")
        r = call(live_server, desk, "/api/v1" + url, method.upper())
        assert r.status_code == 403, (method, path, r.status_code)
        assert r.json()["error"]["code"] == "forbidden"
    with rt.db.ReadSession() as s:
        assert s.get(InboxEvent, eid).status == "dead"
    # Everything reception does at the desk stays open to the token.
    assert call(live_server, desk).status_code == 200


def test_an_admin_token_retries_a_dead_letter_and_the_audit_log_names_the_token(live_server):
    rt = live_server.runtime
    eid = dead_event(rt)
    ops = new_token(rt, "ops")  # the default role is admin, as every token was before roles
    listed = call(live_server, ops, "/api/v1/dead-letters/events").json()
    assert listed["total"] == 1 and listed["items"][0]["last_error"].startswith("RuntimeError")
    r = call(live_server, ops, f"/api/v1/dead-letters/events/{eid}/retry", "POST")
    assert r.status_code == 200 and r.json()["status"] == "pending"
    again = call(live_server, ops, f"/api/v1/dead-letters/events/{eid}/dismiss", "POST")
    assert again.status_code == 404  # not a dead letter any more
    audit = call(live_server, ops, "/api/v1/audit", params={"action": "dead_letter_retry"}).json()
    assert [(e["who"], e["target"]) for e in audit["items"]] == [
        ("api token ops", f"inbox_event:{eid}")
    ]
    tokens = call(live_server, ops, "/api/v1/api-tokens").json()["items"]
    assert [(t["name"], t["role"]) for t in tokens] == [("ops", "admin")]


def test_admin_lists_are_paginated(live_server):
    rt = live_server.runtime
    with rt.db.transaction() as s:
        s.add_all(
            InboxEvent(dedupe_key=f"dead-{i}", kind="messages", payload={}, status="dead")
            for i in range(120)
        )
    ops = new_token(rt, "ops")
    first = call(live_server, ops, "/api/v1/dead-letters/events").json()
    last = call(live_server, ops, "/api/v1/dead-letters/events", params={"page": 3}).json()
    assert (first["total"], first["pages"], len(first["items"])) == (120, 3, 50)
    assert len(last["items"]) == 20
    assert call(live_server, ops, "/api/v1/audit", params={"page": 0}).status_code == 400


def test_an_admin_creates_a_reception_token_on_the_operations_page(live_server, boss):
    r = post(
        boss, live_server.base_url, "/staff/admin/tokens", {"name": "desk", "role": "reception"}
    )
    token = re.search(r'<code class="secret">([^<]+)</code>', r.text).group(1)
    assert call(live_server, token, "/api/v1/staff-users").status_code == 403
    page = boss.get(f"{live_server.base_url}/staff/admin").text
    assert "<td>desk</td><td>reception</td>" in page
    bad = post(boss, live_server.base_url, "/staff/admin/tokens", {"name": "x", "role": "owner"})
    assert "give it a role" in bad.text
