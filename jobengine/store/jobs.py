"""Creating runs and finding jobs by handle."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from jobengine.errors import IllegalCompany, InvalidParameter
from jobengine.handles import company_segment, parse_job_handle, run_name
from jobengine.store.schema import Company, Job, Run, utcnow

__all__ = ["create_run", "find_job", "find_runs", "fire_key"]


def fire_key(kind: str, when: datetime) -> str:
    """The run-once key of a timed fire: ``at:``/``cron:`` and the instant in UTC."""
    return f"{kind}:{when.astimezone(UTC).isoformat()}"


def create_run(
    session: Session,
    job: Job,
    fire_key: str,
    *,
    local_now: datetime,
    eta: datetime | None = None,
) -> Run | None:
    """Add a queued run of ``job`` for ``fire_key``; None if that fire already has a run.

    ``(job, fire_key)`` is unique: this is the run-once guard of scheduled fires, so two beats
    (or a beat and executeJob) can never start the same fire twice.
    """
    exists = session.scalar(select(Run.id).where(Run.job_id == job.id, Run.fire_key == fire_key))
    if exists is not None:
        return None
    attempt = 1
    name = run_name(job.name, local_now)
    while session.scalar(
        select(Run.id).where(Run.company_id == job.company_id, Run.run_name == name)
    ):
        attempt += 1
        name = run_name(job.name, local_now, attempt)
    run = Run(
        job_id=job.id,
        company_id=job.company_id,
        run_name=name,
        fire_key=fire_key,
        task_id=str(uuid.uuid4()),
        state="Queued",
        eta=eta,
        created_at=utcnow(),
    )
    session.add(run)
    session.flush()
    return run


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
