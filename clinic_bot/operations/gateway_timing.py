"""Gateway latency, measured around every send and kept in the database for /metrics."""

from __future__ import annotations

import threading
import time

from clinic_bot.adapters.whapi.client import SendResult, WhapiClient
from clinic_bot.models import GatewayState
from clinic_bot.operations.metrics import LATENCY_BUCKETS, LATENCY_KEY


class TimedWhapiClient(WhapiClient):
    """A WhapiClient that remembers how long each send took, until `flush` stores it."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._lock = threading.Lock()
        self._pending: list[float] = []

    def send(self, endpoint: str, body: dict) -> SendResult:
        started = time.monotonic()
        try:
            return super().send(endpoint, body)
        finally:
            with self._lock:
                self._pending.append(time.monotonic() - started)

    def take(self) -> list[float]:
        """The durations measured since the last call, emptied."""
        with self._lock:
            taken, self._pending = self._pending, []
        return taken


def flush_latency(runtime) -> int:
    """Add the sends measured in this process to the shared histogram row (a worker tick)."""
    client = runtime.client
    if not isinstance(client, TimedWhapiClient):
        return 0
    durations = client.take()
    if not durations:
        return 0
    now = runtime.clock()
    with runtime.db.transaction() as s:
        row = s.get(GatewayState, LATENCY_KEY, with_for_update=True)
        value = dict(row.value) if row is not None else {}
        buckets = dict(value.get("buckets", {}))
        for seconds in durations:
            # Stored per bucket (not cumulative), so adding is a plain sum.
            bound = next((b for b in LATENCY_BUCKETS if seconds <= b), None)
            if bound is not None:
                buckets[str(bound)] = int(buckets.get(str(bound), 0)) + 1
        value = {
            "buckets": buckets,
            "count": int(value.get("count", 0)) + len(durations),
            "sum": float(value.get("sum", 0.0)) + sum(durations),
        }
        GatewayState.put(s, LATENCY_KEY, value, now)
    return len(durations)
