"""Engines and transactions for the job store.

SQLite (the default) runs in WAL mode with a busy timeout; write transactions start with
``BEGIN IMMEDIATE`` so that two processes never deadlock upgrading a read lock. PostgreSQL runs
at READ COMMITTED, where the conditional UPDATEs of the run-once guards are atomic.

An outage is one error: a store that cannot be reached, that drops its connections, or that stays
locked or full past its timeout raises :class:`~jobengine.errors.StoreUnavailable` from every
transaction (:func:`outage`), never a driver's exception. Workers wait and try the step again;
callers get the IPS server error. Errors of the statement itself (constraints, a bad query) are
not outages and pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from jobengine.errors import StoreUnavailable

__all__ = ["Store", "normalize_url", "outage", "outage_reason"]

# SQLite's own outages (its OperationalError also covers bad SQL, which is no outage).
_SQLITE_OUTAGES = (
    ("locked", "the job store is busy"),
    ("busy", "the job store is busy"),
    ("disk is full", "the job store cannot write"),
    ("unable to open", "the job store is unreachable"),
    ("disk i/o error", "the job store is unreachable"),
    ("readonly", "the job store cannot write"),
)


def outage_reason(error: BaseException) -> str | None:
    """Why ``error`` means the store is down for now (a sentence), or None if it does not."""
    if isinstance(error, exc.TimeoutError):  # no pooled connection came free in time
        return "the job store is unreachable: no connection came free in time"
    if not isinstance(error, exc.DBAPIError):
        return None
    detail = (str(error.orig) if error.orig is not None else str(error)).strip()
    detail = detail.splitlines()[0] if detail else type(error).__name__
    if error.connection_invalidated or isinstance(error, exc.InterfaceError):
        return f"the job store is unreachable: {detail}"
    if not isinstance(error, exc.OperationalError):
        return None
    if type(error.orig).__module__.startswith("sqlite3"):
        return _sqlite_reason(detail)
    return f"the job store is unreachable: {detail}"  # PostgreSQL: connection, shutdown, deadlock


def _sqlite_reason(detail: str) -> str | None:
    lowered = detail.lower()
    for marker, what in _SQLITE_OUTAGES:
        if marker in lowered:
            return f"{what}: {detail}"
    return None


@contextmanager
def outage() -> Iterator[None]:
    """Turn a driver's outage error raised in the block into StoreUnavailable."""
    try:
        yield
    except (exc.DBAPIError, exc.TimeoutError) as error:
        reason = outage_reason(error)
        if reason is None:
            raise
        raise StoreUnavailable(reason) from error


def normalize_url(url: str) -> str:
    """Pick the drivers we ship: psycopg 3 for PostgreSQL, the stdlib for SQLite."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_engine(url: str, *, immediate: bool) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine


class Store:
    """The job store: a read and a write session factory over one database."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            self._read_engine = _sqlite_engine(self.url, immediate=False)
            self._write_engine = _sqlite_engine(self.url, immediate=True)
        else:
            # connect_timeout: a host that drops packets is an outage in 10 s, not a hang
            engine = create_engine(
                self.url,
                pool_pre_ping=True,
                pool_size=5,
                max_overflow=10,
                connect_args={"connect_timeout": 10},
            )
            self._read_engine = self._write_engine = engine
        self._reader = sessionmaker(self._read_engine, expire_on_commit=False)
        self._writer = sessionmaker(self._write_engine, expire_on_commit=False)

    @property
    def engine(self) -> Engine:
        """The write engine (tests and migrations use it)."""
        return self._write_engine

    @property
    def read_engine(self) -> Engine:
        """The read engine (on SQLite, its transactions take no write lock)."""
        return self._read_engine

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction: committed on success, rolled back on any exception."""
        with outage(), self._writer() as session, session.begin():
            yield session

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A write transaction on a bare connection, for Core statements on hot paths."""
        with outage(), self._write_engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction."""
        with outage(), self._reader() as session, session.begin():
            yield session

    def dispose(self) -> None:
        """Close every pooled connection."""
        self._read_engine.dispose()
        self._write_engine.dispose()
