"""The daily retention tick: once a day, empty content older than the profile's period."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from clinic_bot.core.db import insert_ignore
from clinic_bot.models import GatewayState
from clinic_bot.operations.retention import apply_retention, describe, retention_period

log = logging.getLogger(__name__)

STATE_KEY = "retention"
EVERY = timedelta(days=1)


def run_daily(runtime) -> dict | None:
    """Run retention when the last run is a day old; two workers never both run it."""
    now = runtime.clock()
    # The common case (ran today) reads one row and takes no write lock.
    with runtime.db.ReadSession() as s:
        row = s.get(GatewayState, STATE_KEY)
        if row is not None and _ran_since(row, now - EVERY):
            return None
    with runtime.db.transaction() as s:
        # The row exists before anyone locks it, so FOR UPDATE below serializes the workers.
        insert_ignore(
            s,
            GatewayState,
            [{"key": STATE_KEY, "value": {}, "updated_at": now}],
            key="key",
            returning=None,
        )
    with runtime.db.transaction() as s:
        row = s.get(GatewayState, STATE_KEY, with_for_update=True, populate_existing=True)
        if _ran_since(row, now - EVERY):
            return None
        report = apply_retention(s, now, retention_period(runtime.profile))
        row.value = {"last_run": now.isoformat(), "report": report}
        row.updated_at = now
    log.info(describe(report), extra={"event": "retention", "outcome": "done"})
    return report


def _ran_since(row: GatewayState, since: datetime) -> bool:
    last = (row.value or {}).get("last_run")
    return bool(last) and datetime.fromisoformat(last) > since
