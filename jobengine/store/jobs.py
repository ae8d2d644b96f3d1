"""Creating runs and finding jobs by handle."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import ARRAY, Connection, bindparam, func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jobengine.errors import IllegalCompany, InvalidParameter
from jobengine.handles import (
    company_segment,
    parse_job_handle,
    run_name,
    run_name_stamp,
    uuid4_texts,
)
from jobengine.store.hot import (
    Batch,
    CopyInsert,
    HotStatement,
    RowidInsert,
    Same,
    planned_in,
)
from jobengine.store.intake import new_run_values
from jobengine.store.schema import RUNS, Job, Run, utcnow
from jobengine.store.states import RunState
from jobengine.store.users import CompanyLike

__all__ = [
    "AddedRuns",
    "NewRun",
    "RunRows",
    "add_runs",
    "add_untaken_runs",
    "copy_run_rows",
    "create_run",
    "find_job",
    "find_runs",
    "fire_key",
    "insert_run",
    "insert_runs",
    "run_rows",
    "runs_added",
    "untaken_fires",
]


def fire_key(kind: str, when: datetime) -> str:
    """The run-once key of a timed fire: ``at:``/``cron:`` and the instant in UTC."""
    return f"{kind}:{when.astimezone(UTC).isoformat()}"


_SAME_SECOND = HotStatement(
    select(func.count()).where(
        RUNS.c.company_id == bindparam("company"),
        RUNS.c.run_name >= bindparam("low"),
        RUNS.c.run_name < bindparam("high"),
    )
)
_FIRE_TAKEN = HotStatement(
    select(RUNS.c.id).where(RUNS.c.job_id == bindparam("job"), RUNS.c.fire_key == bindparam("key"))
)
_RUN_KEYS = ("job_id", "company_id", "run_name", "fire_key", "task_id", "state", "eta",
             "dispatched_at", "created_at")  # fmt: skip
_RUN_INSERT = HotStatement(insert(RUNS).returning(RUNS.c.id), insert_keys=_RUN_KEYS)


def create_run(
    db: Session | Connection,
    job: Job,
    fire_key: str,
    *,
    local_now: datetime,
    eta: datetime | None = None,
    new_job: bool = False,
    dispatched_at: datetime | None = None,
) -> Run | None:
    """Add a queued run of ``job`` for ``fire_key``; None if that fire already has a run.

    ``(job, fire_key)`` is unique: this is the run-once guard of scheduled fires, so two beats
    (or a beat and executeJob) can never start the same fire twice. ``dispatched_at`` marks
    the run sent in advance, for a caller that sends it right after the commit.
    """
    conn = db if isinstance(db, Connection) else db.connection()
    if not new_job and _FIRE_TAKEN.first(conn, {"job": job.id, "key": fire_key}) is not None:
        return None  # a job created in this transaction has no runs yet: no need to look
    values = insert_run(
        conn,
        job_id=job.id,
        company_id=job.company_id,
        job_name=job.name,
        fire_key=fire_key,
        local_now=local_now,
        eta=eta,
        dispatched_at=dispatched_at,
    )
    return Run(**values)


def insert_run(
    conn: Connection,
    *,
    job_id: int,
    company_id: int,
    job_name: str,
    fire_key: str,
    local_now: datetime,
    eta: datetime | None = None,
    dispatched_at: datetime | None = None,
) -> dict[str, Any]:
    """Insert a queued run (no checks: see :func:`create_run`); returns its column values.

    Not through the ORM: its unit of work and entity state cost ten times the statement on the
    submit hot path.
    """
    name = run_name(job_name, local_now)
    # Runs of the same name started in the same second take suffixes -2, -3...: count them in
    # one indexed range scan instead of probing names one by one.
    bounds = {"company": company_id, "low": name, "high": name + "\x7f"}
    same_second = _SAME_SECOND.scalar(conn, bounds)
    # A rare clash (a job literally named like another's run) fails the unique constraint and
    # the caller's transaction is retried.
    values: dict[str, Any] = {
        "job_id": job_id,
        **new_run_values(
            company_id,
            job_name,
            fire_key,
            local_now=local_now,
            eta=eta,
            dispatched_at=dispatched_at,
        ),
        "run_name": run_name(job_name, local_now, int(same_second or 0) + 1),
    }
    values["id"] = int(_RUN_INSERT.scalar(conn, values))
    return values


class NewRun(NamedTuple):
    """A queued run to insert: whose, for which fire, and when it may start (a named tuple: a
    bulk submission makes one a job, and a frozen dataclass's ``__init__`` costs four times
    as much)."""

    job_id: int
    company_id: int
    job_name: str
    fire_key: str
    eta: datetime | None = None
    named_at: datetime | None = None  # local time of its name (None: the batch's local_now)


_NAMES_CHUNK = 500  # fires per lookup (well under every driver's parameter limit)


# SQLite: the runs of a batch that went in are those after the largest id (see RowidInsert)
_SQLITE_RUNS = RowidInsert(
    sqlite_insert(RUNS).on_conflict_do_nothing(index_elements=["company_id", "run_name"]),
    RUNS,
    _RUN_KEYS,
    returned=("id", "task_id"),
)


# PostgreSQL (psycopg): ids from the sequence and one COPY (see CopyInsert)
_RUNS_COPY = CopyInsert(RUNS, _RUN_KEYS)


def _insert_many(conn: Connection, batch: Batch) -> dict[str, int]:
    """Insert runs whose name is not taken yet, in one statement; the id of each run that went
    in, by task id (a run whose name a run of the same second holds already is left out).

    PostgreSQL through psycopg first tries them all in one ``COPY`` under a savepoint (no
    statement to parse at all): it fails as a whole when a name is taken, rarely, and
    :func:`_insert_untaken` then goes in its place.
    """
    if conn.dialect.driver == "psycopg":
        try:  # under a savepoint: a COPY that fails is undone alone
            ids = _RUNS_COPY.ids(conn, batch, savepoint="jobengine_runs_copy")
            return dict(zip(batch.column("task_id"), ids, strict=True))
        except IntegrityError:  # a name taken (rare): the statement below leaves that run out
            pass
    return _insert_untaken(conn, batch)


def _insert_untaken(conn: Connection, batch: Batch) -> dict[str, int]:
    """:func:`_insert_many` in one statement that leaves out the runs whose name is taken.

    PostgreSQL gets the rows as one array per column (``INSERT ... SELECT FROM unnest(...)``):
    the statement's text is the same for any number of rows, so it is parsed once, instead of a
    multi-row ``VALUES`` whose thousands of placeholders the driver re-parses for every batch.
    """
    if conn.dialect.name == "postgresql":
        arrays = [
            bindparam(name, batch.column(name), type_=ARRAY(RUNS.c[name].type))
            for name in _RUN_KEYS
        ]
        source = select(func.unnest(*arrays).table_valued(*_RUN_KEYS).render_derived("fires"))
        stmt: Any = (
            pg_insert(RUNS)
            .from_select(_RUN_KEYS, source, include_defaults=True)
            .on_conflict_do_nothing(index_elements=["company_id", "run_name"])
            .returning(RUNS.c.id, RUNS.c.task_id)
        )
        return {str(task): int(run_id) for run_id, task in conn.execute(stmt)}
    if conn.dialect.name == "sqlite":  # executemany, then the rows after the largest id
        largest = _SQLITE_RUNS.largest(conn)
        _SQLITE_RUNS.statement.execute_many(conn, batch)
        return {str(task): int(run_id) for run_id, task in _SQLITE_RUNS.after(conn, largest)}
    raise NotImplementedError(f"no run insert for {conn.dialect.name}")


@dataclass(frozen=True, slots=True)
class AddedRuns:
    """Runs inserted by :func:`add_runs`: a list of each one's values, in the order given."""

    ids: list[int]
    names: list[str]
    task_ids: list[str]
    etas: list[datetime | None]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RunRows:
    """New runs named and given their task ids, as the columns of their rows
    (:func:`run_rows`), before they go in."""

    runs: Sequence[NewRun]
    batch: Batch
    names: list[str]
    task_ids: list[str]
    local_now: datetime
    created_at: datetime


