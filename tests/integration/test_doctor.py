"""`clinic-bot doctor` over real HTTP: against the sandbox gateway it passes; each broken part
(a refused token, an unregistered webhook, a stale worker, a pending migration) is its own ✗."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from clinic_bot.adapters.whapi.settings import register_webhook
from clinic_bot.intake.inbox_loop import heartbeat
from clinic_bot.models import GatewayState, InboxEvent
from clinic_bot.operations.doctor import run_doctor
from tests.conftest import TEST_DATABASE_URL, WEBHOOK_SECRET


def doctor_env(live, **extra) -> dict:
    """The environment a deployment's doctor run would see, pointing at the live app."""
    s = live.runtime.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHAPI_", "DATABASE_"))}
    env.update(
        DATABASE_URL=s.database_url,
        CLINIC_BOT_INSTANCE=str(s.instance_path),
        CLINIC_CONFIG=str(s.clinic_config),
        SECRET_KEY="test-secret-key",
        WHAPI_WEBHOOK_SECRET=WEBHOOK_SECRET,
        WHAPI_API_URL=f"{live.base_url}/sandbox/gateway",
        PUBLIC_URL=live.base_url,
        WORKER_TICK_SECONDS="0.5",
    )
    env.update(extra)
    return env


@pytest.fixture
def healthy(live_server):
    """A deployment with its webhook registered and a worker that just ticked."""
    register_webhook(live_server.runtime.client, live_server.base_url, WEBHOOK_SECRET)
    heartbeat(live_server.runtime)
    return live_server


def by_name(report) -> dict:
    return {c.name: c for c in report.checks}


def test_doctor_passes_against_the_sandbox_and_stores_nothing(healthy):
    with healthy.runtime.db.Session() as s:
        # Counted, not assumed 0: on PostgreSQL the suite shares one database, and a late
        # callback of an earlier test can land in it during this test's set-up.
        before = s.query(InboxEvent).count()
    report = run_doctor(doctor_env(healthy), public_url=healthy.base_url)
    checks = by_name(report)
    assert report.ok, [c.line() for c in report.checks]
    assert checks["Whapi token and channel"].detail.endswith("is AUTH")
    assert checks["public URL"].status == "pass"
    assert checks["migrations"].status == "pass"
    with healthy.runtime.db.Session() as s:
        assert s.query(InboxEvent).count() == before  # the self-test webhook carries no items


def test_doctor_cli_prints_a_tick_per_check_and_exits_0(healthy, tmp_path):
    script = Path(sys.executable).with_name("clinic-bot")
    done = subprocess.run(
        [str(script), "doctor"],
        env=doctor_env(healthy),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line[:1] in "✓✗–"]
    assert len(lines) >= 8 and not [line for line in lines if line.startswith("✗")]
    as_json = subprocess.run(
        [str(script), "doctor", "--json"],
        env=doctor_env(healthy),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(as_json.stdout)["ok"] is True


class RefusingGateway:
    """A Whapi stand-in that refuses every token: 404 "Channel not found" for an unknown one."""

    def __init__(self, status: int = 404, message: str = "Channel not found"):
        @Request.application
        def app(request):
            body = {"error": {"code": status, "message": message}}
            return Response(json.dumps(body), status, content_type="application/json")

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.mark.parametrize("status", [404, 401])
def test_a_refused_token_is_a_cross_with_the_fix_and_exit_1(healthy, tmp_path, status):
    gateway = RefusingGateway(status)
    try:
        env = doctor_env(healthy, WHAPI_API_URL=gateway.url, WHAPI_TOKEN="wrong-token")
        report = run_doctor(env)
        script = Path(sys.executable).with_name("clinic-bot")
        done = subprocess.run(
            [str(script), "doctor"], env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        gateway.close()
    check = by_name(report)["Whapi token and channel"]
    assert check.status == "fail" and "refused the token" in check.detail
    assert "WHAPI_TOKEN" in check.fix
    assert done.returncode == 1
    assert "✗ Whapi token and channel: the gateway refused the token" in done.stdout


def test_an_unregistered_webhook_is_a_cross(live_server):
    heartbeat(live_server.runtime)
    report = run_doctor(doctor_env(live_server))
    check = by_name(report)["webhook registration"]
    assert not report.ok
    assert check.status == "fail" and "no webhook for" in check.detail
    assert "clinic-bot webhook register" in check.fix


def test_a_webhook_without_our_secret_is_a_cross(live_server):
    register_webhook(live_server.runtime.client, live_server.base_url, "someone-elses-secret")
    heartbeat(live_server.runtime)
    check = by_name(run_doctor(doctor_env(live_server)))["webhook registration"]
    assert check.status == "fail" and "secret" in check.detail


def test_a_stale_worker_is_a_cross(healthy):
    rt = healthy.runtime
    with rt.db.transaction() as s:
        long_ago = rt.clock() - timedelta(minutes=10)
        GatewayState.put(s, "worker", {"last_tick": long_ago.isoformat()}, long_ago)
    report = run_doctor(doctor_env(healthy))
    check = by_name(report)["worker heartbeat"]
    assert not report.ok
    assert check.status == "fail" and "last tick 600s ago" in check.detail
    assert "clinic-bot worker" in check.fix


def test_a_pending_migration_is_a_cross(healthy):
    engine = create_engine(healthy.runtime.settings.database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0004'"))
    engine.dispose()
    try:
        report = run_doctor(doctor_env(healthy))
    finally:
        engine = create_engine(healthy.runtime.settings.database_url)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head()})
        engine.dispose()
    check = by_name(report)["migrations"]
    assert check.status == "fail" and "database at 0004" in check.detail
    assert "clinic-bot db upgrade" in check.fix


def head() -> str:
    from alembic.script import ScriptDirectory

    from clinic_bot.core.migrate import alembic_config

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def test_production_without_its_secrets_is_a_configuration_cross(healthy):
    env = doctor_env(healthy, WHAPI_TOKEN="real-looking-token")
    env.pop("SECRET_KEY")
    report = run_doctor(env)
    (check,) = report.checks
    assert check.name == "configuration" and check.status == "fail"
    assert "SECRET_KEY must be set when WHAPI_TOKEN is set" in check.detail


@pytest.mark.skipif(TEST_DATABASE_URL is not None, reason="SQLite disk check")
def test_the_sqlite_disk_check_reports_free_space(healthy):
    check = by_name(run_doctor(doctor_env(healthy)))["disk space"]
    assert check.status == "pass" and "MiB free" in check.detail
