"""The read operations: getActiveJobs, getScheduledJobs, getJobLogs, getJobLogDetails,
getAssetJobLogs."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy.orm import Session

from jobengine.assets.catalog import resolve_company
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
from jobengine.store.reads import (
    RunFilter,
    asset_log_rows,
    item_state_counts,
    job_log_runs,
    log_detail_page,
    runs_with_jobs,
    scheduled_jobs,
    submitter_email,
)
from jobengine.store.schema import Company, Job, LogDetail, Run
from jobengine.store.states import FINAL_ITEMS, STARTED_RUNS, ItemState, RunState, TriggerState
from jobengine.store.users import CompanyRef

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
# getJobLogs sortBy: the order of jobengine.store.reads.JOB_LOG_ORDER each name means.
SORT_FIELDS = {
    "JobName": "run_name",
    "LogType": "kind",
    "StartDate": "started_at",
    "CompanyName": "company_name",
    "UserId": "submitter_handle",
    "Email": "submitter_email",
    "FileErrorCount": "error_count",
    "FileWarningCount": "warning_count",
    "FileSuccessCount": "success_count",
}


def _type_of(job: Job) -> str:
    kind = KINDS.get(job.kind)
    return kind.job_type if kind else job.kind


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
    counts = item_state_counts(session, run.id)
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
    company_handle: str | CompanyRef | None = None,
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
        where = _runs_filter(session, company_handle, job_handle, original_name)
        rows = runs_with_jobs(session, where, states)
        return [
            ActiveJob(
                company_handle=company.handle,
                job_handle=job.handle,
                name=run.run_name,
                original_name=job.name,
                type=_type_of(job),
                state=_ACTIVE_STATE[run.state],
                submit_user_email=submitter_email(session, job),
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


def _runs_filter(
    session: Session,
    company_handle: str | CompanyRef | None,
    job_handle: str | None,
    original_name: str | None,
) -> RunFilter:
    """The runs the handles name: InvalidCompany, or a bad jobHandle's fault, if they name none."""
    if company_handle is None:
        if job_handle:
            raise MissingParameter(
                "companyHandle is required with jobHandle", field="companyHandle"
            )
        return RunFilter(original_name=original_name)
    company = resolve_company(session, company_handle)
    if not job_handle:
        return RunFilter(company.id, original_name=original_name)
    job, run = find_job(session, company, job_handle)
    if run is not None:
        return RunFilter(company.id, run_id=run.id, original_name=original_name)
    return RunFilter(company.id, job_id=job.id, original_name=original_name)


@caller_faults
def get_scheduled_jobs(
    company_handle: str | CompanyRef | None = None,
    *,
    job_handle: str | None = None,
    original_name: str | None = None,
) -> list[ScheduledJob]:
    """Jobs with a trigger: recurring schedules and one-shot jobs not yet started."""
    runtime = get_runtime()
    zone = runtime.settings.zone
    with runtime.store.read() as session:
        company_id = job_id = None
        if company_handle is not None:
            company = resolve_company(session, company_handle)
            company_id = company.id
            if job_handle:
                job_id = find_job(session, company, job_handle)[0].id
        rows = scheduled_jobs(session, company_id, job_id, original_name)
        return [
            _scheduled(session, job, company, staged_at, zone) for job, company, staged_at in rows
        ]


def _scheduled(
    session: Session, job: Job, company: Company, staged_at: datetime | None, zone: tzinfo
) -> ScheduledJob:
    """A job of getScheduledJobs. A fire staged ahead of its time is its next one until it
    fires: the job's own next fire time and trigger have moved on already (to the fire after,
    or Complete after the schedule's last), as they do at a fire."""
    next_fire = staged_at or job.next_fire_at
    trigger_state = TriggerState.NORMAL if staged_at is not None else job.trigger_state
    return ScheduledJob(
        company_handle=company.handle,
        job_handle=job.handle,
        name=job.name,
        original_name=job.name,
        type=_type_of(job),
        submit_user_email=submitter_email(session, job),
        locale=job.locale,
        description=job.description,
        exec_schedule=job.exec_schedule,
        next_fire_time=next_fire.astimezone(zone) if next_fire else None,
        time_zone=(next_fire.astimezone(zone).tzname() or job.time_zone)
        if next_fire
        else job.time_zone,
        time_zone_id=job.time_zone,
        trigger_state=trigger_state,
        job=_echo(job),
    )


def _job_log(session: Session, run: Run, job: Job, company: Company) -> JobLog:
    kind = KINDS.get(job.kind)
    payload: Any = job.payload.get(job.kind, {})
    sub_type = _SUB_TYPE.get(str(payload.get("publishType", "")), "") if payload else ""
    return JobLog(
        company_handle=company.handle,
        job_handle=run_handle(company.handle, run.run_name),
        job_name=run.run_name,
        original_job_name=job.name,
        submit_user_email=submitter_email(session, job),
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
    company_handle: str | CompanyRef | None = None,
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
        rows = job_log_runs(
            session,
            _runs_filter(session, company_handle, None, None),
            submitter=user_handle,
            since=start,
            until=end,
            order=SORT_FIELDS[sort_by],
            ascending=sort_direction == "Ascending",
            limit=num_rows,
        )
        return [_job_log(session, r, j, c) for r, j, c in rows]


@caller_faults
def get_job_log_details(
    company_handle: str | CompanyRef,
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
        where = _runs_filter(session, company_handle, job_handle, original_name)
        logs = []
        for run, job, company in runs_with_jobs(session, where):
            total, page = log_detail_page(
                session,
                run.id,
                log_types=log_types,
                order="time" if sort_by == "Date" else "log_type",
                ascending=sort_direction == "Ascending",
                page=results_page,
                per_page=records_per_page,
            )
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
    company_handle: str | CompanyRef, asset_handle: str, *, locale: str | None = None
) -> list[AssetJobLog]:
    """Every log row about one asset, across jobs, oldest first.

    ``logMessage`` is in ``locale`` (the operation locale), else in each job's own ``locale``,
    else in the server default (see :func:`get_job_log_details`).
    """
    with get_runtime().store.read() as session:
        company = resolve_company(session, company_handle)
        rows = asset_log_rows(session, company.id, asset_handle)
        return [
            AssetJobLog(
                run_handle(company.handle, run.run_name),
                run.run_name,
                _message(d, locale or job.locale),
                d.log_type,
                submitter_email(session, job),
                d.created_at,
            )
            for d, run, job in rows
        ]
