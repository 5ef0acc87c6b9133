"""Short claim leases kept alive by a heartbeat while their work is in progress.

A claimed row carries `locked_until`; a live worker renews it every third of the lease, so a
slow send or a long batch keeps its rows, while the rows of a worker that died (SIGKILL, a
lost dyno) come back to the others within one short lease instead of minutes.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy import update

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews `locked_until` of claimed rows on a background thread until stopped."""

    def __init__(self, db, model, ids, *, status: str, lease: timedelta, clock):
        self.db = db
        self.model = model
        self.ids = list(ids)
        self.status = status
        self.lease = lease
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def renew(self) -> int:
        """Push the lease of rows still claimed by us one lease ahead; returns how many."""
        if not self.ids:
            return 0
        m = self.model
        with self.db.transaction() as s:
            result = s.execute(
                update(m)
                .where(m.id.in_(self.ids), m.status == self.status)
                .values(locked_until=self.clock() + self.lease)
                .execution_options(synchronize_session=False)
            )
        return result.rowcount or 0

    def _run(self) -> None:
        every = max(0.2, self.lease.total_seconds() / 3)
        while not self._stop.wait(every):
            try:
                self.renew()
            except Exception:  # a missed renewal only shortens the lease; never stop the work
                log.warning("could not renew a claim lease; it may run out", exc_info=True)

    def __enter__(self) -> LeaseKeeper:
        if self.ids:
            self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
