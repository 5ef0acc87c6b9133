"""`clinic-bot` commands run as an operator runs them: a real process, from another working
directory, configured only through the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select, text
from werkzeug.security import check_password_hash

from clinic_bot.core.db import Database
from clinic_bot.models import StaffUser
from tests.conftest import TEST_DATABASE_URL, WEBHOOK_SECRET

CLINIC_BOT = Path(sys.executable).with_name("clinic-bot")


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """A working directory far from the project (no migrations/, no alembic.ini, no instance/)."""
    path = tmp_path / "somewhere" / "else"
    path.mkdir(parents=True)
    return path


def run(args: list[str], cwd: Path, env: dict, stdin: str | None = None):
    return subprocess.run(
        [str(CLINIC_BOT), *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def cli_env(tmp_path: Path, database_url: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHAPI_", "DATABASE_"))}
    env.update(
        DATABASE_URL=database_url,
        CLINIC_BOT_INSTANCE=str(tmp_path / "instance"),
        SECRET_KEY="test-secret-key",
        WHAPI_WEBHOOK_SECRET=WEBHOOK_SECRET,
        **extra,
    )
    return env


def test_db_upgrade_works_from_another_directory_on_a_fresh_database(tmp_path, elsewhere):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    done = run(["db", "upgrade"], elsewhere, cli_env(tmp_path, url))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "database is up to date"
    engine = create_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()
    assert {"inbox_event", "outbox_message", "patient", "api_token", "staff_user"} <= tables
    assert version
    again = run(["db", "upgrade"], elsewhere, cli_env(tmp_path, url))
    assert again.returncode == 0, again.stderr
    assert not list(elsewhere.iterdir()), "nothing is written to the working directory"


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="needs TEST_DATABASE_URL (PostgreSQL)")
def test_db_upgrade_accepts_herokus_postgres_url(tmp_path, elsewhere, database_url):
    heroku = "postgres://" + TEST_DATABASE_URL.split("://", 1)[1]
    done = run(["db", "upgrade"], elsewhere, cli_env(tmp_path, heroku))
    assert done.returncode == 0, done.stderr


def test_api_token_create_prints_a_working_token_as_the_last_line(
    tmp_path, elsewhere, database_url, client
):
    done = run(
        ["api-token", "create", "reception-laptop"], elsewhere, cli_env(tmp_path, database_url)
    )
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1]
    assert token.startswith("cb_") and " " not in token
    ok = client.get("/api/v1/patients/4915112345678", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 404  # authenticated: the patient just does not exist
    assert ok.json["error"]["code"] == "not_found"
    bad = client.get("/api/v1/patients/4915112345678", headers={"Authorization": "Bearer cb_x"})
    assert bad.status_code == 401
    second = run(["api-token", "create", "other"], elsewhere, cli_env(tmp_path, database_url))
    assert second.stdout.strip().splitlines()[-1] != token


def test_staff_add_reads_the_password_from_stdin(tmp_path, elsewhere, database_url):
    env = cli_env(tmp_path, database_url)
    done = run(
        ["staff", "add", "Front.Desk@Clinic.example", "--role", "reception", "--password-stdin"],
        elsewhere,
        env,
        stdin="correct horse battery\n",
    )
    assert done.returncode == 0, done.stderr
    assert "correct horse" not in done.stdout + done.stderr
    db = Database(database_url)
    try:
        with db.Session() as s:
            user = s.execute(select(StaffUser)).scalar_one()
    finally:
        db.dispose()
    assert (user.email, user.role) == ("front.desk@clinic.example", "reception")
    assert check_password_hash(user.password_hash, "correct horse battery")

    again = run(
        ["staff", "add", "front.desk@clinic.example", "--role", "admin", "--password-stdin"],
        elsewhere,
        env,
        stdin="another password\n",
    )
    assert again.returncode == 2
    assert "already has a login" in again.stderr


def test_staff_add_refuses_a_short_password_and_an_unknown_role(tmp_path, elsewhere, database_url):
    env = cli_env(tmp_path, database_url)
    short = run(
        ["staff", "add", "a@clinic.example", "--role", "reception", "--password-stdin"],
        elsewhere,
        env,
        stdin="abc\n",
    )
    assert short.returncode == 2
    assert "at least 8" in short.stderr
    role = run(["staff", "add", "b@clinic.example", "--role", "owner"], elsewhere, env)
    assert role.returncode == 2
    assert "owner" in role.stderr


def test_staff_add_without_stdin_prints_a_generated_password(tmp_path, elsewhere, database_url):
    done = run(
        ["staff", "add", "c@clinic.example", "--role", "admin"],
        elsewhere,
        cli_env(tmp_path, database_url),
    )
    assert done.returncode == 0, done.stderr
    password = done.stdout.strip().splitlines()[-1].removeprefix("password: ")
    assert len(password) >= 12


def test_webhook_register_points_the_gateway_at_us_with_the_secret_header(
    tmp_path, elsewhere, database_url, live_server
):
    env = cli_env(
        tmp_path,
        database_url,
        WHAPI_API_URL=f"{live_server.base_url}/sandbox/gateway",
        WHAPI_TOKEN="test-token",
    )
    done = run(["webhook", "register", "https://clinic.example/"], elsewhere, env)
    assert done.returncode == 0, done.stderr
    url = f"{live_server.base_url}/sandbox/gateway/settings"
    # Like Whapi, the sandbox answers 401 without a token.
    assert live_server.http.get(url).status_code == 401
    settings = live_server.http.get(url, headers={"Authorization": "Bearer test-token"}).json()
    (hook,) = settings["webhooks"]
    assert hook["url"] == "https://clinic.example/webhooks/whapi"
    assert hook["mode"] == "body"
    assert hook["headers"] == {"X-Webhook-Token": WEBHOOK_SECRET}
    assert {"type": "messages", "method": "post"} in hook["events"]
    assert {"type": "statuses", "method": "post"} in hook["events"]
    # What reached the phone while the channel was reconnecting comes on `put`.
    assert {"type": "messages", "method": "put"} in hook["events"]
    assert {"type": "statuses", "method": "put"} in hook["events"]


def test_clinic_bot_help_lists_the_contract_commands(tmp_path, elsewhere):
    done = run(["--help"], elsewhere, cli_env(tmp_path, f"sqlite:///{tmp_path / 'x.db'}"))
    assert done.returncode == 0
    for command in ("run", "worker", "db", "api-token", "staff", "webhook"):
        assert command in done.stdout
