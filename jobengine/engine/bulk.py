"""submit_many()'s store side: a batch's reads, checks and writes.

Two ways: :func:`record_many`, statements one after the other (SQLite, and any other driver),
and :func:`record_pipelined`, the reads in one pipeline of psycopg (PostgreSQL). Both
check the requests in their order and write what submitting them one by one would write.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    Connection,
    String,
    Table,
    any_,
    bindparam,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from jobengine.engine import dispatch
from jobengine.engine.submit_rules import (
    JOB_INSERT,
    JOB_KEYS,
    Timing,
    actor_of,
    holds,
    resolve,
    still_holds,
    timing_of,
    user_of,
)
from jobengine.errors import InvalidCompany, IpsFault
from jobengine.handles import company_handle_forms, job_handle
from jobengine.kinds import check_request, kind_for
from jobengine.kinds.base import JobKindHandler, SubmitReads, assets_found, send_many_assets
from jobengine.model import SubmitJobRequest, to_ips_json
from jobengine.runtime import Runtime
from jobengine.settings import Settings
from jobengine.store.hot import (
    Batch,
    CopyInsert,
    HotStatement,
    RowidInsert,
    Same,
    inserted_ids,
    next_ids,
    pipelined,
    planned_in,
)
from jobengine.store.intake import begin
from jobengine.store.jobs import (
    AddedRuns,
    NewRun,
    RunRows,
    add_runs,
    add_untaken_runs,
    copy_run_rows,
    run_rows,
    runs_added,
)
from jobengine.store.schema import JOBS, RUNS, Company, utcnow
from jobengine.store.states import ACTIVE_RUNS
from jobengine.store.users import Actor, CompanyRef

__all__ = ["actors", "record_many", "record_pipelined"]


_COMPANIES = cast(Table, Company.__table__)


_NAMES_CHUNK = 500  # names per lookup (well under every driver's parameter limit)


def _names_taken(conn: Connection, names: set[tuple[int, str]]) -> set[tuple[int, str]]:
    """Which ``(company, name)`` a live job holds, as :func:`_key_taken` tells one by one, with
    one lookup per company and chunk of names (an ended holder hands its name on, released)."""
    by_company: dict[int, list[str]] = {}
    for company_id, name in names:
        by_company.setdefault(company_id, []).append(name)
    taken: set[tuple[int, str]] = set()
    for company_id, wanted in by_company.items():
        ordered = sorted(wanted)
        for i in range(0, len(ordered), _NAMES_CHUNK):
            holders = _holders(conn, company_id, ordered[i : i + _NAMES_CHUNK])
            for job_id, name, trigger_state in holders:  # rare in a bulk submission
                if still_holds(conn, int(job_id), str(trigger_state)):
                    taken.add((company_id, str(name)))
    return taken


def _holders(conn: Connection, company_id: int, names: list[str]) -> Sequence[Any]:
    """The live jobs of a company holding any of ``names``: id, name, trigger state.

    Prebuilt statements on the cursor: building and compiling one for its values cost about a
    millisecond a batch (a tenth of a batch of 100 on SQLite), two on PostgreSQL. SQLite: as
    many bound names as the next power of two (the list padded with its last name).
    PostgreSQL (psycopg): the names as one array, ``live_key = ANY(...)``, never prepared, so
    that the server plans each lookup with its values (see
    :func:`~jobengine.store.hot.planned_in`); elsewhere the values written into the statement.
    """
    if conn.dialect.name == "sqlite":
        size = 1 << (len(names) - 1).bit_length()
        padded = names + [names[-1]] * (size - len(names))
        params: dict[str, Any] = {f"n{n}": name for n, name in enumerate(padded)}
        return _live_holders(size).all(conn, {"company": company_id, **params})
    if conn.dialect.driver == "psycopg":
        return _LIVE_HOLDERS_ANY.all(conn, {"company": company_id, "names": names})
    return conn.execute(
        select(JOBS.c.id, JOBS.c.live_key, JOBS.c.trigger_state).where(
            JOBS.c.company_id == company_id, planned_in(JOBS.c.live_key, names)
        )
    ).all()


_LIVE_HOLDERS_ANY = HotStatement(
    select(JOBS.c.id, JOBS.c.live_key, JOBS.c.trigger_state).where(
        JOBS.c.company_id == bindparam("company"),
        JOBS.c.live_key == any_(bindparam("names", type_=ARRAY(String))),
    ),
    planned_each_time=True,
)


@functools.lru_cache(maxsize=16)
def _live_holders(size: int) -> HotStatement:
    """The live-name lookup of a company for exactly ``size`` bound names (SQLite)."""
    return HotStatement(
        select(JOBS.c.id, JOBS.c.live_key, JOBS.c.trigger_state).where(
            JOBS.c.company_id == bindparam("company"),
            JOBS.c.live_key.in_([bindparam(f"n{n}") for n in range(size)]),
        )
    )


_JOBS_INSERT = insert(JOBS).returning(JOBS.c.id, sort_by_parameter_order=True)
_JOBS_ROWID_INSERT = RowidInsert(insert(JOBS), JOBS, JOB_KEYS)
_JOBS_COPY = CopyInsert(JOBS, JOB_KEYS)
_SET_HANDLES = (
    update(JOBS).where(JOBS.c.id == bindparam("b_job")).values(handle=bindparam("b_handle"))
)


def _batch_reads(
    conn: Connection,
    actors: Sequence[Actor],
    kinds: Sequence[JobKindHandler[Any]],
    jobs: Sequence[Any],
) -> dict[int, SubmitReads]:
    """One SubmitReads per company of a batch, with the assets its requests name looked up at
    once (a statement per thousand handles instead of one per request)."""
    reads: dict[int, SubmitReads] = {}
    for who, kind, job in zip(actors, kinds, jobs, strict=True):
        company = reads.get(who.company_id)
        if company is None:
            company = reads[who.company_id] = SubmitReads(conn, who)
        company.want(kind.asset_handles(job))
    for company in reads.values():
        company.prefetch()
    return reads


@dataclass(frozen=True)
class _Kinds:
    """The kind, handler and payload of each request of a batch (each looked up once)."""

    kinds: list[JobKindHandler[Any]]
    jobs: list[Any]

    @classmethod
    def of(cls, reqs: Sequence[SubmitJobRequest]) -> _Kinds:
        job_kinds = [req.kind for req in reqs]  # (it looks through every job type: once a request)
        return cls(
            [kind_for(job_kind.element) for job_kind in job_kinds],
            [getattr(req, k.attribute) for req, k in zip(reqs, job_kinds, strict=True)],
        )


@dataclass
class _JobRows:
    """A batch's job rows as columns, with each job's handle and when it runs."""

    rows: Batch
    live_keys: list[str | None]
    handles: list[str]
    timings: list[Timing]


def _job_rows(
    reqs: Sequence[SubmitJobRequest],
    actors: Sequence[Actor],
    kinds: _Kinds,
    reads: dict[int, SubmitReads],
    held: set[tuple[int, str]],
    *,
    settings: Settings,
    now: datetime,
    duplicate: bool,
    client: str | None,
    timings: Sequence[Timing | IpsFault] | None = None,
    job_ids: Sequence[int] | None = None,
) -> _JobRows:
    """Check each request in order (its kind's checks, then its timing: the first fault is
    raised) and build the batch's job rows. A name asked for twice in the batch goes to the
    first request, as it would when submitted one after the other; a job whose name is taken
    gets a handle naming it by its id when ``job_ids`` are known ahead (else ``""``, set once
    they are). ``timings``: each request's, worked out ahead (a fault kept for its turn)."""
    claimed: set[tuple[int, str]] = set()
    checked: list[Timing] = []
    live_keys: list[str | None] = []
    handles: list[str] = []
    payloads: list[str] = []
    for n, (req, who, kind, job) in enumerate(zip(reqs, actors, kinds.kinds, kinds.jobs,
                                                   strict=True)):  # fmt: skip
        check_request(reads[who.company_id], kind, job)
        timing = timing_of(req, settings, now) if timings is None else timings[n]
        if isinstance(timing, IpsFault):
            raise timing
        checked.append(timing)
        name = (who.company_id, req.job_name)
        if duplicate or name in claimed or name in held:  # its handle names it by its id
            live_keys.append(None)
            handles.append(
                "" if job_ids is None else job_handle(who.company_handle, req.job_name, job_ids[n])
            )
        else:
            claimed.add(name)
            live_keys.append(req.job_name)
            handles.append(job_handle(who.company_handle, req.job_name))
        payloads.append(to_ips_json(req))
    rows = Batch(
        len(reqs),
        {
            "company_id": [who.company_id for who in actors],
            "live_key": live_keys,
            "handle": handles,
            "name": [req.job_name for req in reqs],
            "kind": [kind.element for kind in kinds.kinds],
            "payload": payloads,
            "submit_user_id": [who.user_id for who in actors],
            "run_as_user_id": [who.run_as_id for who in actors],
            "locale": [req.locale for req in reqs],
            "description": [req.description for req in reqs],
            "exec_time": [req.exec_time for req in reqs],
            "exec_schedule": [req.exec_schedule for req in reqs],
            "time_zone": Same(settings.timezone),
            "trigger_state": [timing.trigger_state for timing in checked],
            "next_fire_at": [timing.next_fire_at for timing in checked],
            "fired_through": [t.next_fire_at if t.run_now else None for t in checked],
            "created_at": Same(now),
            "client": Same(client[:255] if client else None),
        },
        raw=("payload",),
    )
    return _JobRows(rows, live_keys, handles, checked)