def run_rows(
    runs: Sequence[NewRun],
    *,
    local_now: datetime,
    dispatched_at: datetime | None = None,
    state: RunState = RunState.QUEUED,
) -> RunRows:
    """The rows of queued (or ``state``) runs, each named for its time (``-2``, ``-3``... for
    a name met again in the batch), as :func:`add_runs` inserts them."""
    stamps: dict[datetime, str] = {}  # a run name's time part, written once per time
    attempts: dict[tuple[int, str], int] = {}
    names: list[str] = []
    for new in runs:
        at = new.named_at or local_now
        stamp = stamps.get(at)
        if stamp is None:
            stamp = stamps[at] = run_name_stamp(at)
        name = new.job_name + stamp
        key = (new.company_id, name)
        attempt = attempts[key] = attempts.get(key, 0) + 1
        names.append(name if attempt == 1 else f"{name}-{attempt}")
    count = len(runs)
    task_ids = uuid4_texts(count)
    created = utcnow()
    batch = Batch(
        count,
        {
            "job_id": [new.job_id for new in runs],
            "company_id": [new.company_id for new in runs],
            "run_name": names,
            "fire_key": [new.fire_key for new in runs],
            "task_id": task_ids,
            "state": Same(state),
            "eta": [new.eta for new in runs],
            "dispatched_at": Same(dispatched_at),
            "created_at": Same(created),
            "output": Same({}),  # the column's default, written once for the batch
        },
    )
    return RunRows(runs, batch, names, task_ids, local_now, created)


