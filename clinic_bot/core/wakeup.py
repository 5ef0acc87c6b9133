"""Wake the worker as soon as a webhook is stored, within one process or across processes.

- same process (`clinic-bot run`): a threading.Event;
- PostgreSQL: NOTIFY from a small announcer thread in each web process, after the webhook's
  commit, coalescing a burst into few NOTIFYs; LISTEN on a dedicated worker connection;
- SQLite (always one machine): the webhook touches a file beside the database, the worker
  watches its modification time.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine.url import make_url

log = logging.getLogger(__name__)
CHANNEL = "clinic_bot_inbox"


class Waker:
    """Wakes a worker loop at once when there is new work (same process)."""

    def __init__(self):
        self._event = threading.Event()

    def wake(self) -> None:
        """Wake the loop now."""
        self._event.set()

    def wait(self, timeout: float) -> bool:
        """Sleep until woken or `timeout` seconds pass; True when woken."""
        woke = self._event.wait(timeout)
        self._event.clear()
        return woke


def signal_file(database_url: str) -> Path | None:
    """The file whose mtime announces new inbox rows, for a file-based SQLite database."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database).with_suffix(".wake")


class Announcer:
    """Tells workers in other processes that new inbox rows are committed.

    PostgreSQL: a NOTIFY inside each webhook's transaction made committing webhooks queue on
    the server's notification lock (measured: 394 acks/s with it, 476 without). Instead the
    webhook pokes this announcer after its commit, and one thread per process sends NOTIFY in
    its own short transaction; pokes that arrive meanwhile are answered by one more NOTIFY, so
    no wake-up is lost and a burst costs a few NOTIFYs, not one per webhook.
    SQLite: the webhook touches the signal file (a stat-watched mtime; no lock involved).
    """

    def __init__(self, database_url: str, engine):
        self.engine = engine
        self.is_postgres = make_url(database_url).get_backend_name() == "postgresql"
        self.path = signal_file(database_url)
        self._poked = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = None
        self._lock = threading.Lock()

    def announce(self) -> None:
        """Say that rows were committed; returns at once."""
        if not self.is_postgres:
            touch(self.path)
            return
        with self._lock:
            # Started lazily in the process that pokes: threads do not survive a fork.
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="announcer", daemon=True)
                self._thread.start()
        self._poked.set()

    def _run(self) -> None:
        while True:
            self._poked.wait()
            self._poked.clear()
            try:
                with self.engine.connect() as conn:
                    conn.execute(text(f"NOTIFY {CHANNEL}"))
                    conn.commit()
            except Exception:
                log.warning("could not NOTIFY the worker; trying again in a second")
                time.sleep(1.0)
                self._poked.set()


def touch(path: Path | None) -> None:
    """Announce new rows to a worker in another process (SQLite)."""
    if path is None:
        return
    try:
        path.touch()
    except OSError:
        log.debug("could not touch %s", path, exc_info=True)


class CrossProcessListener:
    """Turns cross-process announcements into `waker.wake()` calls, on a daemon thread."""

    def __init__(self, database_url: str, waker, *, poll: float = 0.01):
        self.database_url = database_url
        self.waker = waker
        self.poll = poll
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        url = make_url(self.database_url)
        if url.get_backend_name() == "postgresql":
            target = self._listen_postgres
        elif signal_file(self.database_url) is not None:
            target = self._watch_file
        else:
            return
        self._thread = threading.Thread(target=target, name="wake-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch_file(self) -> None:
        path = signal_file(self.database_url)
        last = None
        while not self._stop.is_set():
            try:
                mtime = os.stat(path).st_mtime_ns
            except OSError:
                mtime = None
            if mtime != last:
                last = mtime
                self.waker.wake()
            self._stop.wait(self.poll)

    def _listen_postgres(self) -> None:
        import psycopg

        url = make_url(self.database_url).set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            self.waker.wake()
            except Exception:
                log.warning("LISTEN connection lost; reconnecting", exc_info=True)
                self._stop.wait(1.0)
