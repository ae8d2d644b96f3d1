"""Creating runs and finding jobs by handle."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select
from sqlalchemy.orm import Session

from jobengine.errors import IllegalCompany, InvalidParameter
from jobengine.handles import company_segment, parse_job_handle, run_name
from jobengine.store.hot import HotStatement
from jobengine.store.schema import RUNS, Company, Job, Run, utcnow

__all__ = ["create_run", "find_job", "find_runs", "fire_key", "insert_run"]


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
        "company_id": company_id,
        "run_name": run_name(job_name, local_now, int(same_second or 0) + 1),
        "fire_key": fire_key,
        "task_id": str(uuid.uuid4()),
        "state": "Queued",
        "eta": eta,
        "dispatched_at": dispatched_at,
        "created_at": utcnow(),
    }
    values["id"] = int(_RUN_INSERT.scalar(conn, values))
    return values


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