def _new_runs(
    reqs: Sequence[SubmitJobRequest], actors: Sequence[Actor], timings: Sequence[Timing],
    job_ids: Sequence[int],
) -> tuple[list[int], list[NewRun]]:  # fmt: skip
    """The batch's jobs that start now (their positions) and their runs."""
    starting = [n for n, timing in enumerate(timings) if timing.run_now]
    return starting, [
        NewRun(job_ids[n], actors[n].company_id, reqs[n].job_name, t.fire_key, t.eta)
        for n, t in ((n, timings[n]) for n in starting)
    ]


def _started(
    actors: Sequence[Actor], kinds: _Kinds, handles: list[str], starting: list[int],
    runs: AddedRuns,
) -> list[tuple[str, dispatch.StartMessage | None]]:  # fmt: skip
    """Each job's handle, with its start message if it starts now."""
    out: list[tuple[str, dispatch.StartMessage | None]] = [(h, None) for h in handles]
    for n, run_id, run_name, task_id, eta in zip(
        starting, runs.ids, runs.names, runs.task_ids, runs.etas, strict=True
    ):
        labels = {"job": handles[n], "company": actors[n].company_handle, "run": run_name}
        out[n] = (
            handles[n],
            dispatch.StartMessage(kinds.kinds[n].slug, run_id, task_id, labels, eta),
        )
    return out


