"""Process lifecycle: `clinic-bot run` stops within 5 s and `clinic-bot worker` within 25 s on
Ctrl-C (SIGINT) or SIGTERM, finishing the work in hand and handing claimed rows back."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, func, select

from clinic_bot.models import InboxEvent
from tests.conftest import TEST_DATABASE_URL
from tests.e2e.test_procfile import PHONE, SECRET, free_port, heroku_env, poll  # noqa: F401
from tests.integration.test_worker_reliability import envelope, text_message

# Whatever TEST_DATABASE_URL says, these processes run on their own SQLite file (a dyno's
# environment): the SQLite run of the suite covers them, the PostgreSQL run would repeat them.
pytestmark = pytest.mark.skipif(
    bool(TEST_DATABASE_URL), reason="runs on its own SQLite file; covered by the SQLite run"
)


CLINIC_BOT = "clinic-bot"


def start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [CLINIC_BOT, *args], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


def stopped_within(proc: subprocess.Popen, sig: int, seconds: float) -> int | None:
    """Send `sig`; the exit code if the process ended within `seconds`, else None (killed)."""
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def claimed_rows(env: dict) -> int:
    engine = create_engine(env["DATABASE_URL"])
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).where(InboxEvent.status == "processing")).scalar_one()
    engine.dispose()
    return n


def post_burst(port: int, count: int) -> None:
    url = f"http://127.0.0.1:{port}/webhooks/whapi"
    for i in range(count):
        body = envelope(text_message(f"wamid-life-{i}", f"49151{i:08d}", "hi"))
        r = requests.post(url, json=body, headers={"X-Webhook-Token": SECRET}, timeout=5)
        assert r.status_code == 200


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_run_stops_within_five_seconds_mid_burst(heroku_env, tmp_path, sig):  # noqa: F811
    log = tmp_path / "run.log"
    subprocess.run([CLINIC_BOT, "db", "upgrade"], env=heroku_env, check=True, capture_output=True)
    port = int(heroku_env["PORT"])
    proc = start(["run", "--port", str(port)], heroku_env, log)
    poll(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok, 30, proc, log)
    post_burst(port, 40)
    code = stopped_within(proc, sig, 5)
    assert code == 0, log.read_text()[-3000:]
    assert "clinic_bot stopped" in log.read_text()
    assert claimed_rows(heroku_env) == 0


def test_worker_stops_within_25_seconds_and_hands_back_what_it_claimed(heroku_env, tmp_path):  # noqa: F811
    subprocess.run([CLINIC_BOT, "db", "upgrade"], env=heroku_env, check=True, capture_output=True)
    web_log, worker_log = tmp_path / "web.log", tmp_path / "worker.log"
    port = int(heroku_env["PORT"])
    web = subprocess.Popen(
        ["gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=Path(__file__).resolve().parents[2],
        env=heroku_env,
        stdout=web_log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        poll(
            lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok, 30, web, web_log
        )
        post_burst(port, 60)
        worker = start(["worker"], heroku_env, worker_log)
        engine = create_engine(heroku_env["DATABASE_URL"])

        def started():
            with engine.connect() as conn:
                return conn.execute(
                    select(func.count()).where(InboxEvent.status != "pending")
                ).scalar_one()

        poll(started, 30, worker, worker_log)
        engine.dispose()
        assert stopped_within(worker, signal.SIGTERM, 25) == 0, worker_log.read_text()[-3000:]
        assert claimed_rows(heroku_env) == 0
    finally:
        web.terminate()
        web.wait(timeout=20)
