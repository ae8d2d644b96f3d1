"""submit(): validate, write the durable job record, send its first message, return the handle.

An accepted job is never lost: the job and its run are committed before anything is sent. If the
broker is down, the run stays unsent in the store (the outbox) and the scheduler's relay sends
it when the broker is back; the caller still gets its handle.

When it runs: no time -> now; ``execTime`` within the ETA horizon -> a Celery ETA message now;
``execTime`` further ahead -> held in the store until the scheduler brings it inside the horizon;
``execSchedule`` -> the scheduler fires it on its Quartz cron in the server's time zone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jobengine import dispatch
from jobengine.catalog import company_by_handle, user_by_handle
from jobengine.cron import parse as parse_cron
from jobengine.errors import IllegalRequestUser, InvalidParameter, InvalidRequestUser, IpsFault
from jobengine.handles import job_handle
from jobengine.kinds import kind_for
from jobengine.model import SubmitJobRequest, parse_submit_job, to_ips_dict
from jobengine.runner import labels
from jobengine.runtime import Runtime, get_runtime
from jobengine.settings import Settings
from jobengine.store.jobs import create_run, fire_key
from jobengine.store.runs import ACTIVE_STATES
from jobengine.store.schema import JOBS, RUNS, Company, Job, Membership, Run, User, utcnow

__all__ = ["send_run", "send_runs", "submit", "submit_many"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Timing:
    trigger_state: str
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
        return _Timing("Normal", nxt, False, None, "")
    if req.exec_time is not None:
        at = req.exec_time
        near = at <= now + timedelta(seconds=settings.eta_horizon)
        return _Timing("Normal", at, near, at if at > now else None, fire_key("at", at))
    return _Timing("None", None, True, None, "now")


def _user(session: Session, handle: str | None, company: Company, field: str) -> User | None:
    if not handle:
        return None
    user = user_by_handle(session, handle)
    if user is None:
        raise InvalidRequestUser(f"unknown user {handle!r}", field=field)
    if session.get(Membership, (user.id, company.id)) is None:
        raise IllegalRequestUser(
            f"user {handle!r} is not a member of company {company.handle!r}", field=field
        )
    return user


_LIVE_HOLDER = select(Job).where(
    Job.company_id == bindparam("company"), Job.live_key == bindparam("name")
)
_JOB_INSERT = insert(JOBS).returning(JOBS.c.id)
_MARK_SENT = (
    update(RUNS)
    .where(RUNS.c.id.in_(bindparam("run_ids", expanding=True)), RUNS.c.dispatched_at.is_(None))
    .values(dispatched_at=bindparam("now"))
)


def _key_taken(session: Session, company: Company, name: str) -> bool:
    """Whether a live job holds ``name``; an ended holder hands the name to the new job."""
    holder = session.scalar(_LIVE_HOLDER, {"company": company.id, "name": name})
    if holder is None:
        return False
    live = holder.trigger_state in ("Normal", "Paused", "Blocked") or session.scalar(
        select(Run.id).where(Run.job_id == holder.id, Run.state.in_(ACTIVE_STATES)).limit(1)
    )
    if live:
        return True
    holder.live_key = None
    session.flush()
    return False


def _record(
    session: Session,
    runtime: Runtime,
    req: SubmitJobRequest,
    submitter: str | None,
    duplicate: bool,
) -> tuple[Job, Run | None, Company]:
    settings = runtime.settings
    now = utcnow()
    company = company_by_handle(session, req.company_handle)
    run_as = _user(session, req.user_handle, company, "userHandle")
    caller = _user(session, submitter, company, "user")
    payload = to_ips_dict(req)
    element = req.kind.element
    kind = kind_for(element)
    kind.check(session, company, req.job)
    timing = _timing(req, settings, now)
    taken = duplicate or _key_taken(session, company, req.job_name)
    values: dict[str, Any] = dict(
        company_id=company.id,
        live_key=None if taken else req.job_name,
        handle="" if taken else job_handle(company.handle, req.job_name),
        name=req.job_name,
        kind=element,
        payload=payload,
        submit_user_id=caller.id if caller else None,
        run_as_user_id=run_as.id if run_as else None,
        locale=req.locale,
        description=req.description,
        exec_time=req.exec_time,
        exec_schedule=req.exec_schedule,
        time_zone=settings.timezone,
        trigger_state=timing.trigger_state,
        next_fire_at=timing.next_fire_at,
        fired_through=timing.next_fire_at if timing.run_now else None,
        created_at=now,
    )
    conn = session.connection()  # Core INSERT: no unit-of-work cost on the hot path
    job = Job(id=conn.execute(_JOB_INSERT, values).scalar_one(), **values)
    if taken:
        job.handle = job_handle(company.handle, req.job_name, job.id)
        conn.execute(update(Job).where(Job.id == job.id).values(handle=job.handle))
    run = None
    if timing.run_now:
        local_now = now.astimezone(settings.zone)
        run = create_run(
            session, job, timing.fire_key, local_now=local_now, eta=timing.eta, new_job=True
        )
    return job, run, company


def submit(
    request: SubmitJobRequest | dict[str, Any] | str | bytes, *, user: str | None = None
) -> str:
    """Submit a job (model, dict with IPS names, or IPS XML); returns its jobHandle.

    ``user`` is the submitting user's handle or e-mail (the caller, when known); it must be a
    member of the company. Raises an :class:`~jobengine.errors.IpsFault` for any bad request.
    """
    return submit_many([request], user=user)[0]


def submit_many(
    requests: Sequence[SubmitJobRequest | dict[str, Any] | str | bytes], *, user: str | None = None
) -> list[str]:
    """Submit several jobs in one transaction and one broker connection; returns their handles.

    All or nothing: if any request is bad, its fault is raised (the reason names its position)
    and none of the jobs is recorded.
    """
    reqs = [_parse(request, n, len(requests)) for n, request in enumerate(requests, 1)]
    runtime = get_runtime()
    for duplicate in (False, True):
        try:
            with runtime.store.write() as session:
                recorded = [_record(session, runtime, req, user, duplicate) for req in reqs]
                handles = [job.handle for job, _, _ in recorded]
                to_send = [(job.kind, run, labels(run, job, company))
                           for job, run, company in recorded if run is not None]  # fmt: skip
            break
        except IntegrityError:  # another submit took the same live name meanwhile
            if duplicate:
                raise
    send_runs(runtime, to_send)
    return handles


def _parse(request: SubmitJobRequest | dict[str, Any] | str | bytes, n: int, total: int
           ) -> SubmitJobRequest:  # fmt: skip
    try:
        return parse_submit_job(request)
    except IpsFault as fault:
        if total > 1:
            fault.reason = f"request {n} of {total}: {fault.reason}"
            fault.args = (fault.reason,)
        raise


def send_run(runtime: Runtime, element: str, run: Run, tags: dict[str, str]) -> bool:
    """Send a run's start message and mark it sent.

    Returns False when the broker is down: the run stays in the outbox for the relay.
    """
    return send_runs(runtime, [(element, run, tags)]) == 1


def send_runs(runtime: Runtime, runs: list[tuple[str, Run, dict[str, str]]]) -> int:
    """Send start messages through one producer and mark them sent; returns how many went.

    Runs the broker did not take stay in the outbox for the scheduler's relay.
    """
    sent: list[int] = []
    try:
        with dispatch.producer() as producer:
            for element, run, tags in runs:
                slug = kind_for(element).slug
                dispatch.send_start(slug, run.id, run.task_id, tags, eta=run.eta, producer=producer)
                sent.append(run.id)
    except dispatch.BrokerUnavailable:
        logger.warning("%d run(s) kept in the outbox: broker unavailable", len(runs) - len(sent))
    if sent:
        with runtime.store.write() as session:
            session.connection().execute(_MARK_SENT, {"run_ids": sent, "now": utcnow()})
    return len(sent)