def record_many(
    conn: Connection,
    runtime: Runtime,
    reqs: Sequence[SubmitJobRequest],
    actors: Sequence[Actor],
    *,
    duplicate: bool,
    sending: bool,
    client: str | None = None,
) -> list[tuple[str, dispatch.StartMessage | None]]:
    """Write several jobs as :func:`_record` writes one, in one insert of the jobs and one of
    their runs (see :func:`~jobengine.store.hot.inserted_ids` for how each store tells the
    jobs' ids).

    The rows go to the store as columns (:class:`~jobengine.store.hot.Batch`), what every row
    shares given once, and each request's payload as the JSON text pydantic writes
    (:func:`~jobengine.model.to_ips_json`): no dict per row, and none per payload."""
    settings = runtime.settings
    now = utcnow()
    held = (
        set()
        if duplicate
        else _names_taken(
            conn, {(who.company_id, req.job_name) for req, who in zip(reqs, actors, strict=True)}
        )
    )
    kinds = _Kinds.of(reqs)
    reads = _batch_reads(conn, actors, kinds.kinds, kinds.jobs)
    jobs = _job_rows(reqs, actors, kinds, reads, held, settings=settings, now=now,
                     duplicate=duplicate, client=client)  # fmt: skip
    job_ids = inserted_ids(
        conn, JOB_INSERT, _JOBS_INSERT, jobs.rows, sqlite=_JOBS_ROWID_INSERT, copy=_JOBS_COPY
    )
    handles = jobs.handles
    renamed: list[dict[str, Any]] = []
    for n, live_key in enumerate(jobs.live_keys):
        if live_key is None:  # the name is taken: the handle names the job by its id
            handles[n] = job_handle(actors[n].company_handle, reqs[n].job_name, job_ids[n])
            renamed.append({"b_job": job_ids[n], "b_handle": handles[n]})
    if renamed:
        conn.execute(_SET_HANDLES, renamed)
    starting, new_runs = _new_runs(reqs, actors, jobs.timings, job_ids)
    runs = add_runs(
        conn,
        new_runs,
        local_now=now.astimezone(settings.zone),
        # sent right after the commit (unmarked if the broker refuses them), or left to the relay
        dispatched_at=now if sending else None,
    )
    return _started(actors, kinds, handles, starting, runs)


