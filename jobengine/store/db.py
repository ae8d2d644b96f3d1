"""Engines and transactions for the job store.

SQLite (the default) runs in WAL mode with a busy timeout; write transactions start with
``BEGIN IMMEDIATE`` so that two processes never deadlock upgrading a read lock. PostgreSQL runs
at READ COMMITTED, where the conditional UPDATEs of the run-once guards are atomic.

An outage is one error: a store that cannot be reached, that drops its connections, or that stays
locked or full past its timeout raises :class:`~jobengine.errors.StoreUnavailable` from every
transaction (:func:`outage`), never a driver's exception. Workers wait and try the step again;
callers get the IPS server error. Errors of the statement itself (constraints, a bad query) are
not outages and pass through unchanged.

PostgreSQL connections are not pinged at checkout (``pool_pre_ping`` is a round trip before
every transaction, one in nine of a submit's): :func:`_check_socket` looks at the idle
connection's socket instead, without a query. A server that restarted or closed the connection
has left it readable (the end of the stream, or the notice it sends before closing), and the pool
replaces it. A connection that dies after that look is left to :meth:`Store.transact`, which runs
a transaction again when its connection failed before its COMMIT was sent (so nothing was
committed).

psycopg sends a transaction's BEGIN before its first statement and waits for it, alone, even in
pipeline mode (:func:`jobengine.store.hot.pipelined`): a round trip of its own. A transaction
whose first statements go together (a worker's start and its end) opens with
:meth:`Store.write_pipelined` instead, whose BEGIN goes with them.
"""

from __future__ import annotations

import functools
import logging
import select
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from jobengine.errors import StoreUnavailable

