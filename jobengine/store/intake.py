"""The two statements of one submit(): what it reads, and the job and run it writes.

A submission of one job used to cost a statement for each thing it needed to know (the
company, the assets it names, the job holding its name, the runs of that name this second) and
one for each row it wrote: on PostgreSQL each is a network round trip, and with the BEGIN and
COMMIT they were nine. Here:

* :func:`first_read`: the company (by id, or by each form of its handle), the live job holding
  the name with whether it has an active run, and the assets the request names, in one SELECT
  (one row per asset found, the company and holder repeated on each; no asset: one row);
* :func:`insert_job_and_run`: the job and its run. On PostgreSQL one statement (``WITH job AS
  (INSERT .. RETURNING id), run AS (INSERT .. SELECT FROM job ON CONFLICT DO NOTHING RETURNING id)
  SELECT``); on SQLite, which has no INSERT in a WITH, two prebuilt statements (no round trips
  there). The run takes the plain run name without looking for runs of the same name in the
  same second first: a clash (rare) inserts no run, and the caller falls back to
  :func:`jobengine.store.jobs.insert_run`, which counts them, in the same transaction.

On PostgreSQL, submit() runs them on a connection that commits each statement
(:meth:`jobengine.store.db.Store.transact` with ``autocommit``): the read needs no BEGIN (at READ
COMMITTED a SELECT sees the same inside a transaction or out of it) and the write is its own
transaction, committed durably by the server, with no BEGIN or COMMIT round trips:
:func:`insert_job_and_run_alone`, whose statement fails whole on any clash (a job without its
run is never committed). A write whose connection died in flight may or may not have committed:
:func:`committed_run` tells, after the same statement was sent again (which waits on the unique
indexes for a first one still in flight, then fails if it committed). Every other write of a
submit (a taken name, a held job, a run name taken this second) goes in a transaction of its
own (:func:`transaction`).

Prebuilt (:class:`~jobengine.store.hot.HotStatement`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, and_, bindparam, insert, or_, select, text, true
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.schema import ColumnDefault

from jobengine.errors import StoreUnavailable
from jobengine.handles import run_name, uuid4_text
from jobengine.store.hot import HotStatement, Sent
from jobengine.store.schema import JOBS, RUNS, Asset, Company, utcnow
from jobengine.store.states import ACTIVE_RUNS, RunState

__all__ = [
    "FEW_ASSETS",
    "FirstRead",
    "begin",
    "commits_each_statement",
    "committed_run",
    "first_read",
    "insert_job_and_run",
    "insert_job_and_run_alone",
    "new_run_values",
    "transaction",
]

FEW_ASSETS = 32  # handles looked up with the company; a longer list is looked up on its own

_COMPANIES = cast(Table, Company.__table__)
_ASSETS = cast(Table, Asset.__table__)
_HOLDER = JOBS.alias("holder")


@dataclass(frozen=True, slots=True)
class FirstRead:
    """What a submit reads before it writes.

    ``company``: (id, stored handle), None if no company has the handle. ``holder``: the job
    holding the name (id, trigger state, whether it has an active run), None if none.
    ``assets``: (handle, company id, type, size) of each handle found, any company's."""

    company: tuple[int, str] | None
    holder: tuple[int, str, bool] | None
    assets: list[tuple[str, int, str, int]]


@functools.lru_cache(maxsize=4 * (FEW_ASSETS + 1))
def _first_read(by_id: bool, forms: int, count: int) -> HotStatement:
    """The read for a company given by id (or by ``forms`` handle forms) and ``count`` handles."""
    # A correlated subquery with LIMIT 1, not EXISTS: PostgreSQL may plan an EXISTS as a hashed
    # subplan over every active run of the store (all the runs queued behind a backlog), where
    # this one is a probe of the holder's runs by job id.
    active = (
        select(RUNS.c.id)
        .where(RUNS.c.job_id == _HOLDER.c.id, or_(*(RUNS.c.state == s for s in ACTIVE_RUNS)))
        .limit(1)
        .scalar_subquery()
    )
    source = _COMPANIES.outerjoin(
        _HOLDER,
        and_(_HOLDER.c.company_id == _COMPANIES.c.id, _HOLDER.c.live_key == bindparam("name")),
    )
    columns: list[Any] = [
        _COMPANIES.c.id,
        _COMPANIES.c.handle,
        _HOLDER.c.id,
        _HOLDER.c.trigger_state,
        active.label("holder_active"),
    ]
    if count:
        source = source.outerjoin(
            _ASSETS, _ASSETS.c.handle.in_([bindparam(f"h{n}") for n in range(count)])
        )
        columns += [_ASSETS.c.handle, _ASSETS.c.company_id, _ASSETS.c.type, _ASSETS.c.size]
    if by_id:
        where = _COMPANIES.c.id == bindparam("company")
    else:
        where = or_(*(_COMPANIES.c.handle == bindparam(f"f{n}") for n in range(forms)))
    return HotStatement(select(*columns).select_from(source).where(where))