def record_pipelined(
    conn: Connection,
    runtime: Runtime,
    reqs: Sequence[SubmitJobRequest],
    user: str | None,
    *,
    duplicate: bool,
    sending: bool,
    client: str | None = None,
) -> list[tuple[str, dispatch.StartMessage | None]]:
    """:func:`record_many` on PostgreSQL (psycopg), its reads in one pipeline: six round
    trips where it takes eleven (counted in libpq's protocol trace; across a network each costs
    the link's latency: at 2 ms each way a batch of 100 took 29-30% less time this way, on
    loopback the same: BENCHMARKS.md, bench/netem.py).

    1. the reads, sent together: the BEGIN (on a connection that commits each statement, in
       a :func:`~jobengine.store.intake.transaction` opened ``pipelined``; else psycopg's, a
       round trip of its own: in pipeline mode psycopg syncs after it), the companies of every
       form of the batch's company handles, the live jobs holding any of its names in them
       (with whether each has an active run), the ids of its jobs and of its runs drawn from
       their sequences, a savepoint, and its assets, with the pipeline's closing Sync (its
       results are read after it: a fetch within the block, a round trip of its own, would
       not spare the Sync's, which psycopg sends at the block's end whatever was fetched);
    2. the jobs and the runs each one ``COPY`` with their ids (two round trips each: ``COPY``
       waits for the server's go-ahead, and cannot go in a pipeline; an ``INSERT`` of arrays,
       which can, cost the server and the client more than the round trips it saves on
       loopback: BENCHMARKS.md), then the COMMIT, by the transaction.

    The ids known ahead, the job rows carry their final handles and the runs their job ids.
    The checks run between the reads and the writes, in the order of the requests, as
    :func:`record_many`'s (a request's timing is worked out before the reads, its fault kept
    for its turn). What is rare costs a round trip of its own as before: a ``userHandle`` or
    submitting user (looked up after the reads), a name whose holder has ended (released, and
    the savepoint set again after it), a run name taken this second (see
    :func:`_write_copied`). The jobs' ``COPY`` failing on a name taken meanwhile fails the
    transaction, as there."""
    settings = runtime.settings
    now = utcnow()
    kinds = _Kinds.of(reqs)
    timings = [_timing_or_fault(req, settings, now) for req in reqs]
    starts = sum(1 for t in timings if isinstance(t, Timing) and t.run_now)
    forms = list(dict.fromkeys(f for req in reqs for f in company_handle_forms(req.company_handle)))
    handles = list(
        dict.fromkeys(h for kind, job in zip(kinds.kinds, kinds.jobs, strict=True)
                      for h in kind.asset_handles(job))
    )  # fmt: skip
    with pipelined(conn):  # sent; the block's end syncs, which brings every result back
        began = begin(conn)
        companies = _COMPANIES_ANY.send(conn, {"forms": forms})
        names = sorted({req.job_name for req in reqs})
        holders = None if duplicate else _HOLDERS_ANY.send(conn, {"forms": forms, "names": names})
        job_ids_sent = next_ids(conn, JOBS, len(reqs))
        run_ids_sent = next_ids(conn, RUNS, starts) if starts else None
        mark = _SAVEPOINT.send(conn, {})  # before the writes (see _write_copied)
        assets_sent = send_many_assets(conn, handles)
    if began is not None:
        began.done()
    mark.done()
    found = assets_found(assets_sent)
    stored = {str(handle): (int(company_id), str(handle)) for company_id, handle in companies.all()}
    holder_rows = [] if holders is None else holders.all()
    job_ids = sorted(int(row[0]) for row in job_ids_sent.all())
    run_ids = [] if run_ids_sent is None else sorted(int(row[0]) for row in run_ids_sent.all())
    actors = _actors_of(conn, reqs, user, stored)
    wanted = {(who.company_id, req.job_name) for req, who in zip(reqs, actors, strict=True)}
    held: set[tuple[int, str]] = set()
    released = False
    for job_id, company_id, name, trigger_state, active in holder_rows:
        key = (int(company_id), str(name))
        if key not in wanted:
            continue
        if holds(conn, (int(job_id), str(trigger_state), active is not None)):
            held.add(key)
        else:  # released: the savepoint goes after it (rare: a round trip of its own)
            released = True
    if released:
        _SAVEPOINT.execute(conn, {})
    reads: dict[int, SubmitReads] = {}
    for who in actors:
        if who.company_id not in reads:
            reads[who.company_id] = SubmitReads(conn, who)
            reads[who.company_id].known(handles, found.values())
    jobs = _job_rows(
        reqs, actors, kinds, reads, held, settings=settings, now=now, duplicate=duplicate,
        client=client, timings=timings, job_ids=job_ids,
    )  # fmt: skip
    starting, new_runs = _new_runs(reqs, actors, jobs.timings, job_ids)
    # sent right after the commit (unmarked if the broker refuses them), or left to the relay
    rows = run_rows(new_runs, local_now=now.astimezone(settings.zone),
                    dispatched_at=now if sending else None)  # fmt: skip
    runs = _write_copied(conn, jobs.rows, job_ids, rows, run_ids)
    return _started(actors, kinds, jobs.handles, starting, runs)


