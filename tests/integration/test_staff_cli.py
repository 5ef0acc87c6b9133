"""`clinic-bot staff passwd`, `staff disable` and `api-token revoke` as real processes, with
their effect on a running server's sessions and tokens."""

from __future__ import annotations

import pytest

from clinic_bot.web.api.auth import create_token
from tests.e2e.test_cli import cli_env, run
from tests.staff_support import add_user, log_in

EMAIL = "desk@clinic.test"


@pytest.fixture
def elsewhere(tmp_path):
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


def test_staff_passwd_sets_a_new_password_and_ends_the_users_sessions(
    live_server, tmp_path, elsewhere, database_url
):
    add_user(live_server.runtime, EMAIL)
    http, _ = log_in(live_server.base_url, EMAIL)
    done = run(
        ["staff", "passwd", EMAIL, "--password-stdin"],
        elsewhere,
        cli_env(tmp_path, database_url),
        stdin="a much newer secret\n",
    )
    assert done.returncode == 0, done.stderr
    assert "newer secret" not in done.stdout + done.stderr
    r = http.get(f"{live_server.base_url}/staff/", allow_redirects=False)
    assert r.status_code == 302 and "/staff/login" in r.headers["Location"]
    assert log_in(live_server.base_url, EMAIL, "a much newer secret")[1].status_code == 302

    generated = run(["staff", "passwd", EMAIL], elsewhere, cli_env(tmp_path, database_url))
    password = generated.stdout.strip().splitlines()[-1].split("password: ")[1]
    http, r = log_in(live_server.base_url, EMAIL, password)
    page = http.get(f"{live_server.base_url}/staff/", allow_redirects=False)
    assert page.headers["Location"].endswith("/staff/password")  # must be changed first


def test_staff_disable_refuses_the_login_and_ends_its_sessions(
    live_server, tmp_path, elsewhere, database_url
):
    add_user(live_server.runtime, EMAIL)
    http, _ = log_in(live_server.base_url, EMAIL)
    done = run(["staff", "disable", EMAIL], elsewhere, cli_env(tmp_path, database_url))
    assert done.returncode == 0, done.stderr
    assert http.get(f"{live_server.base_url}/staff/", allow_redirects=False).status_code == 302
    assert log_in(live_server.base_url, EMAIL)[1].status_code == 401
    unknown = run(["staff", "disable", "nobody@x.y"], elsewhere, cli_env(tmp_path, database_url))
    assert unknown.returncode == 2 and "no login" in unknown.stderr


def test_api_token_revoke_refuses_its_callers_at_once(
    live_server, tmp_path, elsewhere, database_url
):
    rt = live_server.runtime
    with rt.db.transaction() as s:
        token = create_token(s, "lab-import", rt.clock())
    url = f"{live_server.base_url}/api/v1/appointments"
    auth = {"Authorization": f"Bearer {token}"}
    assert live_server.http.get(url, headers=auth).status_code == 200
    done = run(["api-token", "revoke", "lab-import"], elsewhere, cli_env(tmp_path, database_url))
    assert done.returncode == 0, done.stderr
    assert live_server.http.get(url, headers=auth).status_code == 401
    again = run(["api-token", "revoke", "lab-import"], elsewhere, cli_env(tmp_path, database_url))
    assert again.returncode == 2 and "no API token" in again.stderr


def test_api_token_create_with_a_reception_role_is_refused_on_admin_routes_only(
    live_server, tmp_path, elsewhere, database_url
):
    env = cli_env(tmp_path, database_url)
    desk = run(["api-token", "create", "front-desk", "--role", "reception"], elsewhere, env)
    boss = run(["api-token", "create", "ops"], elsewhere, env)  # no --role: admin, as before
    assert desk.returncode == 0 and boss.returncode == 0, desk.stderr + boss.stderr
    base = f"{live_server.base_url}/api/v1"

    def get(output, path):
        token = output.stdout.strip().splitlines()[-1]
        return live_server.http.get(base + path, headers={"Authorization": f"Bearer {token}"})

    assert get(desk, "/appointments").status_code == 200
    assert get(desk, "/audit").status_code == 403
    assert get(boss, "/audit").status_code == 200
    wrong = run(["api-token", "create", "x", "--role", "owner"], elsewhere, env)
    assert wrong.returncode == 2 and "owner" in wrong.stderr
