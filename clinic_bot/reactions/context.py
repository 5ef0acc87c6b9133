"""What every reaction gets: one open transaction, the runtime, the event's time and an outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from clinic_bot.core.runtime import Runtime
from clinic_bot.delivery.outbox import Outbox


class RetryLater(Exception):
    """The event cannot be handled yet (its message is not recorded); try again shortly."""


@dataclass
class HandlerContext:
    """One event's unit of work: its changes and its outbox rows commit together."""

    session: Session
    runtime: Runtime
    now: datetime
    inbox_id: int
    received_at: datetime
    outbox: Outbox

    @property
    def profile(self):
        """The clinic profile."""
        return self.runtime.profile
