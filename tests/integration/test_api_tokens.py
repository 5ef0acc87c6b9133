"""API tokens as an admin sees and an integration uses them: last use, roles, revocation."""

from __future__ import annotations

import pytest

from clinic_bot.models import ApiToken
from clinic_bot.web.api.auth import create_token
from tests.staff_support import add_user, log_in

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
