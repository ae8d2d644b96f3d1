"""submit(): validate, write the durable job record, send its first message, return the handle.

An accepted job is never lost: the job and its run are committed before anything is sent. If the
broker is down, the run stays unsent in the store (the outbox) and the scheduler's relay sends
it when the broker is back; the caller still gets its handle.

While this process knows the broker to be down (it refused a message in the last
``JOBENGINE_OUTBOX_GRACE`` seconds), runs go straight to the outbox: the caller gets its handle
at once instead of waiting on a connect timeout.

An unreachable job store raises the IPS fault ServerError (30000) with the reason; nothing is
recorded then, and the caller may submit again.

When it runs: no time -> now; ``execTime`` within the ETA horizon -> a Celery ETA message now;
``execTime`` further ahead -> held in the store until the scheduler brings it inside the horizon;
``execSchedule`` -> the scheduler fires it on its Quartz cron in the server's time zone.

This is the hot path of a producer service: the job store is written with prebuilt Core
statements on the session's connection (the ORM's unit of work and entity loading cost several
times the SQL here), and a run's task message and its ``task-sent`` event leave in one broker
round trip (see :mod:`jobengine.engine.dispatch`).
"""

from __future__ import annotations

import functools
import gc
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
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
from sqlalchemy.exc import DBAPIError, IntegrityError

from jobengine.cron import parse as parse_cron
from jobengine.engine import dispatch
from jobengine.errors import (
    InvalidCompany,
    InvalidParameter,
    InvalidRequestUser,
    IpsFault,
    StoreUnavailable,
    Unavailable,
    caller_faults,
)
from jobengine.handles import company_handle_forms, job_handle
from jobengine.kinds import check_request, kind_for
from jobengine.kinds.base import JobKindHandler, SubmitReads, find_many_assets
from jobengine.model import (
    SubmitJobRequest,
    parse_submit_job,
    parse_submit_jobs,
    to_ips_dict,
    to_ips_json,
)
from jobengine.runtime import Runtime, get_runtime
from jobengine.settings import Settings
from jobengine.store.hot import (
    ArrayInsert,
    Batch,
    CopyInsert,
    HotStatement,
    RowidInsert,
    Same,
    Sent,
    inserted_ids,
    next_ids,
    pipelined,
    pipelines,
    planned_in,
)
from jobengine.store.intake import (
    FEW_ASSETS,
    commits_each_statement,
    committed_run,
    first_read,
    insert_job_and_run,
    insert_job_and_run_alone,
    new_run_values,
    transaction,
)
from jobengine.store.jobs import (
    AddedRuns,
    NewRun,
    RunRows,
    add_runs,
    add_untaken_runs,
    fire_key,
    insert_run,
    run_rows,
    runs_added,
    send_run_rows,
)
from jobengine.store.schema import JOBS, RUNS, Company, Membership, Run, User, utcnow
from jobengine.store.states import ACTIVE_RUNS, LIVE_TRIGGERS, TriggerState
from jobengine.store.users import Actor, CompanyRef, not_a_member