__all__ = ["Store", "commit_without_flush", "normalize_url", "outage", "outage_reason"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

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


_BUSY_SECONDS = 30  # how long a statement waits for SQLite's locks before it is an outage
# A writer waiting for the write lock naps this long first, twice as long each time after,
# never longer than the last: see _begin_immediate.
_NAP_FIRST, _NAP_LONGEST = 0.0001, 0.002


def _until_not_busy(raw: sqlite3.Connection, statement: str) -> None:
    """``statement`` on the driver's connection, tried again while SQLite answers that the
    database is locked or busy, in naps of 0.1 ms doubling to 2 ms, for up to ``_BUSY_SECONDS``
    (then SQLite's error is raised)."""
    deadline, nap = time.monotonic() + _BUSY_SECONDS, _NAP_FIRST
    while True:
        try:
            raw.execute(statement)
            return
        except sqlite3.OperationalError as error:
            locked = "locked" in str(error) or "busy" in str(error)
            if not locked or time.monotonic() + nap > deadline:
                raise
        time.sleep(nap)
        nap = min(nap * 2, _NAP_LONGEST)


def _begin_immediate(conn: Connection) -> None:
    """``BEGIN IMMEDIATE``, waiting for the one writer in naps of 0.1 ms doubling to 2 ms.

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25... ms between tries: with two
    worker children whose write transactions take a millisecond or two each, the one that
    missed the lock slept on long after the other had committed, and two children did a
    fan-out's items slower than one (bench/fanout.py, once the items no longer waited on
    the broker between their transactions). Only the taking of the lock naps here: the
    busy timeout of every other statement stays SQLite's, and one that is still locked past
    ``_BUSY_SECONDS`` is the same outage as before."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    raw.execute("PRAGMA busy_timeout=0")
    try:
        _until_not_busy(raw, "BEGIN IMMEDIATE")  # type: ignore[arg-type]
    except sqlite3.OperationalError as error:
        raise exc.DBAPIError.instance("BEGIN IMMEDIATE", (), error, sqlite3.Error) from error
    finally:
        raw.execute(f"PRAGMA busy_timeout={_BUSY_SECONDS * 1000}")


def _driver_begin(conn: Connection, begin: str) -> None:
    """``begin`` on the driver's connection: SQLAlchemy's statement path around it (execution
    context, events, result) cost several times the BEGIN itself, once per transaction."""
    try:
        conn.connection.dbapi_connection.execute(begin)  # type: ignore[union-attr]
    except sqlite3.Error as error:  # as Connection.execute would raise it
        raise exc.DBAPIError.instance(begin, (), error, sqlite3.Error) from error


def _sqlite_engine(url: str, *, immediate: bool) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    connect_args = {"timeout": _BUSY_SECONDS, "check_same_thread": False}
    engine = create_engine(url, connect_args=connect_args)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        # The switch to WAL (a no-op once the file is in WAL) needs the database to itself, and
        # SQLite answers "database is locked" at once, not after its busy timeout, when waiting
        # could deadlock (another connection holds the write lock): processes opening a new
        # store together met it. It waits here as a writer waits for the write lock.
        _until_not_busy(dbapi_conn, "PRAGMA journal_mode=WAL")
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={_BUSY_SECONDS * 1000}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        if immediate:
            _begin_immediate(conn)
        else:
            _driver_begin(conn, "BEGIN")

    return engine


def _check_socket(dbapi_conn: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
    """Replace a pooled PostgreSQL connection that died while idle, without a round trip.

    An idle connection has nothing to read: data waiting on its socket is the end of the stream
    (the server went away) or a message the server sends before closing it (a shutdown's
    "terminating connection"). Either way the pool drops it and checks out another
    (``DisconnectionError`` from a checkout listener does that). A false alarm (a notification
    for a LISTEN, which the store never issues) would cost a new connection, not a wrong result."""
    if dbapi_conn.closed or dbapi_conn.broken:
        raise exc.DisconnectionError("connection closed")
    poller = select.poll()
    poller.register(dbapi_conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    if poller.poll(0):
        raise exc.DisconnectionError("the server closed the idle connection")


def commit_without_flush(conn: Connection) -> None:
    """Let the COMMIT of ``conn``'s transaction return without waiting for the server to flush
    it to disk (PostgreSQL: ``synchronous_commit`` off for this transaction only, one statement
    in it; SQLite in WAL mode with ``synchronous=NORMAL`` never waits at a commit).

    For a transaction that a server crash may lose as if it never ran, and after which a
    transaction on the same server commits durably before anything rests on it: PostgreSQL
    flushes its log in order, so that later commit's flush carries this one. A crash before it
    loses both, and keeps every committed state consistent (it loses the latest transactions,
    never a part of one). A worker's start claim is one (see ``jobengine.engine.runner``)."""
    if conn.dialect.name != "postgresql":
        return
    cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute("SET LOCAL synchronous_commit TO OFF")
    finally:
        cursor.close()


@functools.cache
def _begin_first(usual: Any) -> Any:
    """The cursor class ``usual`` (the driver's) for a connection of
    :meth:`Store.write_pipelined` before its transaction's first statement: that statement
    sends the BEGIN first (:func:`_send_begin`), in its pipeline when it is in one, so that the
    two go in one round trip. Made from the driver's own class, so that psycopg is imported
    only by a store that uses it."""

    class BeginFirst(usual):  # type: ignore[misc]
        usual_cursor = usual

        def execute(self, *args: Any, **kwargs: Any) -> Any:
            _send_begin(self.connection)
            return super().execute(*args, **kwargs)

        def executemany(self, *args: Any, **kwargs: Any) -> None:
            _send_begin(self.connection)
            super().executemany(*args, **kwargs)

        def copy(self, *args: Any, **kwargs: Any) -> Any:
            _send_begin(self.connection)
            return super().copy(*args, **kwargs)

        def stream(self, *args: Any, **kwargs: Any) -> Any:
            _send_begin(self.connection)
            return super().stream(*args, **kwargs)

    return BeginFirst


def _send_begin(driver: Any) -> None:
    """The BEGIN of ``driver``'s transaction (see :meth:`Store.write_pipelined`), unless sent:
    on a connection that commits each statement, so psycopg sends none of its own. In a
    pipeline it waits there with the statements after it, and a failure is raised where
    theirs would be (by the fetch, or the pipeline's end)."""
    usual = getattr(driver.cursor_factory, "usual_cursor", None)
    if usual is None:
        return  # sent already (by another cursor)
    driver.cursor_factory = usual
    with driver.cursor() as cursor:  # closed before its result is in: a pipeline still checks it
        cursor.execute("BEGIN")


def _as_before(conn: Connection, driver: Any, usual: Any) -> None:
    """``driver`` (``conn``'s) with its ``usual`` cursors and out of autocommit once its
    :meth:`Store.write_pipelined` transaction ended, for the next to borrow it from the pool.
    psycopg refuses to leave autocommit in a transaction: a connection whose transaction did
    not end (its COMMIT or ROLLBACK failed) is invalidated, never lent again; a lost one was."""
    driver.cursor_factory = usual
    if driver.closed:
        return
    try:
        driver.autocommit = False
    except conn.dialect.loaded_dbapi.Error:
        conn.invalidate()


def _died_before_commit(error: BaseException) -> bool:
    """Whether a transaction's statement failed because its connection died (a disconnect the
    pool invalidated): nothing of that transaction was committed."""
    return isinstance(error, exc.DBAPIError) and error.connection_invalidated


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
                self.url, pool_size=5, max_overflow=10, connect_args={"connect_timeout": 10}
            )
            event.listen(engine, "checkout", _check_socket)
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
    def write_pipelined(self) -> Iterator[Session]:
        """A write transaction as :meth:`write`, whose BEGIN on PostgreSQL goes with its first
        statement instead of a round trip before it: when that statement is in a
        :func:`~jobengine.store.hot.pipelined` block, the BEGIN is in the block's round trip.
        For a transaction whose first statements are sent together (any first statement
        sends the BEGIN, but one alone waits for it as psycopg's own BEGIN would).

        The driver's connection commits each statement by itself (psycopg's autocommit), so
        psycopg sends no BEGIN; its cursors send one before the first statement (a cursor
        class of their own until then). The session commits or rolls back as :meth:`write`'s,
        once: psycopg's ``commit()`` and ``rollback()`` send COMMIT and ROLLBACK whenever the
        server is in a transaction, whatever the connection's mode (and nothing when the BEGIN
        was never sent: nothing ran). Then the connection gets its usual mode and cursors back
        before it goes back to the pool (:func:`_as_before`). Set on the driver, not through
        SQLAlchemy's isolation level (``AUTOCOMMIT``), which sets two of psycopg's settings
        and resets both at checkin, each under the connection's lock: a one-asset run made 162
        Python calls more than with :meth:`write` that way, 72 this way (in the profile of
        ``bench/runner_profile.py``). Outages are :meth:`write`'s. On SQLite, :meth:`write`.
        """
        if self.is_sqlite:
            with self.write() as session:
                yield session
            return
        with outage(), self._write_engine.connect() as conn:
            driver: Any = conn.connection.dbapi_connection
            usual = driver.cursor_factory
            try:
                driver.autocommit = True
                driver.cursor_factory = _begin_first(usual)
                with self._writer(bind=conn) as session, session.begin():
                    yield session
            finally:
                _as_before(conn, driver, usual)

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A write transaction on a bare connection, for Core statements on hot paths."""
        with outage(), self._write_engine.begin() as conn:
            yield conn

    def transact(self, work: Callable[[Connection], T], *, autocommit: bool = False) -> T:
        """``work(conn)`` in a write transaction (as :meth:`connect`), committed; run once more
        on a fresh connection if its connection died before the COMMIT was sent.

        Such a failure committed nothing, so running the work again neither loses nor doubles
        it (``work`` must only touch the store). A failure of the COMMIT itself may or may not
        have committed: it is not run again (``StoreUnavailable``).

        ``autocommit``: on PostgreSQL, ``conn`` commits each statement by itself instead (no
        BEGIN and COMMIT round trips), for work made of reads, statements that are whole
        transactions, and transactions it opens itself
        (:func:`jobengine.store.intake.transaction`); it is run again under the same rule,
        so such work must tell for itself whether a statement whose connection died had
        committed (:func:`jobengine.store.intake.committed_run`). On SQLite, a transaction
        as without it."""
        if autocommit and not self.is_sqlite:
            return self._each_statement(work)
        for attempt in (1, 2):
            with outage(), self._write_engine.connect() as conn:
                transaction = conn.begin()
                try:
                    result = work(conn)
                except exc.DBAPIError as error:
                    transaction.rollback()
                    if attempt == 1 and _died_before_commit(error):
                        logger.info("store connection lost before commit; running it again")
                        continue
                    raise
                except BaseException:
                    transaction.rollback()
                    raise
                transaction.commit()
                return result
        raise AssertionError("unreachable")  # the second attempt returns or raises

    def _each_statement(self, work: Callable[[Connection], T]) -> T:
        for attempt in (1, 2):
            with outage(), self._write_engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT")
                try:
                    return work(conn)
                except exc.DBAPIError as error:
                    if attempt == 1 and _died_before_commit(error):
                        logger.info("store connection lost; running the statements again")
                        continue
                    raise
        raise AssertionError("unreachable")  # the second attempt returns or raises

    @contextmanager
    def each_statement(self) -> Iterator[Connection]:
        """A connection that commits each statement by itself on PostgreSQL (a write
        transaction, as :meth:`connect`, on SQLite)."""
        if self.is_sqlite:
            with self.connect() as conn:
                yield conn
            return
        with outage(), self._write_engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction."""
        with outage(), self._reader() as session, session.begin():
            yield session

    @contextmanager
    def read_now(self) -> Iterator[Connection]:
        """A connection for a read of one statement (several see the store each as of itself):
        on PostgreSQL in autocommit, without the BEGIN and COMMIT round trips of a
        transaction; on SQLite a read transaction (which takes no lock)."""
        if self.is_sqlite:
            with outage(), self._read_engine.begin() as conn:
                yield conn
            return
        with outage(), self._read_engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    def dispose(self) -> None:
        """Close every pooled connection."""
        self._read_engine.dispose()
        self._write_engine.dispose()