def _timing_or_fault(req: SubmitJobRequest, settings: Settings, now: datetime) -> Timing | IpsFault:
    try:
        return timing_of(req, settings, now)
    except IpsFault as fault:
        return fault


def _actors_of(
    conn: Connection, reqs: Sequence[SubmitJobRequest], user: str | None,
    stored: dict[str, tuple[int, str]],
) -> list[Actor]:  # fmt: skip
    """:func:`actors` with the companies read already (``stored``: by stored handle)."""
    known: dict[tuple[str, str | None], Actor] = {}
    out: list[Actor] = []
    for req in reqs:
        key = (req.company_handle, req.user_handle)
        who = known.get(key)
        if who is None:
            found = next((stored[f] for f in company_handle_forms(req.company_handle)
                          if f in stored), None)  # fmt: skip
            if found is None:
                raise InvalidCompany(
                    f"unknown company {req.company_handle!r}", field="companyHandle"
                )
            company = CompanyRef(*found)
            run_as = user_of(conn, req.user_handle, company, "userHandle")
            submitter = user_of(conn, user, company, "user")
            who = known[key] = Actor(company.id, company.handle, submitter, run_as)
        out.append(who)
    return out


def _write_copied(
    conn: Connection, jobs: Batch, job_ids: list[int], runs: RunRows, run_ids: list[int]
) -> AddedRuns:
    """The writes of :func:`record_pipelined`: the jobs, then the runs, each one ``COPY`` with
    the ids drawn for them (the COMMIT follows, by the transaction). A run name taken this
    second fails the runs' ``COPY``: the transaction goes back to the savepoint set with the
    reads (before the jobs), the jobs go in again and the runs as :func:`record_many`'s fall
    back (the ``ON CONFLICT`` statement, then the next suffix for each run left out)."""
    _JOBS_COPY.insert(conn, jobs, job_ids)
    if not run_ids:
        return runs_added(conn, runs, {})
    try:
        copy_run_rows(conn, runs, run_ids)
    except IntegrityError as error:
        if not _run_name_taken(error):
            raise
        _ROLLBACK_TO_SAVEPOINT.execute(conn, {})
        _JOBS_COPY.insert(conn, jobs, job_ids)
        return add_untaken_runs(conn, runs)
    return runs_added(conn, runs, dict(zip(runs.task_ids, run_ids, strict=True)))


