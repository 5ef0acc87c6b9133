"""Engine and sessions, the declarative Base, and the one claim helper every tick uses."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import cache

from sqlalchemy import DateTime, create_engine, event, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware UTC time is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base for every model."""


def _private_file(url: str) -> None:
    """Create a SQLite database file readable by its owner only (it holds patient data).

    SQLite gives its -wal and -shm files the database file's mode, so they follow.
    """
    path = url.split("///", 1)[1] if "///" in url else ""
    if not path or path.startswith(":memory:") or "mode=memory" in url:
        return
    path = path.split("?", 1)[0]
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
    except OSError:
        pass  # a read-only or missing folder: SQLite itself will say what is wrong


def make_engine(url: str, **kw) -> Engine:
    """An engine; SQLite gets WAL, a busy timeout and write transactions that start IMMEDIATE."""
    # Error logs must not carry SQL parameters: they are patient phones and message texts.
    kw.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        _private_file(url)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kw)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record):
            # Let SQLAlchemy's "begin" event own transactions, so they can start IMMEDIATE:
            # a read later upgraded to a write would otherwise fail with SQLITE_BUSY.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            if conn.get_execution_options().get("sqlite_read_only"):
                conn.exec_driver_sql("BEGIN")  # a snapshot read (WAL) never waits for writers
            else:
                _begin_immediate(conn)

        return engine
    # No pool_pre_ping: it costs a round trip per checkout (per webhook); a dropped connection
    # fails one transaction, which the webhook answers 503 (Whapi retries) and ticks retry.
    kw.setdefault("pool_recycle", 300)
    if kw.pop("no_pool", False):
        kw["poolclass"] = NullPool
    else:
        kw.setdefault("pool_size", 5)
        kw.setdefault("max_overflow", 10)
    return create_engine(url, **kw)


SQLITE_LOCK_WAIT = 30.0
SQLITE_LOCK_POLL = 0.0003


def _begin_immediate(conn) -> None:
    """Take SQLite's write lock, polling every fraction of a millisecond while another holds it.

    SQLite's own busy handler sleeps 1, 2, 5, 10 … 100 ms between tries, so a webhook that meets a
    worker transaction of 2 ms would wait 8 ms or more; short polls hand the lock over promptly.
    The tries go to the driver connection directly: a refused try costs microseconds there.
    """
    raw = conn.connection.dbapi_connection
    deadline = time.monotonic() + SQLITE_LOCK_WAIT
    raw.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(SQLITE_LOCK_POLL)
    finally:
        raw.execute("PRAGMA busy_timeout=30000")


class Database:
    """One engine and its session factory; `transaction()` is the unit of work."""

    def __init__(self, url: str, **engine_kw):
        self.url = url
        self.engine = make_engine(url, **engine_kw)
        self.Session = sessionmaker(self.engine, expire_on_commit=False)
        # Sessions that only read: on SQLite they begin DEFERRED and take no write lock.
        self.ReadSession = sessionmaker(
            self.engine.execution_options(sqlite_read_only=True), expire_on_commit=False
        )

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits on success and rolls back on any exception."""
        session = self.Session()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


@cache
def _insert_ignore_statement(table, key: tuple[str, ...], dialect: str, returning: str | None):
    # Built once and executed with the rows as parameters, so SQLAlchemy's compiled cache is hit;
    # `.values(rows)` would be a new statement, compiled again, on every call.
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table).on_conflict_do_nothing(index_elements=list(key))
    return stmt.returning(table.c[returning]) if returning else stmt


def insert_ignore(
    session: Session,
    model,
    rows: list[dict],
    key: str | tuple[str, ...],
    returning: str | None = "id",
) -> list:
    """INSERT rows, skipping those whose unique `key` (column or columns) exists.

    Returns the new rows' `returning` column (none when `returning` is None). The one place
    that knows each dialect's INSERT … ON CONFLICT DO NOTHING.
    """
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    key = (key,) if isinstance(key, str) else tuple(key)
    stmt = _insert_ignore_statement(model.__table__, key, dialect, returning)
    result = session.connection().execute(stmt, rows)
    return list(result.scalars()) if returning else []


def next_due(db: Database, model) -> datetime | None:
    """When the earliest pending row of `model` becomes due (how long a loop may sleep)."""
    with db.ReadSession() as s:
        return s.execute(
            select(model.next_attempt_at)
            .where(model.status == "pending")
            .order_by(model.next_attempt_at)
            .limit(1)
        ).scalar()


def claim(
    db: Database,
    model,
    *,
    now: datetime,
    lease: timedelta,
    limit: int,
    ready=None,
    order_by=None,
    claimed_status: str = "processing",
) -> list[int]:
    """Claim up to `limit` ready rows of `model` for this process and return their ids.

    A row is ready when it is `pending` and due (`next_attempt_at <= now`, plus the caller's
    `ready` condition), or when an earlier claim's lease has run out (its process died).
    PostgreSQL locks the candidates with FOR UPDATE SKIP LOCKED, so concurrent claimers take
    disjoint rows; SQLite write transactions begin IMMEDIATE, so claims there are serialized.
    The claim bumps `attempts`, so an event that kills its worker is dead-lettered in time.
    """
    due = ((model.status == "pending") & (model.next_attempt_at <= now)) | (
        (model.status == claimed_status) & (model.locked_until < now)
    )
    if ready is not None:
        due = due & ready
    with db.transaction() as s:
        stmt = (
            select(model.id)
            .where(due)
            .order_by(*(order_by if order_by is not None else [model.next_attempt_at, model.id]))
            .limit(limit)
        )
        if db.is_postgres:
            stmt = stmt.with_for_update(skip_locked=True)
        ids = list(s.execute(stmt).scalars())
        if ids:
            s.execute(
                update(model)
                .where(model.id.in_(ids))
                .values(
                    status=claimed_status,
                    locked_until=now + lease,
                    attempts=model.attempts + 1,
                )
                .execution_options(synchronize_session=False)
            )
    return ids
