"""What the read operations (getActiveJobs, getScheduledJobs, getJobLogs, getJobLogDetails,
getAssetJobLogs) ask of the store: each function is one question, named for its answer, read in
the caller's session. The IPS names, defaults and faults stay in :mod:`jobengine.operations`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Select, case, func, or_, select
from sqlalchemy.orm import Session, aliased

from jobengine.store.schema import Company, Job, LogDetail, Run, RunItem, User
from jobengine.store.states import FIRING_TRIGGERS, LIVE_TRIGGERS, ItemState, RunState

__all__ = [
    "JOB_LOG_ORDER",
    "RunFilter",
    "asset_log_rows",
    "item_state_counts",
    "job_log_runs",
    "log_detail_page",
    "pending_items",
    "runs_with_jobs",
    "scheduled_jobs",
    "submitter_email",
]

RunRow = tuple[Run, Job, Company]

# What job logs can be ordered by (getJobLogs sortBy maps its names onto these).
JOB_LOG_ORDER: dict[str, Any] = {
    "run_name": Run.run_name,
    "kind": Job.kind,
    "started_at": Run.started_at,
    "company_name": Company.name,
    "submitter_handle": User.handle,
    "submitter_email": User.email,
    "error_count": Run.error_count,
    "warning_count": Run.warning_count,
    "success_count": Run.success_count,
}


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs: of a company, of one job or one run, of jobs with one name (None: any)."""

    company_id: int | None = None
    job_id: int | None = None
    run_id: int | None = None
    original_name: str | None = None


def _runs(where: RunFilter) -> Select[Run, Job, Company]:
    query = select(Run, Job, Company).join(Job, Job.id == Run.job_id)
    query = query.join(Company, Company.id == Run.company_id)
    query = query.where(Run.state != RunState.STAGED)  # a fire written ahead: not a run yet
    if where.company_id is not None:
        query = query.where(Run.company_id == where.company_id)
    if where.run_id is not None:
        query = query.where(Run.id == where.run_id)
    if where.job_id is not None:
        query = query.where(Run.job_id == where.job_id)
    if where.original_name:
        query = query.where(Job.name == where.original_name)
    return query


def runs_with_jobs(
    session: Session, where: RunFilter, states: Sequence[RunState] | None = None
) -> list[RunRow]:
    """The runs ``where`` selects (in ``states``, if given), oldest first, each with its job and
    company.

    Sorted here, not by the database: they are few (a company's runs in progress, a job's
    runs), and SQLite's planner, asked for them in id order, would rather read every run in
    that order than sort the few that ``ix_runs_company_state`` finds."""
    query = _runs(where)
    if states is not None:
        query = query.where(Run.state.in_(states))
    rows = [(run, job, company) for run, job, company in session.execute(query)]
    return sorted(rows, key=lambda row: row[0].id)


def job_log_runs(
    session: Session,
    where: RunFilter,
    *,
    submitter: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    order: str = "started_at",
    ascending: bool = False,
    limit: int | None = None,
) -> list[RunRow]:
    """Runs for job logs: of jobs submitted by ``submitter`` (handle or e-mail), created within
    [since, until], ordered by :data:`JOB_LOG_ORDER` ``order`` (ties: newest run first), at most
    ``limit``."""
    query = _runs(where).outerjoin(User, User.id == Job.submit_user_id)
    if submitter:
        by = aliased(User)
        query = query.join(by, by.id == Job.submit_user_id).where(
            (by.handle == submitter) | (by.email == submitter)
        )
    if since is not None:
        query = query.where(Run.created_at >= since)
    if until is not None:
        query = query.where(Run.created_at <= until)
    column = JOB_LOG_ORDER[order]
    query = query.order_by(column.asc() if ascending else column.desc(), Run.id.desc())
    return [(run, job, company) for run, job, company in session.execute(query.limit(limit))]


