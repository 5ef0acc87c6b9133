"""The deploy files agree with the Procfile, and the web process they start behaves in
production: the access log hides URL secrets and phones, JSON log lines parse, /metrics sums
gunicorn's workers, and missing production secrets stop start-up with the reason."""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TEST_DATABASE_URL
from tests.e2e import test_procfile
from tests.e2e.test_procfile import (
    PROJECT,
    SECRET,
    free_port,
    poll,
    procfile,
    start,
    stop,
)

# Whatever TEST_DATABASE_URL says, these processes run on their own SQLite file (a dyno's
# environment): the SQLite run of the suite covers them, the PostgreSQL run would repeat them.
pytestmark = pytest.mark.skipif(
    bool(TEST_DATABASE_URL), reason="runs on its own SQLite file; covered by the SQLite run"
)

PHONE = "4915112345678"
heroku_env = test_procfile.heroku_env  # the dyno environment fixture, shared


def dockerfile_labels() -> dict[str, str]:
    text = (PROJECT / "Dockerfile").read_text().replace("\\\n", " ")
    return dict(re.findall(r'clinic-bot\.process\.(\w+)="([^"]+)"', text))


def dockerfile_cmd() -> str:
    (line,) = [
        ln for ln in (PROJECT / "Dockerfile").read_text().splitlines() if ln.startswith("CMD ")
    ]
    return " ".join(json.loads(line[4:]))


def unit_commands(name: str) -> dict[str, list[str]]:
    commands: dict[str, list[str]] = {}
    for line in (PROJECT / "deploy" / name).read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key in ("ExecStart", "ExecStartPre"):
            argv = shlex.split(value)
            argv[0] = Path(argv[0]).name  # the venv's bin folder differs per host
            commands.setdefault(key, []).append(" ".join(argv))
    return commands


def test_app_json_deploys_the_procfile_with_postgres_and_generated_secrets():
    app = json.loads((PROJECT / "app.json").read_text())
    processes = set(procfile()) - {"release"}
    assert set(app["formation"]) == processes == {"web", "worker"}
    assert all(app["formation"][p]["quantity"] == 1 for p in processes)
    assert any(a["plan"].startswith("heroku-postgresql") for a in app["addons"])
    env = app["env"]
    for generated in ("SECRET_KEY", "WHAPI_WEBHOOK_SECRET", "CALENDAR_FEED_TOKEN"):
        assert env[generated]["generator"] == "secret"
    for prompted in ("WHAPI_TOKEN", "WHAPI_CHANNEL_ID"):
        assert env[prompted]["required"] is True and "value" not in env[prompted]
    assert "release" in procfile()  # Heroku runs it on every deploy, the button's first too


