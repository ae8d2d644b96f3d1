"""The read operations: getActiveJobs, getScheduledJobs, getJobLogs, getJobLogDetails,
getAssetJobLogs."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, aliased

from jobengine.catalog import company_by_handle
from jobengine.errors import InvalidParameter, MissingParameter, caller_faults
from jobengine.handles import run_handle
from jobengine.i18n import log_message, progress_message
from jobengine.kinds import KINDS
from jobengine.model import ActiveJobState, TaskState
from jobengine.operations.shapes import (
    ActiveJob,
    AssetJobLog,
    JobLog,
    JobLogDetail,
    ScheduledJob,
    TaskProgress,
)
from jobengine.runtime import get_runtime
from jobengine.store.jobs import find_job
from jobengine.store.schema import Company, Job, LogDetail, Run, RunItem, User
from jobengine.store.states import FINAL_ITEMS, LIVE_TRIGGERS, STARTED_RUNS, ItemState, RunState

__all__ = [
    "get_active_jobs",
    "get_asset_job_logs",
    "get_job_log_details",
    "get_job_logs",
    "get_scheduled_jobs",
]

MAX_XSD_INT = 2**31 - 1  # ActiveJob.totalSize is an xsd:int
# A run's state as ActiveJob/state and TaskProgress/taskState show it.
_ACTIVE_STATE: dict[str, ActiveJobState] = {
    RunState.QUEUED: ActiveJobState.WAITING_COORDINATOR,
    RunState.RUNNING: ActiveJobState.RUNNING,
    RunState.STOPPING: ActiveJobState.STOPPING,
}
_TASK_STATE: dict[str, TaskState] = {
    RunState.QUEUED: TaskState.NEW,
    RunState.RUNNING: TaskState.PROCESSING,
    RunState.STOPPING: TaskState.STOPPING,
}
_SUB_TYPE = {"Full": "full", "Incremental": "increment", "FullWithSearch": "fullwithsearch"}
SORT_FIELDS = {
    "JobName": Run.run_name,
    "LogType": Job.kind,
    "StartDate": Run.started_at,
    "CompanyName": Company.name,
    "UserId": User.handle,
    "Email": User.email,
    "FileErrorCount": Run.error_count,
    "FileWarningCount": Run.warning_count,
    "FileSuccessCount": Run.success_count,
}


def _type_of(job: Job) -> str:
    kind = KINDS.get(job.kind)
    return kind.job_type if kind else job.kind


def _email(session: Session, job: Job) -> str:
    user_id = job.submit_user_id or job.run_as_user_id
    user = session.get(User, user_id) if user_id else None
    return user.email if user else ""


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise InvalidParameter(f"{name} must carry a time zone", field=name)
    return value


def _progress_message(run: Run, language: str | None) -> str:
    """The run's progressMessage in ``language``: rendered from its counters once its items are
    recorded (before they are all sent: a reader sees the same counts as the store's)."""
    if run.planned or run.total_items:
        return progress_message(run.finished_items, run.total_items, language)
    return run.progress_message


def _started(run: Run) -> datetime:
    """ActiveJob.startDate (required in IPS): when the run started, or while it waits, when
    it was queued."""
    return run.started_at or run.created_at


def _progressed(run: Run) -> datetime:
    """lastProgressUpdate (required in IPS): the last progress made, else the start (or queue)
    time."""
    return run.last_progress_update or _started(run)


def _task_progress(session: Session, run: Run, job: Job, language: str | None) -> TaskProgress:
    rows = session.execute(
        select(RunItem.state, func.count()).where(RunItem.run_id == run.id).group_by(RunItem.state)
    ).all()
    counts = {state: int(n) for state, n in rows}
    done = sum(counts.get(s, 0) for s in FINAL_ITEMS)
    return TaskProgress(
        task_type=_type_of(job),
        task_state=_TASK_STATE.get(run.state, TaskState.UNKNOWN),
        num_processed=done,
        num_processing=counts.get(ItemState.RUNNING, 0),
        num_pending=counts.get(ItemState.PENDING, 0),
        progress=run.progress / 100,
        progress_message=_progress_message(run, language),
        last_progress_update=_progressed(run),
    )


@caller_faults
def get_active_jobs(
    company_handle: str | None = None,
    *,
    job_handle: str | None = None,
    original_name: str | None = None,
    include_waiting_jobs: bool = False,
    locale: str | None = None,
) -> list[ActiveJob]:
    """Runs in progress (and, with ``include_waiting_jobs``, runs queued for a worker).

    ``progressMessage`` is in ``locale`` (the operation locale), else in the job's own
    ``locale``, else in the server default, as for the log messages.
    """
    states = STARTED_RUNS + ((RunState.QUEUED,) if include_waiting_jobs else ())
    with get_runtime().store.read() as session:
        query = _runs_query(session, company_handle, job_handle, original_name)
        rows = session.execute(query.where(Run.state.in_(states)).order_by(Run.id)).all()
        return [
            ActiveJob(
                company_handle=company.handle,
                job_handle=job.handle,
                name=run.run_name,
                original_name=job.name,
                type=_type_of(job),
                state=_ACTIVE_STATE[run.state],
                submit_user_email=_email(session, job),
                locale=job.locale,
                description=job.description,
                server_name=socket.gethostname(),
                start_date=_started(run),
                trigger_time=run.eta or run.created_at,
                total_size=min(run.total_size, MAX_XSD_INT),
                progress=run.progress,
                progress_message=_progress_message(run, locale or job.locale),
                last_progress_update=_progressed(run),
                task_progress=(_task_progress(session, run, job, locale or job.locale),),
                job=_echo(job),
            )
            for run, job, company in rows
        ]


def _echo(job: Job) -> dict[str, Any]:
    payload: Any = job.payload.get(job.kind, {})
    return {job.kind: payload}


def _runs_query(
    session: Session,
    company_handle: str | None,
    job_handle: str | None,
    original_name: str | None,
) -> Select[Run, Job, Company]:
    query = select(Run, Job, Company).join(Job, Job.id == Run.job_id)
    query = query.join(Company, Company.id == Run.company_id)
    if company_handle is not None:
        company = company_by_handle(session, company_handle)
        query = query.where(Run.company_id == company.id)
        if job_handle:
            job, run = find_job(session, company, job_handle)
            query = query.where(Run.id == run.id) if run else query.where(Run.job_id == job.id)
    elif job_handle:
        raise MissingParameter("companyHandle is required with jobHandle", field="companyHandle")
    if original_name:
        query = query.where(Job.name == original_name)
    return query


@caller_faults
def get_scheduled_jobs(
    company_handle: str | None = None,
    *,
    job_handle: str | None = None,
    original_name: str | None = None,
) -> list[ScheduledJob]:
    """Jobs with a trigger: recurring schedules and one-shot jobs not yet started."""
    runtime = get_runtime()
    zone = runtime.settings.zone
    with runtime.store.read() as session:
        query = (
            select(Job, Company)
            .join(Company, Company.id == Job.company_id)
            .where(
                Job.deleted_at.is_(None),
                Job.trigger_state.in_(LIVE_TRIGGERS),
                Job.next_fire_at.is_not(None) | Job.exec_schedule.is_not(None),
            )
        )
        if company_handle is not None:
            company = company_by_handle(session, company_handle)
            query = query.where(Job.company_id == company.id)
            if job_handle:
                query = query.where(Job.id == find_job(session, company, job_handle)[0].id)
        if original_name:
            query = query.where(Job.name == original_name)
        rows = session.execute(query.order_by(Job.next_fire_at, Job.id)).all()
        return [
            ScheduledJob(
                company_handle=company.handle,
                job_handle=job.handle,
                name=job.name,
                original_name=job.name,
                type=_type_of(job),
                submit_user_email=_email(session, job),
                locale=job.locale,
                description=job.description,
                exec_schedule=job.exec_schedule,
                next_fire_time=job.next_fire_at.astimezone(zone) if job.next_fire_at else None,
                time_zone=(job.next_fire_at.astimezone(zone).tzname() or job.time_zone)
                if job.next_fire_at
                else job.time_zone,
                time_zone_id=job.time_zone,
                trigger_state=job.trigger_state,
                job=_echo(job),
            )
            for job, company in rows
        ]


def _job_log(session: Session, run: Run, job: Job, company: Company) -> JobLog:
    kind = KINDS.get(job.kind)
    payload: Any = job.payload.get(job.kind, {})
    sub_type = _SUB_TYPE.get(str(payload.get("publishType", "")), "") if payload else ""
    return JobLog(
        company_handle=company.handle,
        job_handle=run_handle(company.handle, run.run_name),
        job_name=run.run_name,
        original_job_name=job.name,
        submit_user_email=_email(session, job),
        log_type=kind.begin_log if kind else job.kind,
        job_sub_type=sub_type,
        start_date=run.started_at,
        end_date=run.ended_at,
        description="",
        file_success_count=run.success_count,
        file_error_count=run.error_count,
        file_warning_count=run.warning_count,
        file_duplicate_count=run.duplicate_count,
        file_update_count=run.update_count,
        total_file_count=run.total_items,
        transfer_success_count=0,
        transfer_error_count=0,
        transfer_warning_count=0,
        fatal_error=run.fatal_error,
        state=run.state,
        output=dict(run.output),
    )


@caller_faults
def get_job_logs(
    company_handle: str | None = None,
    *,
    user_handle: str | None = None,
    sort_by: str = "StartDate",
    sort_direction: str = "Descending",
    start_date: datetime | None = None,
    end_date: datetime | None = None,
    num_rows: int | None = None,
) -> list[JobLog]:
    """One summary row per run, filtered and sorted as IPS does."""
    if sort_by not in SORT_FIELDS:
        raise InvalidParameter(
            f"sortBy {sort_by!r} is not one of {', '.join(SORT_FIELDS)}", field="sortBy"
        )
    if sort_direction not in ("Ascending", "Descending"):
        raise InvalidParameter(
            f"sortDirection {sort_direction!r} is not Ascending or Descending",
            field="sortDirection",
        )
    if num_rows is not None and num_rows < 1:
        raise InvalidParameter("numRows must be positive", field="numRows")
    start, end = _aware(start_date, "startDate"), _aware(end_date, "endDate")
    with get_runtime().store.read() as session:
        submitter = aliased(User)
        query = _runs_query(session, company_handle, None, None)
        query = query.outerjoin(User, User.id == Job.submit_user_id)
        if user_handle:
            query = query.join(submitter, submitter.id == Job.submit_user_id).where(
                (submitter.handle == user_handle) | (submitter.email == user_handle)
            )
        if start is not None:
            query = query.where(Run.created_at >= start)
        if end is not None:
            query = query.where(Run.created_at <= end)
        column = SORT_FIELDS[sort_by]
        order = column.asc() if sort_direction == "Ascending" else column.desc()
        query = query.order_by(order, Run.id.desc()).limit(num_rows)
        return [_job_log(session, r, j, c) for r, j, c in session.execute(query).all()]


@caller_faults
def get_job_log_details(
    company_handle: str,
    *,
    job_handle: str | None = None,
    original_name: str | None = None,
    log_types: Sequence[str] = (),
    records_per_page: int = 1000,
    results_page: int = 1,
    sort_by: str = "Date",
    sort_direction: str = "Ascending",
    locale: str | None = None,
) -> list[JobLog]:
    """The job logs of a job (or run, or original name), each with one page of detail rows.

    ``locale`` is the operation locale (``ll`` or ``ll-CC``: ``authHeader/locale``, else
    ``Accept-Language``, see :func:`jobengine.i18n.operation_locale`): each ``logMessage`` is
    in it, else in the job's own ``locale`` (submitJob.locale), else in the server default.
    """
    if not job_handle and not original_name:
        raise MissingParameter("jobHandle or originalName is required", field="jobHandle")
    if not 1 <= records_per_page <= 1000:
        raise InvalidParameter("recordsPerPage must be 1 to 1000", field="recordsPerPage")
    if results_page < 1:
        raise InvalidParameter("resultsPage must be 1 or more", field="resultsPage")
    if sort_by not in ("Date", "LogType"):
        raise InvalidParameter(f"sortBy {sort_by!r} is not Date or LogType", field="sortBy")
    if sort_direction not in ("Ascending", "Descending"):
        raise InvalidParameter(
            f"sortDirection {sort_direction!r} is not valid", field="sortDirection"
        )
    with get_runtime().store.read() as session:
        query = _runs_query(session, company_handle, job_handle, original_name)
        logs = []
        for run, job, company in session.execute(query.order_by(Run.id)).all():
            rows = select(LogDetail).where(LogDetail.run_id == run.id)
            if log_types:
                rows = rows.where(LogDetail.log_type.in_(list(log_types)))
            total = session.scalar(select(func.count()).select_from(rows.subquery())) or 0
            col = LogDetail.id if sort_by == "Date" else LogDetail.log_type
            ordered = col.asc() if sort_direction == "Ascending" else col.desc()
            page = session.scalars(
                rows.order_by(ordered, LogDetail.id)
                .offset((results_page - 1) * records_per_page)
                .limit(records_per_page)
            ).all()
            language = locale or job.locale
            details = tuple(
                JobLogDetail(
                    _message(d, language),
                    d.log_type,
                    d.created_at,
                    d.asset_name,
                    d.asset_type,
                    d.asset_handle,
                )
                for d in page
            )
            base = _job_log(session, run, job, company)
            logs.append(_with_details(base, total, details))
        return logs


def _with_details(log: JobLog, total: int, details: tuple[JobLogDetail, ...]) -> JobLog:
    return replace(log, detail_total_rows=total, details=details)


def _message(row: LogDetail, locale: str | None) -> str:
    return log_message(row.message, row.message_id, row.message_args, locale)


@caller_faults
def get_asset_job_logs(
    company_handle: str, asset_handle: str, *, locale: str | None = None
) -> list[AssetJobLog]:
    """Every log row about one asset, across jobs, oldest first.

    ``logMessage`` is in ``locale`` (the operation locale), else in each job's own ``locale``,
    else in the server default (see :func:`get_job_log_details`).
    """
    with get_runtime().store.read() as session:
        company = company_by_handle(session, company_handle)
        rows = session.execute(
            select(LogDetail, Run, Job)
            .join(Run, Run.id == LogDetail.run_id)
            .join(Job, Job.id == Run.job_id)
            .where(LogDetail.company_id == company.id, LogDetail.asset_handle == asset_handle)
            .order_by(LogDetail.id)
        ).all()
        return [
            AssetJobLog(
                run_handle(company.handle, run.run_name),
                run.run_name,
                _message(d, locale or job.locale),
                d.log_type,
                _email(session, job),
                d.created_at,
            )
            for d, run, job in rows
        ]