__all__ = ["send_run", "send_runs", "submit", "submit_many"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Timing:
    trigger_state: TriggerState
    next_fire_at: datetime | None
    run_now: bool
    eta: datetime | None
    fire_key: str


def _timing(req: SubmitJobRequest, settings: Settings, now: datetime) -> _Timing:
    if req.exec_schedule:
        nxt = parse_cron(req.exec_schedule).next_after(now, settings.zone)
        if nxt is None:
            raise InvalidParameter(
                f"execSchedule {req.exec_schedule!r} never fires after {now:%Y-%m-%d %H:%M:%S %Z}",
                field="execSchedule",
            )
        return _Timing(TriggerState.NORMAL, nxt, False, None, "")
    if req.exec_time is not None:
        at = req.exec_time
        near = at <= now + timedelta(seconds=settings.eta_horizon)
        return _Timing(TriggerState.NORMAL, at, near, at if at > now else None, fire_key("at", at))
    return _NOW


_NOW = _Timing(TriggerState.NONE, None, True, None, "now")  # a job that starts now


_COMPANIES = cast(Table, Company.__table__)
_USERS = cast(Table, User.__table__)
_MEMBERS = cast(Table, Membership.__table__)
_COMPANY = HotStatement(
    select(_COMPANIES.c.id, _COMPANIES.c.handle).where(_COMPANIES.c.handle == bindparam("handle"))
)
_USER = HotStatement(
    select(_USERS.c.id).where(
        (_USERS.c.handle == bindparam("handle")) | (_USERS.c.email == bindparam("handle"))
    )
)
_MEMBER = HotStatement(
    select(_MEMBERS.c.user_id).where(
        _MEMBERS.c.user_id == bindparam("user"), _MEMBERS.c.company_id == bindparam("company")
    )
)
_HOLDER_ACTIVE = HotStatement(
    select(RUNS.c.id)
    .where(RUNS.c.job_id == bindparam("job"), or_(*(RUNS.c.state == s for s in ACTIVE_RUNS)))
    .limit(1)
)
_RELEASE_NAME = HotStatement(
    update(JOBS).where(JOBS.c.id == bindparam("job")).values(live_key=None)
)
_JOB_KEYS = ("company_id", "live_key", "handle", "name", "kind", "payload", "submit_user_id",
             "run_as_user_id", "locale", "description", "exec_time", "exec_schedule", "time_zone",
             "trigger_state", "next_fire_at", "fired_through", "created_at", "client")  # fmt: skip
_JOB_INSERT = HotStatement(insert(JOBS).returning(JOBS.c.id), insert_keys=_JOB_KEYS)
_SET_HANDLE = HotStatement(
    update(JOBS).where(JOBS.c.id == bindparam("job")).values(handle=bindparam("h"))
)
_UNMARK_SENT = HotStatement(
    update(RUNS).where(RUNS.c.id == bindparam("run")).values(dispatched_at=None)
)
_MARK_SENT = HotStatement(
    update(RUNS)
    .where(RUNS.c.id == bindparam("run"), RUNS.c.dispatched_at.is_(None))
    .values(dispatched_at=bindparam("now"))
)


def _company(conn: Connection, handle: str) -> CompanyRef:
    """The company with ``handle`` (``47`` or ``c|47``), detached; InvalidCompany if none."""
    for form in company_handle_forms(handle):
        row = _COMPANY.first(conn, {"handle": form})
        if row is not None:
            return CompanyRef(int(row[0]), str(row[1]))
    raise InvalidCompany(f"unknown company {handle!r}", field="companyHandle")


def _user(conn: Connection, handle: str | None, company: CompanyRef, field: str) -> int | None:
    """The id of the user with this handle or e-mail, who must be a member of ``company``."""
    if not handle:
        return None
    user_id = _USER.scalar(conn, {"handle": handle})
    if user_id is None:
        raise InvalidRequestUser(f"unknown user {handle!r}", field=field)
    if _MEMBER.first(conn, {"user": user_id, "company": company.id}) is None:
        raise not_a_member(handle, company.handle, field)
    return int(user_id)


def _resolve(conn: Connection, req: SubmitJobRequest, submitter: str | None) -> Actor:
    """Who a request of the Python API acts as (no caller resolved it): its company, its
    ``userHandle`` and the submitter, each a member of the company."""
    company = _company(conn, req.company_handle)
    run_as = _user(conn, req.user_handle, company, "userHandle")
    user = _user(conn, submitter, company, "user")
    return Actor(company.id, company.handle, user, run_as)


def _actor_of(req: SubmitJobRequest, actor: Actor) -> Actor:
    """``actor``, checked to be the request's company's (a caller's bug otherwise)."""
    if actor.company_handle not in company_handle_forms(req.company_handle):
        raise ValueError(f"{actor} does not act on company {req.company_handle!r}")
    return actor


def _still_holds(conn: Connection, job_id: int, trigger_state: str) -> bool:
    """Whether the job holding a name still holds it: a live trigger or an active run; an ended
    holder hands the name on (released here)."""
    if trigger_state in LIVE_TRIGGERS or _HOLDER_ACTIVE.first(conn, {"job": job_id}) is not None:
        return True
    _RELEASE_NAME.execute(conn, {"job": job_id})
    return False


def _job_values(
    req: SubmitJobRequest,
    who: Actor,
    settings: Settings,
    timing: _Timing,
    *,
    element: str,
    now: datetime,
    taken: bool,
    client: str | None,
) -> dict[str, Any]:
    """The job row of a request (its handle is the job key's unless the name is taken)."""
    return dict(
        company_id=who.company_id,
        live_key=None if taken else req.job_name,
        handle="" if taken else job_handle(who.company_handle, req.job_name),
        name=req.job_name,
        kind=element,
        payload=to_ips_dict(req),
        submit_user_id=who.user_id,
        run_as_user_id=who.run_as_id,
        locale=req.locale,
        description=req.description,
        exec_time=req.exec_time,
        exec_schedule=req.exec_schedule,
        time_zone=settings.timezone,
        trigger_state=timing.trigger_state,
        next_fire_at=timing.next_fire_at,
        fired_through=timing.next_fire_at if timing.run_now else None,
        created_at=now,
        client=client[:255] if client else None,
    )


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
                if _still_holds(conn, int(job_id), str(trigger_state)):
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


def _holds(conn: Connection, holder: tuple[int, str, bool] | None) -> bool:
    """:func:`_still_holds` for a holder read with whether it has an active run."""
    if holder is None:
        return False
    job_id, trigger_state, active = holder
    if trigger_state in LIVE_TRIGGERS or active:
        return True
    _RELEASE_NAME.execute(conn, {"job": job_id})
    return False


def _insert_job_and_run(
    conn: Connection, runtime: Runtime, job: dict[str, Any], run: dict[str, Any]
) -> tuple[int | None, int | None]:
    """Insert a job and its run: (job id, run id); the run id None when the run's name is
    taken this second (the caller names it -2, -3...), and the job id None too when nothing
    was written.

    In a transaction (SQLite), the job goes in whatever happens to the run. On PostgreSQL
    (``conn`` commits each statement) one statement is the whole transaction: one round trip,
    no BEGIN or COMMIT. A clash of any kind there (the name taken meanwhile, the run's name)
    commits nothing, and the caller's transaction tells which. If the connection dies in
    flight, the statement may have committed: the same statement, sent again on a new
    connection, waits for a first one still in flight and fails if it committed, and the run is
    then looked up by its unique name and task id; so the job is written once."""
    if not commits_each_statement(conn):
        return insert_job_and_run(conn, job, run)
    try:
        return insert_job_and_run_alone(conn, job, run)
    except IntegrityError:
        return None, None
    except DBAPIError as error:
        if not error.connection_invalidated:
            raise
    logger.info("store connection lost under a submit; sending its statement again")
    with runtime.store.each_statement() as again:
        try:
            return insert_job_and_run_alone(again, job, run)
        except IntegrityError:
            found = committed_run(again, run)
            if found is None:  # someone else's clash: the caller's transaction tells which
                return None, None
            return found


def _record(
    conn: Connection,
    runtime: Runtime,
    req: SubmitJobRequest,
    user: str | None,
    actor: Actor | None,
    *,
    duplicate: bool,
    sending: bool,
    client: str | None = None,
) -> tuple[str, dispatch.StartMessage | None]:
    """Write one job (and its run when it starts now); returns its handle and start message.

    Its reads are one statement (:func:`~jobengine.store.intake.first_read`: the company, the
    holder of the name, the assets the request names) and, for a job that starts now under its
    own name, its writes one more (:func:`~jobengine.store.intake.insert_job_and_run`)."""
    settings = runtime.settings
    now = utcnow()
    job_kind = req.kind
    kind = kind_for(job_kind.element)
    job = getattr(req, job_kind.attribute)
    handles = kind.asset_handles(job)
    few = len(handles) <= FEW_ASSETS
    if actor is None:
        read = first_read(conn, name=req.job_name, handles=handles if few else [],
                          company_forms=company_handle_forms(req.company_handle))  # fmt: skip
        if read.company is None:
            raise InvalidCompany(f"unknown company {req.company_handle!r}", field="companyHandle")
        company = CompanyRef(*read.company)
        run_as = _user(conn, req.user_handle, company, "userHandle")
        who = Actor(company.id, company.handle, _user(conn, user, company, "user"), run_as)
    else:
        who = _actor_of(req, actor)
        read = first_read(conn, name=req.job_name, handles=handles if few else [],
                          company_id=who.company_id)  # fmt: skip
        if read.company is None:  # deleted since the caller resolved it
            raise InvalidCompany(f"unknown company {req.company_handle!r}", field="companyHandle")
    reads = SubmitReads(conn, who)
    if few:
        reads.known(handles, read.assets)
    check_request(reads, kind, job)
    timing = _timing(req, settings, now)
    taken = duplicate or _holds(conn, read.holder)
    values = _job_values(
        req, who, settings, timing, element=kind.element, now=now, taken=taken, client=client
    )
    handle = str(values["handle"])
    local_now = now.astimezone(settings.zone)
    # sent right after the commit (unmarked if the broker refuses it), or left to the relay
    dispatched_at = now if sending else None
    job_id: int | None = None
    if not taken and timing.run_now:  # the hot path: the job and its run in one statement
        run = new_run_values(
            who.company_id,
            req.job_name,
            timing.fire_key,
            local_now=local_now,
            eta=timing.eta,
            dispatched_at=dispatched_at,
        )
        job_id, run_id = _insert_job_and_run(conn, runtime, values, run)
        if run_id is not None:
            return handle, _start(kind, handle, who, {**run, "id": run_id})
    with transaction(conn):  # PostgreSQL's statements commit alone: these commit together
        if job_id is None:
            job_id = int(_JOB_INSERT.scalar(conn, values))
            if taken:
                handle = job_handle(who.company_handle, req.job_name, job_id)
                _SET_HANDLE.execute(conn, {"job": job_id, "h": handle})
            if not timing.run_now:
                return handle, None
        # the name taken, or the run's name taken this second: insert_run names it -2, -3...
        run = insert_run(
            conn,
            job_id=job_id,
            company_id=who.company_id,
            job_name=req.job_name,
            fire_key=timing.fire_key,
            local_now=local_now,
            eta=timing.eta,
            dispatched_at=dispatched_at,
        )
    return handle, _start(kind, handle, who, run)


def _start(
    kind: JobKindHandler[Any], handle: str, who: Actor, run: dict[str, Any]
) -> dispatch.StartMessage:
    labels = {"job": handle, "company": who.company_handle, "run": run["run_name"]}
    return dispatch.StartMessage(kind.slug, run["id"], run["task_id"], labels, run["eta"])


_JOBS_INSERT = insert(JOBS).returning(JOBS.c.id, sort_by_parameter_order=True)
_JOBS_ROWID_INSERT = RowidInsert(insert(JOBS), JOBS, _JOB_KEYS)
_JOBS_COPY = CopyInsert(JOBS, _JOB_KEYS)
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
    timings: list[_Timing]


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
    timings: Sequence[_Timing | IpsFault] | None = None,
    job_ids: Sequence[int] | None = None,
) -> _JobRows:
    """Check each request in order (its kind's checks, then its timing: the first fault is
    raised) and build the batch's job rows. A name asked for twice in the batch goes to the
    first request, as it would when submitted one after the other; a job whose name is taken
    gets a handle naming it by its id when ``job_ids`` are known ahead (else ``""``, set once
    they are). ``timings``: each request's, worked out ahead (a fault kept for its turn)."""
    claimed: set[tuple[int, str]] = set()
    checked: list[_Timing] = []
    live_keys: list[str | None] = []
    handles: list[str] = []
    payloads: list[str] = []
    for n, (req, who, kind, job) in enumerate(zip(reqs, actors, kinds.kinds, kinds.jobs,
                                                   strict=True)):  # fmt: skip
        check_request(reads[who.company_id], kind, job)
        timing = _timing(req, settings, now) if timings is None else timings[n]
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
    reqs: Sequence[SubmitJobRequest], actors: Sequence[Actor], timings: Sequence[_Timing],
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


