"""Creating runs and finding jobs by handle."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.orm import Session

from jobengine.errors import IllegalCompany, InvalidParameter
from jobengine.handles import company_segment, parse_job_handle, run_name
from jobengine.store.schema import RUNS, Company, Job, Run, utcnow

__all__ = ["create_run", "find_job", "find_runs", "fire_key"]


def fire_key(kind: str, when: datetime) -> str:
    """The run-once key of a timed fire: ``at:``/``cron:`` and the instant in UTC."""
    return f"{kind}:{when.astimezone(UTC).isoformat()}"


_SAME_SECOND = select(func.count()).where(
    Run.company_id == bindparam("company"),
    Run.run_name >= bindparam("low"),
    Run.run_name < bindparam("high"),
)
_RUN_INSERT = insert(RUNS).returning(RUNS.c.id)


def create_run(
    session: Session,
    job: Job,
    fire_key: str,
    *,
    local_now: datetime,
    eta: datetime | None = None,
    new_job: bool = False,
) -> Run | None:
    """Add a queued run of ``job`` for ``fire_key``; None if that fire already has a run.

    ``(job, fire_key)`` is unique: this is the run-once guard of scheduled fires, so two beats
    (or a beat and executeJob) can never start the same fire twice.
    """
    if not new_job:  # a job created in this transaction has no runs yet
        taken = select(Run.id).where(Run.job_id == job.id, Run.fire_key == fire_key)
        if session.scalar(taken) is not None:
            return None
    name = run_name(job.name, local_now)
    # Runs of the same name started in the same second take suffixes -2, -3...: count them in
    # one indexed range scan instead of probing names one by one.
    bounds = {"company": job.company_id, "low": name, "high": name + "\x7f"}
    same_second = session.scalar(_SAME_SECOND, bounds)
    # A rare clash (a job literally named like another's run) fails the unique constraint and
    # the caller's transaction is retried.
    values = {
        "job_id": job.id,
        "company_id": job.company_id,
        "run_name": run_name(job.name, local_now, int(same_second or 0) + 1),
        "fire_key": fire_key,
        "task_id": str(uuid.uuid4()),
        "state": "Queued",
        "eta": eta,
        "created_at": utcnow(),
    }
    # Core INSERT: the ORM unit of work costs ten times the statement on this hot path.
    run_id = session.connection().execute(_RUN_INSERT, values).scalar_one()
    return Run(id=run_id, **values)


def find_job(session: Session, company: Company, handle: str) -> tuple[Job, Run | None]:
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
