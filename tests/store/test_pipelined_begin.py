"""Write transactions whose BEGIN goes with their first statements
(:meth:`jobengine.store.db.Store.write_pipelined`), on a store of their own.

On PostgreSQL their connection commits each statement, and its cursors send the BEGIN before
the first statement, in its pipeline: so the tests check that what the block does is one
transaction (committed once, rolled back whole on any error, whether the first statement was
in a pipeline or not) and that the connection goes back to the pool out of any transaction,
in its usual mode. On SQLite it is :meth:`~jobengine.store.db.Store.write`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, delete, event, insert, select, text
from sqlalchemy.exc import IntegrityError

from jobengine.errors import StoreUnavailable
from jobengine.store.hot import HotStatement, pipelined
from jobengine.store.schema import COMPANIES, Company, utcnow
from tests.support.round_trips import traced
from tests.support.stack import drop_database, store_url

_INSERT = HotStatement(insert(COMPANIES), insert_keys=("handle", "name", "created_at"))


class _Undo(Exception):
    """Raised in a transaction to roll it back."""


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def module_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    from jobengine.store import migrate
    from jobengine.store.db import Store

    made = Store(store_url(request.param, tmp_path_factory.mktemp(request.param)))
    migrate.upgrade(made)
    yield made
    made.dispose()
    drop_database(made.url)


@pytest.fixture
def store(module_store: Any) -> Iterator[Any]:
    """The module's store of one backend, its companies deleted after each test."""
    yield module_store
    with module_store.write() as session:
        session.execute(delete(Company))


@pytest.fixture
def pg_store(store: Any) -> Any:
    if store.is_sqlite:
        pytest.skip("PostgreSQL's connections and their transactions")
    return store


def _company(handle: str) -> dict[str, Any]:
    return {"handle": handle, "name": handle.upper(), "created_at": utcnow()}


def _insert_together(session: Any, *handles: str) -> None:
    """Insert companies of ``handles`` in one pipelined batch (the transaction's first)."""
    conn = session.connection()
    with pipelined(conn):
        sent = [_INSERT.send(conn, _company(handle)) for handle in handles]
    for one in sent:
        one.done()


def _handles(store: Any) -> list[str]:
    with store.read() as session:
        return list(session.scalars(select(Company.handle).order_by(Company.handle)))


def _driver(session: Any) -> Any:
    return session.connection().connection.dbapi_connection


def test_a_batch_is_committed_once_with_its_begin(store: Any) -> None:
    """On PostgreSQL two round trips: the BEGIN with the inserts, the COMMIT."""
    with store.write_pipelined() as session:  # the pool's connection, made before the trace
        _insert_together(session, "warm")
    if store.is_sqlite:
        with store.write_pipelined() as session:
            _insert_together(session, "a", "b")
    else:
        with traced(store.engine) as trace, store.write_pipelined() as session:
            _insert_together(session, "a", "b")
        assert trace.round_trips == 2, trace.messages
        assert trace.messages.count("F Query") == 1  # the COMMIT (the BEGIN is in the batch)
    assert _handles(store) == ["a", "b", "warm"]


def test_an_error_after_the_batch_rolls_it_back_once(store: Any) -> None:
    ended: list[str] = []

    def commit(conn: Any) -> None:
        ended.append("commit")

    def rollback(conn: Any) -> None:
        ended.append("rollback")

    event.listen(store.engine, "commit", commit)
    event.listen(store.engine, "rollback", rollback)
    try:
        with pytest.raises(_Undo), store.write_pipelined() as session:
            _insert_together(session, "a", "b")
            raise _Undo
    finally:
        event.remove(store.engine, "commit", commit)
        event.remove(store.engine, "rollback", rollback)
    assert ended == ["rollback"]
    assert _handles(store) == []


def test_a_failed_statement_rolls_back_those_sent_before_it(store: Any) -> None:
    with pytest.raises(IntegrityError), store.write_pipelined() as session:
        _insert_together(session, "a", "b", "a")
    assert _handles(store) == []


def test_a_first_statement_outside_a_pipeline_sends_the_begin_before_it(store: Any) -> None:
    """The ORM's flush first (through SQLAlchemy's execution, not a pipeline): still in the
    transaction, rolled back with it; committed with what follows it otherwise."""
    with pytest.raises(_Undo), store.write_pipelined() as session:
        session.add(Company(handle="orm", name="ORM"))
        session.flush()
        _insert_together(session, "a")
        raise _Undo
    assert _handles(store) == []
    with store.write_pipelined() as session:
        session.add(Company(handle="orm", name="ORM"))
        session.flush()
        _insert_together(session, "a")
    assert _handles(store) == ["a", "orm"]


def _no_open_transactions(store: Any) -> None:
    """No session of the store's database is in a transaction, seen from another connection."""
    other = create_engine(store.url)
    try:
        with other.connect() as conn:
            states = conn.execute(
                text(
                    "SELECT state FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid()"
                )
            ).scalars()
            assert [s for s in states if s and s.startswith("idle in transaction")] == []
    finally:
        other.dispose()


def _nothing(session: Any) -> None:
    session.connection()


def _commit(session: Any) -> None:
    _insert_together(session, "a")


def _error(session: Any) -> None:
    _insert_together(session, "a")
    raise _Undo


def _failed_statement(session: Any) -> None:
    _insert_together(session, "a", "a")


def _error_before_any_statement(session: Any) -> None:
    session.connection()
    raise _Undo


@pytest.mark.parametrize(
    ("work", "raised"),
    [
        (_nothing, None),
        (_commit, None),
        (_error, _Undo),
        (_failed_statement, IntegrityError),
        (_error_before_any_statement, _Undo),
    ],
)
def test_the_connection_goes_back_to_the_pool_out_of_any_transaction(
    pg_store: Any, work: Any, raised: type[Exception] | None
) -> None:
    """Its driver out of a transaction, in its usual mode (a transaction of its own for the
    next write) and with its usual cursors; no session of the server left in a transaction.
    The next write transaction, on the same connection, is one: its error rolls it back."""
    expected = pytest.raises(raised) if raised is not None else nullcontext()
    with expected, pg_store.write_pipelined() as session:
        driver = _driver(session)
        work(session)
    assert driver.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert not driver.autocommit and driver.cursor_factory is psycopg.Cursor
    _no_open_transactions(pg_store)
    kept = _handles(pg_store)
    with pytest.raises(_Undo), pg_store.write() as session:
        assert _driver(session) is driver  # the pool's one connection, lent again
        session.add(Company(handle="next", name="Next"))
        session.flush()
        raise _Undo
    assert _handles(pg_store) == kept


def test_a_connection_lost_in_the_batch_is_an_outage_and_replaced(pg_store: Any) -> None:
    """As in any write transaction: the driver's error is StoreUnavailable, nothing of it is
    committed, and the pool lends a new connection to the next one."""
    admin = create_engine(pg_store.url, isolation_level="AUTOCOMMIT")
    try:
        with pytest.raises(StoreUnavailable), pg_store.write_pipelined() as session:
            driver = _driver(session)
            with admin.connect() as conn:
                conn.execute(text("SELECT pg_terminate_backend(:pid, 5000)"),
                             {"pid": driver.info.backend_pid})  # fmt: skip
            _insert_together(session, "lost")
    finally:
        admin.dispose()
    with pg_store.write_pipelined() as session:
        assert _driver(session) is not driver
        _insert_together(session, "after")
    assert _handles(pg_store) == ["after"]