def runs_added(conn: Connection, rows: RunRows, ids: dict[str, int]) -> AddedRuns:
    """``rows`` once those that went in got ``ids`` (by task id): each run left out (its name
    taken by a run of the same second) takes the next free suffix and goes in alone."""
    names = rows.names
    out: list[int] = []
    for n, (new, task_id) in enumerate(zip(rows.runs, rows.task_ids, strict=True)):
        found = ids.get(task_id)
        if found is not None:
            out.append(found)
            continue
        # the name was taken: the next suffix after those the second holds (as insert_run)
        named_at = new.named_at or rows.local_now
        name = run_name(new.job_name, named_at)
        bounds = {"company": new.company_id, "low": name, "high": name + "\x7f"}
        names[n] = run_name(new.job_name, named_at, int(_SAME_SECOND.scalar(conn, bounds) or 0) + 1)
        row = {key: rows.batch.value(key, n) for key in _RUN_KEYS}
        row["run_name"] = names[n]
        out.append(int(_RUN_INSERT.scalar(conn, row)))
    return AddedRuns(out, names, rows.task_ids, [new.eta for new in rows.runs], rows.created_at)


def add_untaken_runs(conn: Connection, rows: RunRows) -> AddedRuns:
    """Insert ``rows`` in one statement that leaves out runs whose name is taken, then those
    one by one (:func:`runs_added`): what a batch falls back to when its runs' own insert
    failed on a taken name."""
    return runs_added(conn, rows, _insert_untaken(conn, rows.batch) if rows.batch.count else {})


def copy_run_rows(conn: Connection, rows: RunRows, ids: Sequence[int]) -> None:
    """Insert ``rows`` with these ids (drawn ahead, one a row, in order) by one ``COPY``
    (PostgreSQL, psycopg), which fails whole if a name is taken."""
    _RUNS_COPY.insert(conn, rows.batch, ids)