def _record_many(
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
        conn, _JOB_INSERT, _JOBS_INSERT, jobs.rows, sqlite=_JOBS_ROWID_INSERT, copy=_JOBS_COPY
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


def _record_pipelined(
    conn: Connection,
    runtime: Runtime,
    reqs: Sequence[SubmitJobRequest],
    user: str | None,
    *,
    duplicate: bool,
    sending: bool,
    client: str | None = None,
) -> list[tuple[str, dispatch.StartMessage | None]]:
    """:func:`_record_many` on PostgreSQL (psycopg) in two round trips, its COMMIT in the
    second: each round trip's statements go together in psycopg's pipeline mode.

    1. The reads, with the transaction's BEGIN: the companies of every form of the batch's
       company handles, the live jobs holding any of its names in them (with whether each has
       an active run), its assets, and the ids of its jobs and of its runs, drawn from their
       sequences (a run's id is known before it is written, so the job rows carry their final
       handles and the runs their job ids).
    2. The jobs in one ``INSERT`` of arrays, a savepoint, the runs in another, and the COMMIT
       (:class:`~jobengine.store.hot.ArrayInsert`; a ``COPY`` is two round trips of its own
       and cannot go in a pipeline).

    The checks run between the two, in the order of the requests, as :func:`_record_many`'s
    (a request's timing is worked out before the reads, its fault kept for its turn). What is
    rare costs a round trip of its own as before: a ``userHandle`` or submitting user (looked up
    after the reads), a name whose holder has ended (released), a run name taken this second
    (the runs' insert fails under its savepoint and the runs go in as :func:`_record_many`'s
    fall back, the COMMIT left to the transaction). The jobs' insert failing on a name taken
    meanwhile fails the transaction, as there. A lost connection in the second round trip may
    have come after the COMMIT: StoreUnavailable, not run again (as a failed COMMIT)."""
    settings = runtime.settings
    now = utcnow()
    kinds = _Kinds.of(reqs)
    timings = [_timing_or_fault(req, settings, now) for req in reqs]
    starts = sum(1 for t in timings if isinstance(t, _Timing) and t.run_now)
    forms = list(dict.fromkeys(f for req in reqs for f in company_handle_forms(req.company_handle)))
    handles = list(
        dict.fromkeys(h for kind, job in zip(kinds.kinds, kinds.jobs, strict=True)
                      for h in kind.asset_handles(job))
    )  # fmt: skip
    with pipelined(conn):
        companies = _COMPANIES_ANY.send(conn, {"forms": forms})
        names = sorted({req.job_name for req in reqs})
        holders = None if duplicate else _HOLDERS_ANY.send(conn, {"forms": forms, "names": names})
        job_ids_sent = next_ids(conn, JOBS, len(reqs))
        run_ids_sent = next_ids(conn, RUNS, starts) if starts else None
        found = find_many_assets(conn, handles)  # the first fetch: it waits for all of them
        stored = {
            str(handle): (int(company_id), str(handle)) for company_id, handle in companies.all()
        }
        holder_rows = [] if holders is None else holders.all()
        job_ids = sorted(int(row[0]) for row in job_ids_sent.all())
        run_ids = [] if run_ids_sent is None else sorted(int(row[0]) for row in run_ids_sent.all())
    actors = _actors_of(conn, reqs, user, stored)
    wanted = {(who.company_id, req.job_name) for req, who in zip(reqs, actors, strict=True)}
    held = {
        (int(company_id), str(name))
        for job_id, company_id, name, trigger_state, active in holder_rows
        if (int(company_id), str(name)) in wanted
        and _holds(conn, (int(job_id), str(trigger_state), active is not None))
    }
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
    runs = _write_pipelined(conn, jobs.rows, job_ids, rows, run_ids)
    return _started(actors, kinds, jobs.handles, starting, runs)


def _timing_or_fault(
    req: SubmitJobRequest, settings: Settings, now: datetime
) -> _Timing | IpsFault:
    try:
        return _timing(req, settings, now)
    except IpsFault as fault:
        return fault


def _actors_of(
    conn: Connection, reqs: Sequence[SubmitJobRequest], user: str | None,
    stored: dict[str, tuple[int, str]],
) -> list[Actor]:  # fmt: skip
    """:func:`_actors` with the companies read already (``stored``: by stored handle)."""
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
            run_as = _user(conn, req.user_handle, company, "userHandle")
            who = known[key] = Actor(company.id, company.handle, _user(conn, user, company, "user"),
                                     run_as)  # fmt: skip
        out.append(who)
    return out


def _write_pipelined(
    conn: Connection, jobs: Batch, job_ids: list[int], runs: RunRows, run_ids: list[int]
) -> AddedRuns:
    """The second round trip of :func:`_record_pipelined`: the jobs, the runs, the COMMIT."""
    sent: list[Sent] = []
    try:
        with pipelined(conn):
            sent.append(_JOBS_ARRAY.send(conn, jobs, job_ids))
            if run_ids:
                sent.append(_SAVEPOINT.send(conn, {}))
                sent.append(send_run_rows(conn, runs, run_ids))
            sent.append(_COMMIT.send(conn, {}))  # with the rest: the transaction's end
    except IntegrityError as error:
        if not _run_name_taken(error):
            raise
        _ROLLBACK_TO_SAVEPOINT.execute(conn, {})  # the jobs stay; the transaction commits them
        return add_untaken_runs(conn, runs)
    except DBAPIError as error:
        if error.connection_invalidated:  # sent, maybe committed: never to be run again
            raise StoreUnavailable(f"the job store is unreachable: {error.orig}") from error
        raise
    finally:
        for one in sent:
            one.close()
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
_JOBS_ARRAY = ArrayInsert(JOBS, _JOB_KEYS)
_SAVEPOINT = HotStatement(text("SAVEPOINT jobengine_runs"))
_ROLLBACK_TO_SAVEPOINT = HotStatement(text("ROLLBACK TO SAVEPOINT jobengine_runs"))
_COMMIT = HotStatement(text("COMMIT"))


@caller_faults
def submit(
    request: SubmitJobRequest | dict[str, Any] | str | bytes,
    *,
    user: str | None = None,
    client: str | None = None,
    actor: Actor | None = None,
) -> str:
    """Submit a job (model, dict with IPS names, or IPS XML); returns its jobHandle.

    ``user`` is the submitting user's handle or e-mail (the caller, when known); it must be a
    member of the company. ``actor``, instead, is who submits as a surface resolved it already
    for this request (:func:`jobengine.access.auth.authorize_submit`): its company, submitter and
    ``userHandle`` are not looked up again. ``client`` names the submitting application (SOAP:
    authHeader appName and appVersion); each run logs it as its JobClient row. Raises an
    :class:`~jobengine.errors.IpsFault` for any bad request.
    """
    return _submit([request], user, client, actor)[0]


@caller_faults
def submit_many(
    requests: Sequence[SubmitJobRequest | dict[str, Any] | str | bytes],
    *,
    user: str | None = None,
    client: str | None = None,
) -> list[str]:
    """Submit several jobs in one transaction and one broker round trip; returns their handles.

    All or nothing: if any request is bad, its fault is raised (the reason names its position)
    and none of the jobs is recorded.
    """
    if len(requests) < 2:
        return _submit(requests, user, client, None)
    with _collector_paused():
        return _submit(requests, user, client, None)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused for the length of a bulk submission.

    A batch allocates containers by the thousand (a request's models, its rows, its
    messages), and the collector runs every 700 of them: those that live through the batch
    are carried into the oldest generation, whose collection traverses every object of the
    process (the imported Celery, SQLAlchemy, pydantic...: about 150,000, 90 ms on the
    benchmark machine) once a quarter more have come. In bench/bulk.py that was a full
    collection every 4-6 batches of 1,000 jobs, 15-25 us a job. Paused, the batch's objects
    are freed by their reference counts as ever (a bulk submission makes no cycles), and the
    next collection finds them gone. Mercurial pauses it so around building large structures.

    Process-wide, as the collector is: another thread's cyclic garbage waits for the end of
    the batch. Not paused if it was not running (the caller's choice is kept), and resumed
    only if this call paused it (a concurrent batch that found it paused leaves it alone).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _submit(
    requests: Sequence[SubmitJobRequest | dict[str, Any] | str | bytes],
    user: str | None,
    client: str | None,
    actor: Actor | None,
) -> list[str]:
    reqs = (len(requests) > 1 and parse_submit_jobs(requests)) or [
        _parse(request, n, len(requests)) for n, request in enumerate(requests, 1)
    ]
    runtime = get_runtime()
    sending = not dispatch.broker_known_down()

    def record(conn: Connection, duplicate: bool) -> list[tuple[str, dispatch.StartMessage | None]]:
        if len(reqs) == 1:  # submit(): prebuilt statements, a read and a write
            return [_record(conn, runtime, reqs[0], user, actor, duplicate=duplicate,
                            sending=sending, client=client)]  # fmt: skip
        if actor is None and pipelines(conn):  # PostgreSQL: two round trips
            return _record_pipelined(conn, runtime, reqs, user, duplicate=duplicate,
                                     sending=sending, client=client)  # fmt: skip
        actors = _actors(conn, reqs, user, actor)
        return _record_many(conn, runtime, reqs, actors, duplicate=duplicate, sending=sending,
                            client=client)  # fmt: skip

    for duplicate in (False, True):
        try:
            # run again if its connection died before the commit (PostgreSQL restarted)
            work = functools.partial(record, duplicate=duplicate)
            # one request: on PostgreSQL its statements commit alone (see _record)
            recorded = runtime.store.transact(work, autocommit=len(reqs) == 1)
            break
        except IntegrityError:  # another submit took the same live name meanwhile
            if duplicate:
                raise
    if sending:
        send_runs(runtime, [out for _, out in recorded if out is not None], marked=True)
    return [handle for handle, _ in recorded]


def _actors(
    conn: Connection, reqs: Sequence[SubmitJobRequest], user: str | None, actor: Actor | None
) -> list[Actor]:
    """Who each request acts as, looked up once per company and ``userHandle``."""
    if actor is not None:
        return [_actor_of(req, actor) for req in reqs]
    known: dict[tuple[str, str | None], Actor] = {}
    out: list[Actor] = []
    for req in reqs:
        key = (req.company_handle, req.user_handle)
        if key not in known:
            known[key] = _resolve(conn, req, user)
        out.append(known[key])
    return out


def _parse(request: SubmitJobRequest | dict[str, Any] | str | bytes, n: int, total: int
           ) -> SubmitJobRequest:  # fmt: skip
    try:
        return parse_submit_job(request)
    except IpsFault as fault:
        if total > 1:
            fault.reason = f"request {n} of {total}: {fault.reason}"
            fault.args = (fault.reason,)
        raise


def send_run(runtime: Runtime, element: str, run: Run, labels: dict[str, str]) -> bool:
    """Send a run's start message and mark it sent.

    Returns False when the broker is down: the run stays in the outbox for the relay.
    """
    message = dispatch.StartMessage(kind_for(element).slug, run.id, run.task_id, labels, run.eta)
    return send_runs(runtime, [message]) == 1


def send_runs(
    runtime: Runtime,
    runs: Sequence[dispatch.StartMessage],
    *,
    marked: bool = False,
    prepared: Sequence[dispatch.PreparedStart | None] | None = None,
) -> int:
    """Send start messages in one broker round trip and mark them sent; returns how many went.

    Runs the broker did not take stay in the outbox for the scheduler's relay. A run whose
    message went but whose marking did not is sent again by the relay: the run-once guard makes
    the second message a no-op.

    ``marked``: the runs were committed already marked sent (submit's hot path saves a
    transaction so). If the broker refuses them they are unmarked, for the relay; if this process
    dies before sending, the scheduler sends a queued run again once it has waited
    ``stall_seconds`` without starting.

    ``prepared``: the messages built ahead (:func:`dispatch.prepare_starts`), in order.
    """
    if not runs:
        return 0
    try:
        dispatch.send_starts(runs, prepared)
    except dispatch.BrokerUnavailable:
        logger.warning("%d run(s) kept in the outbox: broker unavailable", len(runs))
        if marked:
            try:
                with runtime.store.connect() as conn:
                    for out in runs:
                        _UNMARK_SENT.execute(conn, {"run": out.run_id})
            except Unavailable:  # recorded all the same: the scheduler re-sends an idle run
                logger.warning("could not move %d run(s) to the outbox: store down", len(runs))
        return 0
    if marked:
        return len(runs)
    now = utcnow()
    with runtime.store.connect() as conn:
        for out in runs:
            _MARK_SENT.execute(conn, {"run": out.run_id, "now": now})
    return len(runs)
