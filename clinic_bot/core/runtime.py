"""The Runtime: settings, database, profile, clock, gateway client, waker and registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy.orm import Session

from clinic_bot.core.clock import system_clock
from clinic_bot.core.db import Database
from clinic_bot.core.registry import Registry
from clinic_bot.core.wakeup import Announcer, Waker
from clinic_bot.settings import Settings

EXTENSION_KEY = "clinic_bot"


@dataclass
class Runtime:
    """Everything a request, a tick or a handler needs, passed explicitly.

    `clinic_bot.bootstrap.build_runtime` builds it: `profile` is the clinic's
    `domain.profile.Profile` and `client` the gateway client (`adapters.whapi.client`); the
    core does not import those layers, so their types are named here in words.
    """

    settings: Settings
    db: Database
    profile: Any
    client: Any
    clock: Callable[[], datetime] = system_clock
    waker: Waker = field(default_factory=Waker)
    registry: Registry = field(default_factory=Registry)
    announcer: Announcer = field(init=False)

    def __post_init__(self):
        self.announcer = Announcer(self.settings.database_url, self.db.engine)
        # Hooks run inside a caller's transaction with only the session (appointment changes,
        # opt-outs): they reach the profile, clock and registry through `runtime_of(session)`.
        self.db.Session.configure(info={"runtime": self})
        self.db.ReadSession.configure(info={"runtime": self})


def runtime_of(session: Session) -> Runtime:
    """The runtime whose database opened this session (every session has one)."""
    runtime = session.info.get("runtime")
    if runtime is None:
        raise RuntimeError("this session was not opened by a Runtime's database")
    return runtime


def get_runtime() -> Runtime:
    """The runtime of the Flask app serving the current request."""
    return current_app.extensions[EXTENSION_KEY]