def add_runs(
    conn: Connection,
    runs: Sequence[NewRun],
    *,
    local_now: datetime,
    dispatched_at: datetime | None = None,
    state: RunState = RunState.QUEUED,
) -> AddedRuns:
    """:func:`insert_runs`, its runs' values given back as columns (a bulk submission sends
    their starts without a dict per run)."""
    rows = run_rows(runs, local_now=local_now, dispatched_at=dispatched_at, state=state)
    return runs_added(conn, rows, _insert_many(conn, rows.batch) if runs else {})


def insert_runs(
    conn: Connection,
    runs: Sequence[NewRun],
    *,
    local_now: datetime,
    dispatched_at: datetime | None = None,
    state: RunState = RunState.QUEUED,
) -> list[dict[str, Any]]:
    """Insert queued (or ``state``) runs (no checks: the caller holds the fires, see
    :func:`untaken_fires`) in one statement; their column values with ids, in the order given.

    Names follow :func:`insert_run`'s rule, ``-2``, ``-3``... for a name already taken in the
    same second. Such a clash is rare (a job fired twice in one tick, or a run of the same name
    submitted in the same second), so names are not looked up first: the batch goes in with
    its own suffixes, and the few runs whose name was taken (the unique name constraint turns
    them away) take the next free suffix one by one. No statement reads the company's runs, so
    a batch costs the same however many runs the store holds.
    """
    added = add_runs(conn, runs, local_now=local_now, dispatched_at=dispatched_at, state=state)
    return [
        {
            "job_id": new.job_id,
            "company_id": new.company_id,
            "run_name": name,
            "fire_key": new.fire_key,
            "task_id": task_id,
            "state": state,
            "eta": new.eta,
            "dispatched_at": dispatched_at,
            "created_at": added.created_at,
            "id": run_id,
        }
        for new, run_id, name, task_id in zip(
            runs, added.ids, added.names, added.task_ids, strict=True
        )
    ]


def untaken_fires(conn: Connection, runs: Sequence[NewRun]) -> list[NewRun]:
    """The fires that have no run yet (one lookup per chunk): ``(job, fire key)`` is unique, so
    a fire time met again (a clock stepped back) is skipped, as :func:`create_run` skips it."""
    taken: set[tuple[int, str]] = set()
    for i in range(0, len(runs), _NAMES_CHUNK):
        chunk = runs[i : i + _NAMES_CHUNK]
        rows = conn.execute(
            select(RUNS.c.job_id, RUNS.c.fire_key).where(
                planned_in(RUNS.c.job_id, sorted({new.job_id for new in chunk})),
                planned_in(RUNS.c.fire_key, sorted({new.fire_key for new in chunk})),
            )
        )
        taken.update((int(job_id), str(key)) for job_id, key in rows)
    return [new for new in runs if (new.job_id, new.fire_key) not in taken]


def find_job(session: Session, company: CompanyLike, handle: str) -> tuple[Job, Run | None]:
    """The job (and, for a run handle, the run) a job handle names; 30001 when none."""
    ref = parse_job_handle(handle)
    if ref.company != company_segment(company.handle):
        raise IllegalCompany(
            f"jobHandle {handle!r} is not of company {company.handle!r}", field="jobHandle"
        )
    job: Job | None = None
    run: Run | None = None
    if ref.job_id is not None:
        job = session.get(Job, ref.job_id)
    elif ref.key:
        job = session.scalar(
            select(Job).where(Job.company_id == company.id, Job.live_key == ref.key)
        )
    else:
        run = session.scalar(
            select(Run).where(Run.company_id == company.id, Run.run_name == ref.run)
        )
        job = session.get(Job, run.job_id) if run is not None else None
    if job is None or job.company_id != company.id:
        raise InvalidParameter(f"unknown jobHandle {handle!r}", field="jobHandle")
    return job, run


def find_runs(session: Session, job: Job, states: tuple[str, ...]) -> list[Run]:
    """The runs of a job in the given states, oldest first."""
    return list(
        session.scalars(
            select(Run).where(Run.job_id == job.id, Run.state.in_(states)).order_by(Run.id)
        )
    )
