"""The login throttle across two gunicorn processes on one database, with an address spray."""

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

from tests.staff_support import PASSWORD, add_user, log_in

PROJECT = Path(__file__).resolve().parents[2]
EMAIL = "desk@clinic.test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(base: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gunicorn exited:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise AssertionError(f"gunicorn not up:\n{log.read_text()[-3000:]}")


@pytest.fixture
def two_processes(runtime, database_url, tmp_path):
    """Two gunicorn processes (one worker each) on the test database, behind one proxy hop."""
    add_user(runtime, EMAIL, "reception")
    procs, bases = [], []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHAPI_", "DATABASE_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        DATABASE_URL=database_url,
        CLINIC_BOT_INSTANCE=str(tmp_path / "instance"),
        SECRET_KEY="shared-secret-key",
        WHAPI_WEBHOOK_SECRET="s",
        TRUST_PROXY_HOPS="1",
    )
    for i in range(2):
        port = free_port()
        log = tmp_path / f"web{i}.log"
        proc = subprocess.Popen(
            [
                "gunicorn",
                "wsgi:app",
                "--workers",
                "1",
                "--bind",
                f"127.0.0.1:{port}",
            ],
            cwd=PROJECT,
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        bases.append(f"http://127.0.0.1:{port}")
        wait_until_up(bases[-1], proc, log)
    yield bases
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_failures_on_one_process_count_on_the_other_and_a_spray_resets_nothing(two_processes):
    a, b = two_processes
    attacker = {"X-Forwarded-For": "203.0.113.66"}
    codes = [log_in(base, EMAIL, "wrong", headers=attacker)[1].status_code for base in (a, b) * 3]
    # Five failures in all, alternating processes; the sixth try is refused whichever answers.
    assert codes[:5] == [401] * 5 and codes[5] == 429
    assert log_in(a, EMAIL, PASSWORD, headers=attacker)[1].status_code == 429
    # A spray from 20 other addresses, over both processes, adds up on the account.
    for i in range(20):
        base = (a, b)[i % 2]
        log_in(base, EMAIL, "wrong", headers={"X-Forwarded-For": f"198.51.100.{i}"})
    fresh = {"X-Forwarded-For": "192.0.2.77"}
    assert log_in(b, EMAIL, PASSWORD, headers=fresh)[1].status_code == 429
