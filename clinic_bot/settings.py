"""Settings from the environment, and the secrets kept in the instance folder."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
EXAMPLE_PROFILE = PACKAGE_DIR / "clinic.example.toml"
WHAPI_DEFAULT_URL = "https://gate.whapi.cloud"
# Secrets taken from the environment when set, else generated once into the instance folder.
GENERATED_SECRETS = ("SECRET_KEY", "WHAPI_WEBHOOK_SECRET", "CALENDAR_FEED_TOKEN")
# The least time between two proactive sends (reminders, follow-ups, broadcasts) from the
# clinic's number, enforced when they are sent; env PROACTIVE_MIN_INTERVAL_SECONDS.
PROACTIVE_MIN_INTERVAL = 1.0


def default_instance_path() -> Path:
    """The instance folder: $CLINIC_BOT_INSTANCE, else ./instance beside the project."""
    env = os.environ.get("CLINIC_BOT_INSTANCE")
    return Path(env).resolve() if env else PROJECT_DIR / "instance"


def normalize_database_url(url: str) -> str:
    """Accept Heroku's postgres:// and plain postgresql:// URLs; use the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _owner_only(folder: Path) -> None:
    """The instance folder holds secrets and (SQLite) the patients' database: 0700."""
    try:
        if folder.stat().st_mode & 0o077:
            folder.chmod(0o700)
    except OSError:
        pass  # not ours to change (a shared mount); the files inside are still 0600


def _load_or_create_secrets(instance: Path) -> dict[str, str]:
    """Secrets generated once and kept in instance/secrets.json (mode 0600)."""
    path = instance / "secrets.json"
    data: dict[str, str] = {}
    if path.exists():
        data = json.loads(path.read_text())
    changed = False
    for key in GENERATED_SECRETS:
        if not data.get(key):
            data[key] = secrets.token_urlsafe(32)
            changed = True
    if changed:
        instance.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)
    return data


@dataclass
class Settings:
    """Everything the app reads from the environment (CONTRACT §2)."""

    instance_path: Path
    database_url: str
    secret_key: str
    webhook_secret: str
    whapi_token: str | None
    whapi_api_url: str
    channel_id: str | None
    clinic_config: Path
    worker_tick_seconds: float
    port: int
    public_url: str
    # How long a claimed inbox/outbox row stays with its worker before another may take it
    # (None: the built-in leases). Short values make a killed worker's rows come back sooner.
    worker_lease_seconds: float | None = None
    # The secret path part of the .ics subscription feed: GET /calendar/<token>.ics.
    calendar_feed_token: str = ""
    proactive_min_interval: float = PROACTIVE_MIN_INTERVAL

    @property
    def sandbox(self) -> bool:
        """True when no Whapi token is set: the built-in sandbox gateway answers instead."""
        return not self.whapi_token

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> Settings:
        """Read the environment; secrets missing from it are generated once into the instance."""
        env = dict(os.environ if env is None else env)
        instance = Path(overrides.pop("instance_path", None) or default_instance_path())
        instance.mkdir(mode=0o700, parents=True, exist_ok=True)
        _owner_only(instance)
        kept = {}
        if not all(env.get(k) for k in GENERATED_SECRETS):
            kept = _load_or_create_secrets(instance)
        port = int(env.get("PORT", "5000"))
        token = env.get("WHAPI_TOKEN") or None
        public_url = env.get("PUBLIC_URL", f"http://127.0.0.1:{port}").rstrip("/")
        api_url = env.get("WHAPI_API_URL") or (
            WHAPI_DEFAULT_URL if token else f"{public_url}/sandbox/gateway"
        )
        values = dict(
            instance_path=instance,
            database_url=normalize_database_url(
                env.get("DATABASE_URL") or f"sqlite:///{instance / 'clinic.db'}"
            ),
            secret_key=env.get("SECRET_KEY") or kept["SECRET_KEY"],
            webhook_secret=env.get("WHAPI_WEBHOOK_SECRET") or kept["WHAPI_WEBHOOK_SECRET"],
            whapi_token=token,
            whapi_api_url=api_url.rstrip("/"),
            channel_id=env.get("WHAPI_CHANNEL_ID") or None,
            clinic_config=Path(env.get("CLINIC_CONFIG") or instance / "clinic.toml"),
            worker_tick_seconds=float(env.get("WORKER_TICK_SECONDS", "5")),
            port=port,
            public_url=public_url,
            worker_lease_seconds=float(env["WORKER_LEASE_SECONDS"])
            if env.get("WORKER_LEASE_SECONDS")
            else None,
            calendar_feed_token=env.get("CALENDAR_FEED_TOKEN") or kept["CALENDAR_FEED_TOKEN"],
            proactive_min_interval=float(
                env.get("PROACTIVE_MIN_INTERVAL_SECONDS") or PROACTIVE_MIN_INTERVAL
            ),
        )
        values.update(overrides)
        return cls(**values)