def first_read(
    conn: Connection,
    *,
    name: str,
    handles: list[str],
    company_id: int | None = None,
    company_forms: tuple[str, ...] = (),
) -> FirstRead:
    """Read the company (by ``company_id``, else the first of ``company_forms`` that exists),
    the live holder of ``name`` in it and the assets of ``handles`` (at most FEW_ASSETS)."""
    if len(handles) > FEW_ASSETS:
        raise ValueError(f"{len(handles)} handles: look them up on their own")
    params: dict[str, Any] = {"name": name}
    params.update((f"h{n}", handle) for n, handle in enumerate(handles))
    if company_id is not None:
        params["company"] = company_id
        statement = _first_read(True, 0, len(handles))
    else:
        params.update((f"f{n}", form) for n, form in enumerate(company_forms))
        statement = _first_read(False, len(company_forms), len(handles))
    rows = statement.all(conn, params)
    if not rows:
        return FirstRead(None, None, [])
    if company_id is None:  # two forms may both exist: the first form wins, as it is looked up
        rank = {form: n for n, form in enumerate(company_forms)}
        chosen = min((str(row[1]) for row in rows), key=rank.__getitem__)
        rows = [row for row in rows if row[1] == chosen]
    first = rows[0]
    holder = None if first[2] is None else (int(first[2]), str(first[3]), first[4] is not None)
    assets = [
        (str(row[5]), int(row[6]), str(row[7]), int(row[8] or 0))
        for row in rows
        if len(row) > 5 and row[5] is not None
    ]
    return FirstRead((int(first[0]), str(first[1])), holder, assets)


_JOB_KEYS = ("company_id", "live_key", "handle", "name", "kind", "payload", "submit_user_id",
             "run_as_user_id", "locale", "description", "exec_time", "exec_schedule", "time_zone",
             "trigger_state", "next_fire_at", "fired_through", "created_at", "client")  # fmt: skip
_RUN_KEYS = ("company_id", "run_name", "fire_key", "task_id", "state", "eta", "dispatched_at",
             "created_at")  # fmt: skip
# The runs' columns the ORM fills from Python-side defaults (counters, flags, output {}).
_RUN_DEFAULTS: dict[str, Any] = {
    column.key: column.default.arg(None) if column.default.is_callable else column.default.arg
    for column in RUNS.columns
    if isinstance(column.default, ColumnDefault) and column.key not in _RUN_KEYS
}


def _job_and_run_pg(*, skip_taken_name: bool) -> HotStatement:
    """PostgreSQL: ``WITH job AS (INSERT .. RETURNING id), run AS (INSERT .. SELECT FROM job
    [ON CONFLICT (company, run name) DO NOTHING] RETURNING id) SELECT job.id, run.id``."""
    job = (
        insert(JOBS)
        .values({key: bindparam(f"j_{key}", type_=JOBS.c[key].type) for key in _JOB_KEYS})
        .returning(JOBS.c.id)
        .cte("new_job")
    )
    run_columns = ["job_id", *_RUN_KEYS, *_RUN_DEFAULTS]
    values = [job.c.id]
    values += [bindparam(f"r_{key}", type_=RUNS.c[key].type) for key in _RUN_KEYS]
    values += [bindparam(f"d_{key}", value, type_=RUNS.c[key].type)
               for key, value in _RUN_DEFAULTS.items()]  # fmt: skip
    run_insert = pg_insert(RUNS).from_select(run_columns, select(*values), include_defaults=False)
    if skip_taken_name:
        run_insert = run_insert.on_conflict_do_nothing(index_elements=["company_id", "run_name"])
    run = run_insert.returning(RUNS.c.id).cte("new_run")
    return HotStatement(
        select(job.c.id, run.c.id).select_from(job.outerjoin(run, true())), typed=False
    )


_JOB_AND_RUN_PG = _job_and_run_pg(skip_taken_name=True)
_JOB_AND_RUN_ALONE = _job_and_run_pg(skip_taken_name=False)
_COMMITTED_RUN = HotStatement(
    select(RUNS.c.id, RUNS.c.job_id).where(
        RUNS.c.company_id == bindparam("company"),
        RUNS.c.run_name == bindparam("name"),
        RUNS.c.task_id == bindparam("task"),
    )
)
_BEGIN = HotStatement(text("BEGIN"))
_COMMIT = HotStatement(text("COMMIT"))
_ROLLBACK = HotStatement(text("ROLLBACK"))
_JOB_INSERT = HotStatement(insert(JOBS).returning(JOBS.c.id), insert_keys=_JOB_KEYS)
_RUN_INSERT_SQLITE = HotStatement(
    sqlite_insert(RUNS)
    .on_conflict_do_nothing(index_elements=["company_id", "run_name"])
    .returning(RUNS.c.id),
    insert_keys=("job_id", *_RUN_KEYS),
)


