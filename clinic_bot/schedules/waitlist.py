"""Waitlist tick: expired offers pass on, freed slots are offered to waiting patients in order."""

from __future__ import annotations

import logging

from sqlalchemy.exc import IntegrityError

from clinic_bot.core.runtime import Runtime
from clinic_bot.reactions.conversation.waitlist import expire_and_offer

log = logging.getLogger(__name__)


def tick(runtime: Runtime) -> int:
    """One pass; returns how many offers went out. Safe to run from two workers at once."""
    try:
        with runtime.db.transaction() as session:
            return expire_and_offer(session, runtime.profile, runtime.clock())
    except IntegrityError:
        # Another worker offered the same slot to the same entry first; its offer stands.
        log.info("waitlist tick: lost a race to another worker, nothing sent")
        return 0
