"""The Procfile's commands really start: `release` migrates a fresh database, `web` serves
/healthz and takes a webhook under gunicorn, `worker` answers it and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import TEST_DATABASE_URL

# Whatever TEST_DATABASE_URL says, these processes run on their own SQLite file (a dyno's
# environment): the SQLite run of the suite covers them, the PostgreSQL run would repeat them.
pytestmark = pytest.mark.skipif(
    bool(TEST_DATABASE_URL), reason="runs on its own SQLite file; covered by the SQLite run"
)


PROJECT = Path(__file__).resolve().parents[2]
SECRET = "procfile-webhook-secret"
PHONE = "4915112345678"


def procfile() -> dict[str, str]:
    """The Procfile as Heroku reads it: `name: command` per line."""
    entries = {}
    for line in (PROJECT / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = command.strip()
    return entries


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def heroku_env(tmp_path) -> dict[str, str]:
    """A dyno's environment: config vars only, the app's bin directory on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHAPI_", "DATABASE_"))}
    port = free_port()
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        DATABASE_URL=f"sqlite:///{tmp_path / 'dyno.db'}",
        CLINIC_BOT_INSTANCE=str(tmp_path / "instance"),
        SECRET_KEY="procfile-secret-key",
        WHAPI_WEBHOOK_SECRET=SECRET,
        PORT=str(port),
        WORKER_TICK_SECONDS="1",
    )
    return env


def start(command: str, env: dict, log: Path) -> subprocess.Popen:
    """Run a Procfile command the way Heroku does: through a shell, from the app's root."""
    return subprocess.Popen(
        ["/bin/sh", "-c", f"exec {command}"],
        cwd=PROJECT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def poll(predicate, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process exited early:\n{log.read_text()[-3000:]}")
        try:
            value = predicate()
        except requests.RequestException:
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not ready within {timeout}s:\n{log.read_text()[-3000:] if log else ''}")


def test_the_procfile_declares_release_web_and_worker():
    entries = procfile()
    assert set(entries) == {"release", "web", "worker"}
    assert entries["web"] == "gunicorn -c gunicorn.conf.py wsgi:app"
    # The port, workers and timeouts come from the environment through gunicorn.conf.py.
    assert "os.environ.get('PORT'" in (PROJECT / "gunicorn.conf.py").read_text()


def test_release_then_web_then_worker_answer_a_patient(heroku_env, tmp_path):
    entries = procfile()
    release = subprocess.run(
        ["/bin/sh", "-c", entries["release"]],
        cwd=PROJECT,
        env=heroku_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert release.returncode == 0, release.stderr
    assert (tmp_path / "dyno.db").exists()

    base = f"http://127.0.0.1:{heroku_env['PORT']}"
    web_log, worker_log = tmp_path / "web.log", tmp_path / "worker.log"
    web = start(entries["web"], heroku_env, web_log)
    worker = None
    try:
        health = poll(lambda: requests.get(f"{base}/healthz", timeout=2), 60, web, web_log)
        assert health.status_code == 200
        assert health.json()["db"] == "ok"

        worker = start(entries["worker"], heroku_env, worker_log)
        hello = {
            "messages": [
                {
                    "id": "procfile-hi-1",
                    "from_me": False,
                    "type": "text",
                    "chat_id": f"{PHONE}@s.whatsapp.net",
                    "timestamp": 1795500000,
                    "source": "mobile",
                    "text": {"body": "hi"},
                    "from": PHONE,
                }
            ],
            "event": {"type": "messages", "event": "post"},
        }
        r = requests.post(f"{base}/webhooks/whapi/{SECRET}", json=hello, timeout=10)
        assert r.status_code == 200 and r.json()["stored"] == 1

        def menu():
            got = requests.get(f"{base}/sandbox/api/patients/{PHONE}/messages", timeout=5)
            return [m for m in got.json()["messages"] if m.get("buttons")]

        assert poll(menu, 60, worker, worker_log)
        assert poll(
            lambda: requests.get(f"{base}/healthz", timeout=2).json()["worker"]["last_tick"],
            30,
        )
    finally:
        worker_code = stop(worker) if worker is not None else 0
        web_code = stop(web)
    assert worker_code == 0, worker_log.read_text()[-3000:]
    assert web_code == 0, web_log.read_text()[-3000:]
    # The webhook went to the path form: its secret is a credential, never in the access log.
    assert "/webhooks/whapi/[secret]" in web_log.read_text()
    assert SECRET not in web_log.read_text()


def test_web_refuses_to_boot_with_a_bad_profile_and_says_which_key(heroku_env, tmp_path):
    profile = tmp_path / "bad.toml"
    example = (PROJECT / "clinic_bot" / "clinic.example.toml").read_text()
    profile.write_text(example.replace('"Europe/Berlin"', '"Nowhere/Land"'))
    heroku_env["CLINIC_CONFIG"] = str(profile)
    log = tmp_path / "web.log"
    web = start(procfile()["web"], heroku_env, log)
    try:
        code = web.wait(timeout=60)
    except subprocess.TimeoutExpired:
        stop(web)
        raise AssertionError("gunicorn started with a bad profile") from None
    assert code != 0
    assert "clinic profile: clinic.timezone: " in log.read_text()


def test_worker_stops_cleanly_on_sigterm_while_its_ticks_fire(heroku_env, tmp_path):
    """SIGTERM at any moment ends the worker with 0, even while ticks are being submitted.

    A signal handler that stopped the scheduler itself could land inside APScheduler's own
    executor lock and hang until Heroku's SIGKILL; the ticks run every 20 ms here so that the
    signal falls among them.
    """
    entries = procfile()
    env = {**heroku_env, "WORKER_TICK_SECONDS": "0.02"}
    release = subprocess.run(
        ["/bin/sh", "-c", entries["release"]],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert release.returncode == 0, release.stderr
    for round_ in range(2):
        log = tmp_path / f"worker-{round_}.log"
        worker = start(entries["worker"], env, log)
        poll(lambda log=log: "worker started" in log.read_text(), 60, worker, log)
        code = stop(worker)
        assert code == 0, log.read_text()[-3000:]
        assert "worker stopped" in log.read_text()