def _run_name_taken(error: IntegrityError) -> bool:
    """Whether a batch's runs' insert failed on a run name taken (not the jobs' on a job name)."""
    diag = getattr(error.orig, "diag", None)
    return (
        getattr(error.orig, "sqlstate", None) == "23505"
        and getattr(diag, "table_name", None) == RUNS.name
    )


_HOLDER = JOBS.alias("holder")
_COMPANIES_ANY = HotStatement(
    select(_COMPANIES.c.id, _COMPANIES.c.handle).where(
        _COMPANIES.c.handle == any_(bindparam("forms", type_=ARRAY(String)))
    )
)
# The live jobs holding any of a batch's names in its companies, with whether each has an
# active run (a correlated probe of its runs, as intake's first read), never prepared: planned
# with its values (see planned_in).
_HOLDERS_ANY = HotStatement(
    select(
        _HOLDER.c.id,
        _HOLDER.c.company_id,
        _HOLDER.c.live_key,
        _HOLDER.c.trigger_state,
        select(RUNS.c.id)
        .where(RUNS.c.job_id == _HOLDER.c.id, or_(*(RUNS.c.state == s for s in ACTIVE_RUNS)))
        .limit(1)
        .scalar_subquery(),
    ).where(
        _HOLDER.c.company_id.in_(
            select(_COMPANIES.c.id).where(
                _COMPANIES.c.handle == any_(bindparam("forms", type_=ARRAY(String)))
            )
        ),
        _HOLDER.c.live_key == any_(bindparam("names", type_=ARRAY(String))),
    ),
    planned_each_time=True,
)
_SAVEPOINT = HotStatement(text("SAVEPOINT jobengine_batch"))
_ROLLBACK_TO_SAVEPOINT = HotStatement(text("ROLLBACK TO SAVEPOINT jobengine_batch"))


def actors(
    conn: Connection, reqs: Sequence[SubmitJobRequest], user: str | None, actor: Actor | None
) -> list[Actor]:
    """Who each request acts as, looked up once per company and ``userHandle``."""
    if actor is not None:
        return [actor_of(req, actor) for req in reqs]
    known: dict[tuple[str, str | None], Actor] = {}
    out: list[Actor] = []
    for req in reqs:
        key = (req.company_handle, req.user_handle)
        if key not in known:
            known[key] = resolve(conn, req, user)
        out.append(known[key])
    return out
