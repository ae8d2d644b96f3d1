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
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from jobengine.engine import dispatch
from jobengine.engine.bulk import actors, record_many, record_pipelined
from jobengine.engine.submit_rules import JOB_INSERT, Timing, actor_of, holds, timing_of, user_of
from jobengine.errors import InvalidCompany, IpsFault, Unavailable, caller_faults
from jobengine.handles import company_handle_forms, job_handle
from jobengine.kinds import check_request, kind_for
from jobengine.kinds.base import JobKindHandler, SubmitReads
from jobengine.model import SubmitJobRequest, parse_submit_job, parse_submit_jobs, to_ips_dict
from jobengine.runtime import Runtime, get_runtime
from jobengine.settings import Settings
from jobengine.store.hot import HotStatement, pipelines
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
from jobengine.store.jobs import insert_run
from jobengine.store.schema import JOBS, RUNS, Run, utcnow
from jobengine.store.users import Actor, CompanyRef

__all__ = ["send_run", "send_runs", "submit", "submit_many"]

logger = logging.getLogger(__name__)


_UNMARK_SENT = HotStatement(
    update(RUNS).where(RUNS.c.id == bindparam("run")).values(dispatched_at=None)
)
_MARK_SENT = HotStatement(
    update(RUNS)
    .where(RUNS.c.id == bindparam("run"), RUNS.c.dispatched_at.is_(None))
    .values(dispatched_at=bindparam("now"))
)


_SET_HANDLE = HotStatement(
    update(JOBS).where(JOBS.c.id == bindparam("job")).values(handle=bindparam("h"))
)


def _job_values(
    req: SubmitJobRequest,
    who: Actor,
    settings: Settings,
    timing: Timing,
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
        run_as = user_of(conn, req.user_handle, company, "userHandle")
        who = Actor(company.id, company.handle, user_of(conn, user, company, "user"), run_as)
    else:
        who = actor_of(req, actor)
        read = first_read(conn, name=req.job_name, handles=handles if few else [],
                          company_id=who.company_id)  # fmt: skip
        if read.company is None:  # deleted since the caller resolved it
            raise InvalidCompany(f"unknown company {req.company_handle!r}", field="companyHandle")
    reads = SubmitReads(conn, who)
    if few:
        reads.known(handles, read.assets)
    check_request(reads, kind, job)
    timing = timing_of(req, settings, now)
    taken = duplicate or holds(conn, read.holder)
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
            job_id = int(JOB_INSERT.scalar(conn, values))
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
        if actor is None and pipelines(conn):  # PostgreSQL: the reads pipelined, BEGIN too
            with transaction(conn, pipelined=True):
                return record_pipelined(conn, runtime, reqs, user, duplicate=duplicate,
                                         sending=sending, client=client)  # fmt: skip
        with transaction(conn):
            who = actors(conn, reqs, user, actor)
            return record_many(conn, runtime, reqs, who, duplicate=duplicate, sending=sending,
                                client=client)  # fmt: skip

    for duplicate in (False, True):
        try:
            # run again if its connection died before the commit (PostgreSQL restarted)
            work = functools.partial(record, duplicate=duplicate)
            # on PostgreSQL the connection commits each statement: one request's commit alone
            # (see _record), a batch's in the transaction it opens (see intake.transaction)
            recorded = runtime.store.transact(work, autocommit=True)
            break
        except IntegrityError:  # another submit took the same live name meanwhile
            if duplicate:
                raise
    if sending:
        send_runs(runtime, [out for _, out in recorded if out is not None], marked=True)
    return [handle for handle, _ in recorded]


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