def test_the_dockerfile_names_exactly_the_procfiles_commands():
    assert dockerfile_labels() == procfile()
    assert dockerfile_cmd() == procfile()["web"]
    text = (PROJECT / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\w+", text, re.M), "the image must not run as root"
    assert "COPY alembic.ini wsgi.py gunicorn.conf.py Procfile" in text


def test_the_systemd_units_run_the_procfiles_commands():
    web, worker = (
        unit_commands("clinic-bot-web.service"),
        unit_commands("clinic-bot-worker.service"),
    )
    assert web["ExecStart"] == [procfile()["web"]]
    assert web["ExecStartPre"] == [procfile()["release"]]
    assert worker["ExecStart"] == [procfile()["worker"]]


# The image the Dockerfile builds on; another Python 3.11+ image with pip can stand in where
# Docker Hub is out of reach (a local one made with debootstrap, say).
DOCKER_BASE = os.environ.get("CLINIC_BOT_DOCKER_BASE", "python:3.11-slim")


@functools.cache
def docker_unusable() -> str | None:
    """Why the image cannot be built here, or None when it can."""
    if shutil.which("docker") is None:
        return "docker is not installed"
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        return "docker has no running daemon"
    for command in (["docker", "image", "inspect", DOCKER_BASE], ["docker", "pull", DOCKER_BASE]):
        if subprocess.run(command, capture_output=True, timeout=300).returncode == 0:
            return None
    return f"the base image {DOCKER_BASE} is neither here nor pullable (CLINIC_BOT_DOCKER_BASE)"


@pytest.mark.skipif(bool(docker_unusable()), reason=str(docker_unusable()))
def test_the_docker_image_builds_and_its_web_serves_healthz(tmp_path):
    tag = f"clinic-bot-test:{uuid.uuid4().hex[:8]}"
    build = subprocess.run(
        ["docker", "build", "--build-arg", f"BASE_IMAGE={DOCKER_BASE}", "-t", tag, str(PROJECT)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    port = free_port()
    name = f"clinic-bot-test-{uuid.uuid4().hex[:8]}"
    env = ["-e", "SECRET_KEY=k", "-e", f"WHAPI_WEBHOOK_SECRET={SECRET}", "-e", "PORT=8000"]
    try:
        migrate = subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "-v",
                f"{name}:/data",
                *env,
                tag,
                *procfile()["release"].split(),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert migrate.returncode == 0, migrate.stderr[-3000:]
        subprocess.run(
            [
                "docker",
                "run",
                "-d",
                "--name",
                name,
                "-v",
                f"{name}:/data",
                "-p",
                f"127.0.0.1:{port}:8000",
                *env,
                tag,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        health = poll(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2), 90)
        assert health.status_code == 200 and health.json()["db"] == "ok"
        # The third process type, on the same volume: its heartbeat shows in the web's /healthz.
        subprocess.run(
            ["docker", "run", "-d", "--name", f"{name}-worker", "-v", f"{name}:/data", *env, tag]
            + procfile()["worker"].split(),
            check=True,
            capture_output=True,
            timeout=60,
        )
        assert poll(
            lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()["worker"][
                "last_tick"
            ],
            90,
        )
        whoami = subprocess.run(
            ["docker", "run", "--rm", tag, "id", "-u"], capture_output=True, text=True, timeout=60
        )
        assert whoami.stdout.strip() == "10001"  # not root
    finally:
        subprocess.run(["docker", "rm", "-f", f"{name}-worker"], capture_output=True, timeout=60)
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)
        subprocess.run(["docker", "volume", "rm", name], capture_output=True, timeout=60)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=60)


@pytest.fixture
def released(heroku_env):
    """A dyno environment whose database the release phase has migrated."""
    done = subprocess.run(
        ["/bin/sh", "-c", procfile()["release"]],
        cwd=PROJECT,
        env=heroku_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return heroku_env


def test_json_logs_parse_and_carry_ids_but_no_secrets_phones_or_texts(released, tmp_path):
    env = {**released, "LOG_FORMAT": "json", "CALENDAR_FEED_TOKEN": "feed-token-xyz"}
    base = f"http://127.0.0.1:{env['PORT']}"
    log, worker_log = tmp_path / "web.log", tmp_path / "worker.log"
    web = start(procfile()["web"], env, log)
    worker = None
    try:
        poll(lambda: requests.get(f"{base}/healthz", timeout=2).ok, 60, web, log)
        worker = start(procfile()["worker"], env, worker_log)
        hello = {
            "messages": [
                {
                    "id": "deploy-hi-1",
                    "from_me": False,
                    "type": "text",
                    "chat_id": f"{PHONE}@s.whatsapp.net",
                    "timestamp": 1795500000,
                    "text": {"body": "my very private words"},
                    "from": PHONE,
                }
            ],
            "event": {"type": "messages", "event": "post"},
        }
        rid = "req-" + uuid.uuid4().hex[:12]
        r = requests.post(
            f"{base}/webhooks/whapi/{SECRET}", json=hello, timeout=5, headers={"X-Request-ID": rid}
        )
        assert r.status_code == 200 and r.headers["X-Request-ID"] == rid
        assert requests.get(f"{base}/calendar/feed-token-xyz.ics", timeout=5).status_code == 200
        requests.get(f"{base}/api/v1/patients/{PHONE}", timeout=5)
        requests.get(f"{base}/calendar/not-the-token.ics", timeout=5)

        def replied():
            got = requests.get(f"{base}/sandbox/api/patients/{PHONE}/messages", timeout=5)
            return [m for m in got.json()["messages"] if m["direction"] == "out"]

        poll(replied, 60, worker, worker_log)
        poll(lambda: '"outbox_id"' in worker_log.read_text(), 30, worker, worker_log)
    finally:
        worker_code = stop(worker) if worker is not None else 0
        assert stop(web) == 0
    assert worker_code == 0
    lines = worker_log.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every worker line is one JSON object
    (handled,) = [r for r in records if r.get("event") == "TextReceived"]
    assert handled["message_id"] == "deploy-hi-1" and handled["inbox_id"] == 1
    assert isinstance(handled["patient_id"], int) and handled["latency_ms"] >= 0
    assert handled["handler"].endswith("handle_patient_message")
    sends = [r for r in records if r.get("outbox_id")]
    assert sends and all(r["outcome"] == "sent" and r["message_id"] for r in sends)
    for secret in (PHONE, "very private"):
        assert secret not in worker_log.read_text()
    text = log.read_text()
    for secret in (SECRET, "feed-token-xyz", "not-the-token", PHONE, "very private"):
        assert secret not in text
    access = [json.loads(line) for line in text.splitlines() if '"logger": "access"' in line]
    assert any(a["request_id"] == rid and a["path"] == "/webhooks/whapi/[secret]" for a in access)
    assert any(a["path"] == "/calendar/[token].ics" and a["status"] == 200 for a in access)
    for line in text.splitlines():
        if line.startswith("{"):
            json.loads(line)


def test_metrics_under_gunicorn_sum_both_workers_and_need_the_token(released, tmp_path):
    env = {**released, "METRICS_TOKEN": "metrics-token", "WEB_CONCURRENCY": "2"}
    base = f"http://127.0.0.1:{env['PORT']}"
    log = tmp_path / "web.log"
    web = start(procfile()["web"], env, log)
    try:
        poll(lambda: requests.get(f"{base}/healthz", timeout=2).ok, 60, web, log)
        for n in range(6):
            # A fresh connection each time, so both gunicorn workers take some.
            requests.post(f"{base}/webhooks/whapi/wrong-{n}", json={}, timeout=5)
        assert requests.get(f"{base}/metrics", timeout=5).status_code == 401
        got = requests.get(
            f"{base}/metrics", headers={"Authorization": "Bearer metrics-token"}, timeout=5
        )
    finally:
        assert stop(web) == 0
    assert got.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(got.text)}
    webhook = families["clinic_bot_webhook_requests"]
    by_status = {s.labels["status"]: s.value for s in webhook.samples if s.name.endswith("_total")}
    assert by_status == {"401": 6.0}
    assert "clinic_bot_backlog" in families


def test_production_without_secrets_stops_the_web_with_the_reason(heroku_env, tmp_path):
    env = {**heroku_env, "WHAPI_TOKEN": "a-real-token"}
    env.pop("SECRET_KEY")
    log = tmp_path / "web.log"
    web = start(procfile()["web"], env, log)
    try:
        code = web.wait(timeout=60)
    except subprocess.TimeoutExpired:
        stop(web)
        raise AssertionError("gunicorn started without SECRET_KEY in production") from None
    assert code != 0
    assert "SECRET_KEY must be set when WHAPI_TOKEN is set" in log.read_text()
