"""Engines and transactions for the job store.

SQLite (the default) runs in WAL mode with a busy timeout; write transactions start with
``BEGIN IMMEDIATE`` so that two processes never deadlock upgrading a read lock. PostgreSQL runs
at READ COMMITTED, where the conditional UPDATEs of the run-once guards are atomic.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from jobengine.store.schema import Base

__all__ = ["Store", "normalize_url"]


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
            engine = create_engine(self.url, pool_pre_ping=True, pool_size=5, max_overflow=10)
            self._read_engine = self._write_engine = engine
        self._reader = sessionmaker(self._read_engine, expire_on_commit=False)
        self._writer = sessionmaker(self._write_engine, expire_on_commit=False)
        self._created = False
        self._lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        """The write engine (tests and migrations use it)."""
        return self._write_engine

    def create_tables(self) -> None:
        """Create missing tables, and add missing nullable columns to existing ones (idempotent).

        There are no migrations: a column added to a table later must be nullable, and a store
        made before it gets it here (``ALTER TABLE ... ADD COLUMN``, checked inside the write
        transaction, so concurrent starts add it once).
        """
        with self._lock:
            if not self._created:
                Base.metadata.create_all(self._write_engine)
                self._add_missing_columns()
                self._created = True

    def _add_missing_columns(self) -> None:
        with self._write_engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE, one writer
            inspector = inspect(conn)
            preparer = conn.dialect.identifier_preparer
            for table in Base.metadata.sorted_tables:
                present = {c["name"] for c in inspector.get_columns(table.name)}
                for column in table.columns:
                    if column.name in present or not column.nullable:
                        continue
                    kind = column.type.compile(dialect=conn.dialect)
                    guard = "" if self.is_sqlite else "IF NOT EXISTS "
                    conn.exec_driver_sql(
                        f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {guard}"
                        f"{preparer.format_column(column)} {kind}"
                    )

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction: committed on success, rolled back on any exception."""
        with self._writer() as session, session.begin():
            yield session

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A write transaction on a bare connection, for Core statements on hot paths."""
        with self._write_engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction."""
        with self._reader() as session, session.begin():
            yield session

    def dispose(self) -> None:
        """Close every pooled connection."""
        self._read_engine.dispose()
        self._write_engine.dispose()
