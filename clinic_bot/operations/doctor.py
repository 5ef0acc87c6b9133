"""`clinic-bot doctor`: check a deployment end to end, one line per check with what to fix.

Each check is a small function returning a Check; none of them changes anything, except the
self-test webhook, which the app acknowledges and stores nothing for (it carries no items).
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import requests
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from clinic_bot.adapters.whapi.client import WhapiClient
from clinic_bot.adapters.whapi.settings import EVENTS
from clinic_bot.core.migrate import alembic_config
from clinic_bot.domain.profile import ProfileError, load_profile
from clinic_bot.models import GatewayState
from clinic_bot.settings import Settings, SettingsError

PASS, FAIL, SKIP = "pass", "fail", "skip"
SYMBOLS = {PASS: "✓", FAIL: "✗", SKIP: "–"}
MAX_SKEW_SECONDS = 10.0
MIN_FREE_BYTES = 200 * 1024 * 1024
HTTP_TIMEOUT = (3.05, 10)


@dataclass
class Check:
    """One line of the report: what was checked, how it went, and what to do about a ✗."""

    name: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        """The check as the terminal shows it."""
        text_ = f"{SYMBOLS[self.status]} {self.name}: {self.detail}"
        return text_ + (f"\n    fix: {self.fix}" if self.fix and self.status == FAIL else "")


@dataclass
class Report:
    """Every check, in order; `ok` only when none failed."""

    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}


def run_doctor(env: dict | None = None, *, public_url: str | None = None) -> Report:
    """Run every check against the configuration in `env` (default: the environment)."""
    checks: list[Check] = []
    try:
        settings = Settings.from_env(env)
    except (SettingsError, ValueError) as exc:
        checks.append(Check("configuration", FAIL, str(exc), "fix the variable named above"))
        return Report(checks)
    checks.append(_check_profile(settings))
    engine = create_engine(settings.database_url, pool_pre_ping=True)
    try:
        db_check, db_now = _check_database(engine)
        checks.append(db_check)
        if db_check.status == PASS:
            checks.append(_check_migrations(engine, settings))
            checks.append(_check_worker(engine, settings))
        whapi = WhapiClient(settings.whapi_api_url, settings.whapi_token or "sandbox", HTTP_TIMEOUT)
        health_check, gateway_date = _check_channel(whapi, settings)
        checks.append(health_check)
        url = (public_url or "").rstrip("/") or None
        checks.append(_check_webhook(whapi, settings, url or settings.public_url))
        checks.append(_check_public_url(settings, url))
        checks.append(_check_clock(gateway_date, db_now))
        checks.append(_check_disk(settings))
    finally:
        engine.dispose()
    return Report(checks)


def _check_profile(settings: Settings) -> Check:
    try:
        profile = load_profile(settings.clinic_config)
    except ProfileError as exc:
        return Check("configuration and profile", FAIL, str(exc), f"edit {settings.clinic_config}")
    except OSError as exc:
        return Check(
            "configuration and profile",
            FAIL,
            f"cannot read {settings.clinic_config}: {exc.strerror}",
            "set CLINIC_CONFIG to the clinic's profile (start from clinic.example.toml)",
        )
    mode = "sandbox gateway" if settings.sandbox else "Whapi"
    return Check(
        "configuration and profile",
        PASS,
        f"{profile.name}: {len(profile.practitioners)} practitioners, {mode}",
    )


def _check_database(engine) -> tuple[Check, datetime | None]:
    url = make_url(str(engine.url)).render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            db_now = None
            if engine.dialect.name == "postgresql":
                db_now = conn.execute(text("SELECT now()")).scalar()
    except Exception as exc:
        return (
            Check(
                "database",
                FAIL,
                f"{url} unreachable: {type(exc).__name__}",
                "check DATABASE_URL and that the database server is up",
            ),
            None,
        )
    return Check("database", PASS, f"{engine.dialect.name} reachable"), db_now


def _check_migrations(engine, settings: Settings) -> Check:
    head = ScriptDirectory.from_config(alembic_config(settings.database_url)).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current == head:
        return Check("migrations", PASS, f"at {head} (current)")
    return Check(
        "migrations",
        FAIL,
        f"database at {current or 'nothing'}, code expects {head}: a migration is pending",
        "run `clinic-bot db upgrade` (Heroku's release phase does it on deploy)",
    )


def _check_worker(engine, settings: Settings) -> Check:
    from sqlalchemy.orm import Session

    with Session(engine) as s:
        row = s.get(GatewayState, "worker")
        last = (row.value or {}).get("last_tick") if row else None
    limit = max(60.0, 3 * settings.worker_tick_seconds)
    fix = "start the worker (`clinic-bot worker`; Heroku: `heroku ps:scale worker=1`)"
    if not last:
        return Check("worker heartbeat", FAIL, "no worker has ever ticked", fix)
    age = (datetime.now(UTC) - datetime.fromisoformat(last)).total_seconds()
    if age > limit:
        return Check("worker heartbeat", FAIL, f"last tick {age:.0f}s ago (over {limit:.0f}s)", fix)
    return Check("worker heartbeat", PASS, f"last tick {max(age, 0):.0f}s ago")


def _check_channel(whapi: WhapiClient, settings: Settings) -> tuple[Check, datetime | None]:
    name = "Whapi token and channel"
    try:
        resp = whapi.get("health")
    except requests.RequestException as exc:
        return (
            Check(
                name,
                FAIL,
                f"{settings.whapi_api_url} unreachable: {type(exc).__name__}",
                "check WHAPI_API_URL (sandbox: the web process must be running)",
            ),
            None,
        )
    date = _date_header(resp)
    # Whapi answers an unknown token with 404 "Channel not found", a revoked one with 401.
    if resp.status_code in (401, 403, 404):
        return (
            Check(
                name,
                FAIL,
                f"the gateway refused the token (HTTP {resp.status_code})",
                "copy the channel's token from the Whapi panel into WHAPI_TOKEN",
            ),
            date,
        )
    try:
        data = resp.json()
    except ValueError:
        data = None
    if resp.status_code != 200 or not isinstance(data, dict):
        return (
            Check(name, FAIL, f"GET /health answered HTTP {resp.status_code}", "retry later"),
            date,
        )
    data = data.get("health", data) if isinstance(data.get("health"), dict) else data
    status = data.get("status") or {}
    state = status.get("text") if isinstance(status, dict) else str(status)
    channel = data.get("channel_id")
    if settings.channel_id and channel and channel != settings.channel_id:
        return (
            Check(
                name,
                FAIL,
                f"the token belongs to channel {channel}, WHAPI_CHANNEL_ID says "
                f"{settings.channel_id}",
                "set WHAPI_TOKEN and WHAPI_CHANNEL_ID for the same channel",
            ),
            date,
        )
    if state != "AUTH":
        return (
            Check(
                name,
                FAIL,
                f"channel {channel} is {state}, not AUTH (the phone is not linked)",
                "open the channel in the Whapi panel and scan the QR code with the clinic's phone",
            ),
            date,
        )
    return Check(name, PASS, f"token accepted, channel {channel} is AUTH"), date


def _date_header(resp) -> datetime | None:
    try:
        return parsedate_to_datetime(resp.headers["Date"]).astimezone(UTC)
    except (KeyError, TypeError, ValueError):
        return None


def _check_webhook(whapi: WhapiClient, settings: Settings, public_url: str) -> Check:
    name = "webhook registration"
    fix = f"run `clinic-bot webhook register {public_url}`"
    want = public_url.rstrip("/") + "/webhooks/whapi"
    try:
        resp = whapi.get("settings")
    except requests.RequestException as exc:
        return Check(name, FAIL, f"GET /settings failed: {type(exc).__name__}", fix)
    if resp.status_code != 200:
        return Check(name, FAIL, f"GET /settings answered HTTP {resp.status_code}", fix)
    try:
        hooks = resp.json().get("webhooks") or []
    except (ValueError, AttributeError):
        hooks = []
    secret = settings.webhook_secret
    path_form = f"{want}/{secret}"
    ours = [h for h in hooks if isinstance(h, dict) and h.get("url") in (want, path_form)]
    if not ours:
        registered = ", ".join(_masked(h.get("url", "?")) for h in hooks if isinstance(h, dict))
        return Check(name, FAIL, f"no webhook for {want} (registered: {registered or 'none'})", fix)
    hook = ours[0]
    if (
        hook.get("url") != path_form
        and (hook.get("headers") or {}).get("X-Webhook-Token") != secret
    ):
        return Check(name, FAIL, "the webhook does not carry our secret (X-Webhook-Token)", fix)
    if hook.get("mode", "body") != "body":
        return Check(name, FAIL, f"the webhook is in {hook.get('mode')} mode, not body", fix)
    have = {(e.get("type"), e.get("method", "post")) for e in hook.get("events") or []}
    missing = [f"{e['type']}/{e['method']}" for e in EVENTS if (e["type"], e["method"]) not in have]
    if missing:
        return Check(name, FAIL, f"events missing: {', '.join(missing)}", fix)
    return Check(name, PASS, f"{want} with our secret and {len(have)} events")


def _masked(url: str) -> str:
    """A webhook URL without a path-form secret."""
    head, sep, _ = url.partition("/webhooks/whapi/")
    return f"{head}/webhooks/whapi/[secret]" if sep else url


def _check_public_url(settings: Settings, public_url: str | None) -> Check:
    name = "public URL"
    if not public_url:
        return Check(name, SKIP, "skipped: give --url https://your.app to test the round trip")
    url = f"{public_url}/webhooks/whapi"
    envelope = {"event": {"type": "doctor", "event": "post"}}  # no items: nothing is stored
    fix = "check that the URL points at this app's web process (DNS, TLS, router)"
    try:
        good = requests.post(
            url,
            json=envelope,
            headers={"X-Webhook-Token": settings.webhook_secret},
            timeout=HTTP_TIMEOUT,
        )
        bad = requests.post(
            url,
            json=envelope,
            headers={"X-Webhook-Token": "doctor-wrong-secret"},
            timeout=HTTP_TIMEOUT,
        )
    except requests.RequestException as exc:
        return Check(name, FAIL, f"{url} unreachable: {type(exc).__name__}", fix)
    if good.status_code == 401:
        return Check(
            name,
            FAIL,
            f"{url} refused our secret",
            "the app there has another WHAPI_WEBHOOK_SECRET than this configuration",
        )
    if good.status_code != 200 or bad.status_code != 401:
        return Check(
            name, FAIL, f"{url} answered {good.status_code}/{bad.status_code}, not 200/401", fix
        )
    return Check(name, PASS, f"signed self-test webhook accepted at {url} (wrong secret: 401)")


def _check_clock(gateway_date: datetime | None, db_now: datetime | None) -> Check:
    name = "clock"
    now = datetime.now(UTC)
    skews = {}
    if gateway_date is not None:
        skews["gateway"] = (now - gateway_date).total_seconds()
    if db_now is not None:
        skews["database"] = (now - db_now.astimezone(UTC)).total_seconds()
    if not skews:
        return Check(name, SKIP, "skipped: no gateway or database clock to compare with")
    worst = max(skews, key=lambda k: abs(skews[k]))
    # The Date header has one-second resolution and the request takes time: allow for both.
    detail = ", ".join(f"{k} {v:+.1f}s" for k, v in skews.items())
    if abs(skews[worst]) > MAX_SKEW_SECONDS:
        return Check(
            name,
            FAIL,
            f"this machine's clock is off: {detail}",
            "enable time sync (e.g. `timedatectl set-ntp true`); reminders depend on it",
        )
    return Check(name, PASS, f"in step ({detail})")


def _check_disk(settings: Settings) -> Check:
    name = "disk space"
    if not settings.database_url.startswith("sqlite"):
        return Check(name, SKIP, "skipped: the database is not SQLite")
    database = make_url(settings.database_url).database or ""
    folder = Path(database).resolve().parent if database else settings.instance_path
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        return Check(
            name,
            FAIL,
            f"{free // 2**20} MiB free beside the SQLite file",
            "free some space or move the database (DATABASE_URL) to a bigger disk",
        )
    return Check(name, PASS, f"{free // 2**20} MiB free beside the SQLite file")