def scheduled_jobs(
    session: Session,
    company_id: int | None = None,
    job_id: int | None = None,
    original_name: str | None = None,
) -> list[tuple[Job, Company, datetime | None]]:
    """Jobs not deleted whose trigger may still fire (a schedule, or a time not reached), next
    fire first, each with its company and the time of its earliest fire staged ahead (None
    when none is: :mod:`jobengine.store.staging`), which is its next fire while its trigger
    may fire it, although the job's own next fire time has moved on to the one after."""
    staged = (
        select(Run.job_id, func.min(Run.eta).label("eta"))
        .where(Run.state == RunState.STAGED)
        .group_by(Run.job_id)
        .subquery()
    )
    firing = Job.trigger_state.in_(FIRING_TRIGGERS)
    staged_at = case((firing, staged.c.eta), else_=None)
    query = (
        select(Job, Company, staged_at)
        .join(Company, Company.id == Job.company_id)
        .outerjoin(staged, staged.c.job_id == Job.id)
        .where(
            Job.deleted_at.is_(None),
            or_(
                Job.trigger_state.in_(LIVE_TRIGGERS)
                & (Job.next_fire_at.is_not(None) | Job.exec_schedule.is_not(None)),
                firing & staged.c.eta.is_not(None),  # its last fire, staged: Complete already
            ),
        )
    )
    if company_id is not None:
        query = query.where(Job.company_id == company_id)
    if job_id is not None:
        query = query.where(Job.id == job_id)
    if original_name:
        query = query.where(Job.name == original_name)
    rows = session.execute(query.order_by(func.coalesce(staged_at, Job.next_fire_at), Job.id))
    return [(job, company, _aware(at)) for job, company, at in rows]


def _aware(at: datetime | None) -> datetime | None:
    """A time read through an expression (naive UTC on SQLite), as the columns give it."""
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def item_state_counts(session: Session, run_id: int) -> dict[str, int]:
    """How many of the run's items are in each state (states with none are left out)."""
    rows = session.execute(
        select(RunItem.state, func.count()).where(RunItem.run_id == run_id).group_by(RunItem.state)
    )
    return {state: int(n) for state, n in rows}


def pending_items(session: Session, run_id: int) -> list[tuple[int, str]]:
    """The (seq, key) of the run's items still pending."""
    rows = session.execute(
        select(RunItem.seq, RunItem.key).where(
            RunItem.run_id == run_id, RunItem.state == ItemState.PENDING
        )
    )
    return [(int(seq), str(key)) for seq, key in rows]


def submitter_email(session: Session, job: Job) -> str:
    """The e-mail of the user who submitted the job (else it runs as), "" if none.

    Remembered for the session (one read transaction): a listing of a hundred runs of one
    submitter reads the user once, not once a row (the session's identity map holds a user
    only while something refers to it)."""
    user_id = job.submit_user_id or job.run_as_user_id
    if not user_id:
        return ""
    known: dict[int, str] = session.info.setdefault("submitter_emails", {})
    if user_id not in known:
        user = session.get(User, user_id)
        known[user_id] = user.email if user else ""
    return known[user_id]


def log_detail_page(
    session: Session,
    run_id: int,
    *,
    log_types: Sequence[str] = (),
    order: Literal["time", "log_type"] = "time",
    ascending: bool = True,
    page: int = 1,
    per_page: int = 1000,
) -> tuple[int, list[LogDetail]]:
    """How many log rows the run has (of ``log_types``, if any), and page ``page`` of them."""
    rows = select(LogDetail).where(LogDetail.run_id == run_id)
    if log_types:
        rows = rows.where(LogDetail.log_type.in_(list(log_types)))
    total = session.scalar(select(func.count()).select_from(rows.subquery())) or 0
    column = LogDetail.id if order == "time" else LogDetail.log_type
    ordered = column.asc() if ascending else column.desc()
    found = session.scalars(
        rows.order_by(ordered, LogDetail.id).offset((page - 1) * per_page).limit(per_page)
    )
    return int(total), list(found)


def asset_log_rows(
    session: Session, company_id: int, asset_handle: str
) -> list[tuple[LogDetail, Run, Job]]:
    """Every log row of the company about one asset, oldest first, with its run and job."""
    rows = session.execute(
        select(LogDetail, Run, Job)
        .join(Run, Run.id == LogDetail.run_id)
        .join(Job, Job.id == Run.job_id)
        .where(LogDetail.company_id == company_id, LogDetail.asset_handle == asset_handle)
        .order_by(LogDetail.id)
    )
    return [(detail, run, job) for detail, run, job in rows]