def new_run_values(
    company_id: int,
    job_name: str,
    fire_key: str,
    *,
    local_now: datetime,
    eta: datetime | None,
    dispatched_at: datetime | None,
) -> dict[str, Any]:
    """A queued run's values (no job id yet), named for ``local_now`` without a suffix."""
    return {
        "company_id": company_id,
        "run_name": run_name(job_name, local_now),
        "fire_key": fire_key,
        "task_id": uuid4_text(),
        "state": RunState.QUEUED,
        "eta": eta,
        "dispatched_at": dispatched_at,
        "created_at": utcnow(),
    }


def insert_job_and_run(
    conn: Connection, job: dict[str, Any], run: dict[str, Any]
) -> tuple[int, int | None]:
    """Insert a job and its run (``run`` from :func:`new_run_values`); (job id, run id), the
    run id None when a run of that name exists already (nothing of the run is written then:
    the caller names it again, in the same transaction)."""
    if conn.dialect.name == "postgresql":
        row = _JOB_AND_RUN_PG.first(conn, _pg_params(job, run))
        if row is None:  # the job insert returns its row whatever the run did
            raise RuntimeError("INSERT .. RETURNING gave no row")
        return int(row[0]), None if row[1] is None else int(row[1])
    job_id = int(_JOB_INSERT.scalar(conn, job))
    run_id = _RUN_INSERT_SQLITE.scalar(conn, {"job_id": job_id, **run})
    return job_id, None if run_id is None else int(run_id)


def _pg_params(job: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    params = {f"j_{key}": job[key] for key in _JOB_KEYS}
    params.update((f"r_{key}", run[key]) for key in _RUN_KEYS)
    return params


def begin(conn: Connection) -> Sent | None:
    """The BEGIN of a :func:`transaction` opened with ``pipelined`` (None on a connection in a
    transaction already): sent, to be fetched with the statements after it."""
    return _BEGIN.send(conn, {}) if commits_each_statement(conn) else None


def commits_each_statement(conn: Connection) -> bool:
    """Whether ``conn`` commits each statement by itself (PostgreSQL in autocommit, see
    :meth:`jobengine.store.db.Store.transact`); asked of the driver, without a round trip."""
    return bool(getattr(conn.connection.dbapi_connection, "autocommit", False))


def insert_job_and_run_alone(
    conn: Connection, job: dict[str, Any], run: dict[str, Any]
) -> tuple[int, int]:
    """On a connection that commits each statement (PostgreSQL): the job and its run in one
    statement, committed by it; (job id, run id). Any clash (the name taken meanwhile, a run of
    the same name this second) fails the whole statement with IntegrityError: nothing of it is
    committed, and the caller writes the job in a transaction that tells which."""
    row = _JOB_AND_RUN_ALONE.first(conn, _pg_params(job, run))
    if row is None or row[1] is None:
        raise RuntimeError("INSERT .. RETURNING gave no row")
    return int(row[0]), int(row[1])


def committed_run(conn: Connection, run: dict[str, Any]) -> tuple[int, int] | None:
    """(job id, run id) of ``run`` (values of :func:`new_run_values`) if it was committed,
    found by its unique name and its task id; None if not."""
    params = {"company": run["company_id"], "name": run["run_name"], "task": run["task_id"]}
    row = _COMMITTED_RUN.first(conn, params)
    return None if row is None else (int(row[1]), int(row[0]))


@contextmanager
def transaction(conn: Connection, *, pipelined: bool = False) -> Iterator[None]:
    """A transaction for several writes on a connection that commits each statement (BEGIN,
    then COMMIT, or ROLLBACK on an error); on any other connection (in a transaction already),
    nothing. A COMMIT that fails may or may not have committed: it is raised as it is, and the
    caller does not run the writes again (:meth:`jobengine.store.db.Store.transact` runs again
    only what failed before any commit).

    ``pipelined``: the BEGIN is not sent here but by the block, :func:`begin` first in its
    :func:`~jobengine.store.hot.pipelined` reads, so that it costs no round trip of its own
    (psycopg's own BEGIN, on a connection in a transaction, syncs alone in pipeline mode). An
    error before it was sent: the ROLLBACK finds no transaction, which PostgreSQL only warns of.
    """
    if not commits_each_statement(conn):
        yield
        return
    if not pipelined:
        _BEGIN.execute(conn, {})
    try:
        yield
    except BaseException:
        if not conn.invalidated:  # a connection found lost was invalidated: nothing to undo
            with suppress(DBAPIError):  # one that died unseen has rolled back already
                _ROLLBACK.execute(conn, {})
        raise
    try:
        _COMMIT.execute(conn, {})
    except DBAPIError as error:
        if error.connection_invalidated:  # sent, maybe committed: never to be run again
            raise StoreUnavailable(f"the job store is unreachable: {error.orig}") from error
        raise
