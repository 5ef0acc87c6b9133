"""Shared fixtures: a migrated database per test (SQLite, or PostgreSQL via TEST_DATABASE_URL),
a runtime with an injectable clock, and a live server on 127.0.0.1 with the sandbox gateway."""

from __future__ import annotations

import os
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text
from werkzeug.serving import make_server

from clinic_bot.app import create_app
from clinic_bot.bootstrap import build_runtime
from clinic_bot.core.db import Base
from clinic_bot.core.migrate import upgrade
from clinic_bot.core.runtime import Runtime
from clinic_bot.sandbox.gateway import CALLBACKS
from clinic_bot.settings import Settings, normalize_database_url

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
WEBHOOK_SECRET = "test-webhook-secret"


class FakeClock:
    """A clock tests move by hand; starts at a fixed instant unless told otherwise."""

    def __init__(self, start: datetime | None = None):
        self.now = start or datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
        self.lock = threading.Lock()

    def __call__(self) -> datetime:
        with self.lock:
            return self.now

    def advance(self, **kw) -> datetime:
        with self.lock:
            self.now += timedelta(**kw)
            return self.now

    def set(self, when: datetime) -> None:
        with self.lock:
            self.now = when


@pytest.fixture(scope="session")
def _migrated_template(tmp_path_factory) -> str:
    """Migrate once per session: a SQLite file to copy, or the PostgreSQL schema."""
    if TEST_DATABASE_URL:
        url = normalize_database_url(TEST_DATABASE_URL)
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        upgrade(url)
        return url
    path = tmp_path_factory.mktemp("template") / "clinic.db"
    upgrade(f"sqlite:///{path}")
    return str(path)


@pytest.fixture(scope="session")
def _pg_emptier(_migrated_template):
    """Empties every table and restarts the ids, on one connection kept for the session.

    DELETE in dependency order beats TRUNCATE here by ~10× (5 vs 55 ms a test on this
    suite's nearly empty tables: TRUNCATE rewrites every table's files), which is a minute
    over the suite; the sequences restart so ids start at 1 as they did.
    """
    if not TEST_DATABASE_URL:
        yield None
        return
    engine = create_engine(_migrated_template, pool_size=1)
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    statements = [f'DELETE FROM "{name}"' for name in tables] + [
        "SELECT setval(c.oid, 1, false) FROM pg_class c"
        " WHERE c.relkind = 'S' AND c.relnamespace = 'public'::regnamespace"
    ]
    script = ";\n".join(statements)

    def empty() -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql(script)

    yield empty
    engine.dispose()


@pytest.fixture
def database_url(_migrated_template, _pg_emptier, tmp_path) -> str:
    """A clean, migrated database for one test."""
    if TEST_DATABASE_URL:
        _pg_emptier()
        return _migrated_template
    path = tmp_path / "clinic.db"
    shutil.copyfile(_migrated_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def settings(tmp_path, database_url) -> Settings:
    instance = tmp_path / "instance"
    instance.mkdir(exist_ok=True)
    return Settings.from_env(
        env={
            "DATABASE_URL": database_url,
            "WHAPI_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "SECRET_KEY": "test-secret-key",
            "WORKER_TICK_SECONDS": "0.5",
        },
        instance_path=instance,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def runtime(settings, request) -> Runtime:
    """A runtime on the test database; uses the `clock` fixture only when the test asks for it."""
    clock = request.getfixturevalue("clock") if "clock" in request.fixturenames else None
    rt = build_runtime(settings, clock=clock)
    yield rt
    rt.db.dispose()


@pytest.fixture
def app(runtime):
    return create_app(runtime)


@pytest.fixture
def client(app):
    return app.test_client()


class Live:
    """A running server (and optionally worker) on 127.0.0.1, with helpers to drive it."""

    def __init__(self, runtime: Runtime, base_url: str):
        self.runtime = runtime
        self.base_url = base_url
        self.http = requests.Session()
        self.worker = None

    def post_webhook(self, payload, *, secret: str = WEBHOOK_SECRET, **kw) -> requests.Response:
        headers = {"X-Webhook-Token": secret} if secret is not None else {}
        url = f"{self.base_url}/webhooks/whapi"
        return self.http.post(url, json=payload, headers=headers, **kw)

    def patient(self, phone: str, **action) -> dict:
        """The simulated patient writes or taps (see the sandbox API)."""
        r = self.http.post(f"{self.base_url}/sandbox/api/patients/{phone}/messages", json=action)
        assert r.status_code == 200, r.text
        return r.json()

    def transcript(self, phone: str) -> list[dict]:
        r = self.http.get(f"{self.base_url}/sandbox/api/patients/{phone}/messages")
        return r.json()["messages"]

    def outgoing(self, phone: str) -> list[dict]:
        return [m for m in self.transcript(phone) if m["direction"] == "out"]

    def wait_for(self, predicate, timeout: float = 10.0, interval: float = 0.05):
        """Poll until `predicate()` is truthy; return its value or fail with a clear message."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        raise AssertionError(f"condition not met within {timeout}s: {predicate}")

    def settle(self, quiet: float = 0.4, timeout: float = 15.0) -> None:
        """Wait until the inbox and outbox have nothing in flight for `quiet` seconds."""
        from sqlalchemy import func, select

        from clinic_bot.models import InboxEvent, OutboxMessage

        def busy():
            with self.runtime.db.Session() as s:
                a = s.execute(
                    select(func.count()).where(InboxEvent.status.in_(("pending", "processing")))
                ).scalar()
                b = s.execute(
                    select(func.count()).where(OutboxMessage.status.in_(("pending", "sending")))
                ).scalar()
            return a + b

        deadline = time.monotonic() + timeout
        calm_since = None
        while time.monotonic() < deadline:
            if busy():
                calm_since = None
            elif calm_since is None:
                calm_since = time.monotonic()
            elif time.monotonic() - calm_since >= quiet:
                return
            time.sleep(0.05)
        raise AssertionError("inbox/outbox did not settle")


def start_server(app, runtime: Runtime):
    """Serve `app` on a free loopback port and point the sandbox gateway at it."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    runtime.settings.public_url = base
    if runtime.settings.sandbox:
        runtime.settings.whapi_api_url = f"{base}/sandbox/gateway"
        runtime.client.base_url = runtime.settings.whapi_api_url
    # A short poll interval makes shutdown (once per test) quick.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    return server, base


@pytest.fixture
def live_server(runtime, app):
    """The app on a real loopback port, without a worker (tests drive the worker by hand)."""
    server, base = start_server(app, runtime)
    yield Live(runtime, base)
    # Callbacks the sandbox still owes this server must not reach the next test's server,
    # which may be given the same port: dropped before the server stops.
    CALLBACKS.forget(f"{base}/webhooks/whapi")
    server.shutdown()


@pytest.fixture
def live(live_server):
    """The app on a real port with the worker running, as `clinic-bot run` does."""
    from clinic_bot.worker import Worker

    worker = Worker(live_server.runtime)
    worker.start()
    live_server.worker = worker
    yield live_server
    worker.stop()


def payloads_dir() -> Path:
    return Path(__file__).parent / "payloads"
