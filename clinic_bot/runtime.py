"""The Runtime: settings, database, profile, clock, gateway client and waker, built once."""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .config import EXAMPLE_PROFILE, Settings
from .db import Database
from .profile import Profile, load_profile
from .wakeup import Announcer
from .whapi.client import WhapiClient

log = logging.getLogger(__name__)


def system_clock() -> datetime:
    """The real time, aware UTC."""
    return datetime.now(UTC)


class Waker:
    """Wakes the worker's reactor when a webhook has stored new events (same process)."""

    def __init__(self):
        self._event = threading.Event()

    def wake(self) -> None:
        self._event.set()

    def wait(self, timeout: float) -> bool:
        woke = self._event.wait(timeout)
        self._event.clear()
        return woke


@dataclass
class Runtime:
    """Everything a request, a tick or a handler needs, passed explicitly."""

    settings: Settings
    db: Database
    profile: Profile
    client: WhapiClient
    clock: Callable[[], datetime] = system_clock
    waker: Waker = field(default_factory=Waker)
    announcer: Announcer = field(init=False)

    def __post_init__(self):
        self.announcer = Announcer(self.settings.database_url, self.db.engine)
        # Hooks run inside a caller's transaction with only the session (appointment changes):
        # they reach the clinic profile and clock through `session.info["runtime"]`.
        self.db.Session.configure(info={"runtime": self})
        self.db.ReadSession.configure(info={"runtime": self})

    @classmethod
    def build(cls, settings: Settings, *, clock=None, profile: Profile | None = None, **db_kw):
        """Open the database, load (or first create) the clinic profile, make the client."""
        from .wiring import wire

        wire()
        ensure_profile(settings)
        return cls(
            settings=settings,
            db=Database(settings.database_url, **db_kw),
            profile=profile or load_profile(settings.clinic_config),
            client=WhapiClient(settings.whapi_api_url, settings.whapi_token or "sandbox"),
            clock=clock or system_clock,
        )


def ensure_profile(settings: Settings) -> bool:
    """Copy the shipped example profile to the configured path when none exists yet."""
    path = settings.clinic_config
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(EXAMPLE_PROFILE, path)
    log.warning("wrote the example clinic profile to %s; edit it for your clinic", path)
    return True
