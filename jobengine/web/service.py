"""The operation table both surfaces share: each IPS operation's input model, its authorization
and the call into :mod:`jobengine`, returning an IPS tree (:mod:`jobengine.web.results`).

Every operation is authorized on its companyHandle
(:func:`jobengine.access.auth.authorize_company`), and the company so resolved is what the operation
is given (it is not looked up again). The three queries whose companyHandle is optional answer,
without one, only the caller's companies (all of them for an IpsAdmin). submitJob is authorized by
:func:`jobengine.access.auth.authorize_submit`, which resolves its company, userHandle and submitter
(always the caller) once and hands them to the submission service as an
:class:`~jobengine.store.users.Actor`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

import jobengine
from jobengine.access.auth import Caller, authorize_company, authorize_submit
from jobengine.model import SubmitJobRequest
from jobengine.runtime import get_runtime
from jobengine.store.users import CompanyRef, company_handles
from jobengine.web import results
from jobengine.web.params import (
    DeleteImageFormatParam,
    GetActiveJobsParam,
    GetAssetJobLogsParam,
    GetImageFormatsParam,
    GetJobLogDetailsParam,
    GetJobLogsParam,
    GetScheduledJobsParam,
    JobControlParam,
    SaveImageFormatParam,
)

__all__ = ["OPERATIONS", "OPERATION_CLIENT", "OPERATION_LOCALE", "Operation"]

R = TypeVar("R")
Tree = results.Tree


@dataclass(frozen=True)
class Operation:
    """One IPS operation: its input model, what it does, and the element its result is under."""

    name: str
    param: type[BaseModel]
    run: Callable[[Caller, Any], Tree]
    summary: str


def _visible(caller: Caller, asked: str | None, rows: Iterable[R], company: Callable[[R], str]
             ) -> list[R]:  # fmt: skip
    """Rows of the asked company, or without one, of the caller's companies."""
    rows = list(rows)
    if asked is not None or caller.user_type == "IpsAdmin":
        return rows
    with get_runtime().store.read() as session:
        mine = company_handles(session, caller.company_ids)
    return [row for row in rows if company(row) in mine]


# The request's operation locale (authHeader/locale, else Accept-Language): set by the SOAP and
# JSON endpoints around each operation; it localizes logMessage and progressMessage.
OPERATION_LOCALE: ContextVar[str | None] = ContextVar("operation_locale", default=None)
# The calling application (authHeader appName and appVersion), set by the XML endpoints around
# each operation: submitJob records it for the runs' JobClient rows.
OPERATION_CLIENT: ContextVar[str | None] = ContextVar("operation_client", default=None)


def _company(caller: Caller, operation: str, company_handle: str) -> CompanyRef:
    """The company of an operation whose companyHandle is required, resolved once here and
    handed to the operation (which then does not look it up again)."""
    company = authorize_company(caller, operation, company_handle)
    assert company is not None  # a handle gives a company or a fault
    return company


def _submit_job(caller: Caller, p: SubmitJobRequest) -> Tree:
    actor = authorize_submit(caller, p.company_handle, p.user_handle)  # resolved here, once
    return {"jobHandle": jobengine.submit(p, actor=actor, client=OPERATION_CLIENT.get())}


def _get_active_jobs(caller: Caller, p: GetActiveJobsParam) -> Tree:
    company = authorize_company(caller, "getActiveJobs", p.company_handle)
    jobs = jobengine.get_active_jobs(
        company,
        job_handle=p.job_handle,
        original_name=p.original_name,
        include_waiting_jobs=bool(p.include_waiting_jobs),
        locale=OPERATION_LOCALE.get(),
    )
    visible = _visible(caller, p.company_handle, jobs, lambda j: j.company_handle)
    return {"jobArray": [results.active_job(j) for j in visible]}


def _get_scheduled_jobs(caller: Caller, p: GetScheduledJobsParam) -> Tree:
    company = authorize_company(caller, "getScheduledJobs", p.company_handle)
    jobs = jobengine.get_scheduled_jobs(
        company, job_handle=p.job_handle, original_name=p.original_name
    )
    visible = _visible(caller, p.company_handle, jobs, lambda j: j.company_handle)
    return {"jobArray": [results.scheduled_job(j) for j in visible]}


def _get_job_logs(caller: Caller, p: GetJobLogsParam) -> Tree:
    company = authorize_company(caller, "getJobLogs", p.company_handle)
    logs = jobengine.get_job_logs(
        company,
        user_handle=p.user_handle,
        sort_by=p.sort_by or "StartDate",
        sort_direction=p.sort_direction or "Descending",
        start_date=p.start_date,
        end_date=p.end_date,
        num_rows=p.num_rows,
    )
    visible = _visible(caller, p.company_handle, logs, lambda j: j.company_handle)
    return {"jobLogArray": [results.job_log(j) for j in visible]}


def _get_job_log_details(caller: Caller, p: GetJobLogDetailsParam) -> Tree:
    logs = jobengine.get_job_log_details(
        _company(caller, "getJobLogDetails", p.company_handle),
        job_handle=p.job_handle,
        original_name=p.original_name,
        log_types=p.log_type_array or (),
        records_per_page=p.records_per_page or 1000,
        results_page=p.results_page or 1,
        sort_by=p.sort_by or "Date",
        sort_direction=p.sort_direction or "Ascending",
        locale=OPERATION_LOCALE.get(),
    )
    return {"jobLogArray": [results.job_log(j, details=True) for j in logs]}


def _get_asset_job_logs(caller: Caller, p: GetAssetJobLogsParam) -> Tree:
    company = _company(caller, "getAssetJobLogs", p.company_handle)
    logs = jobengine.get_asset_job_logs(company, p.asset_handle, locale=OPERATION_LOCALE.get())
    return {"jobLogArray": [results.asset_job_log(j) for j in logs]}  # an AssetJobLogArray


def _control(name: str, call: Callable[[CompanyRef, str], object]) -> Callable[[Caller, Any], Tree]:
    def run(caller: Caller, p: JobControlParam) -> Tree:
        call(_company(caller, name, p.company_handle), p.job_handle)
        return {}

    return run


def _save_image_format(caller: Caller, p: SaveImageFormatParam) -> Tree:
    company = _company(caller, "saveImageFormat", p.company_handle)
    handle = jobengine.save_image_format(
        company, p.name, p.url_modifier, image_format_handle=p.image_format_handle
    )
    return {"imageFormatHandle": handle}


def _get_image_formats(caller: Caller, p: GetImageFormatsParam) -> Tree:
    formats = jobengine.get_image_formats(_company(caller, "getImageFormats", p.company_handle))
    return {"imageFormatArray": [results.image_format(f) for f in formats]}


def _delete_image_format(caller: Caller, p: DeleteImageFormatParam) -> Tree:
    company = _company(caller, "deleteImageFormat", p.company_handle)
    jobengine.delete_image_format(company, p.image_format_handle)
    return {}


_TABLE: list[Operation] = [
    Operation("submitJob", SubmitJobRequest, _submit_job, "Submit a job; returns its jobHandle."),
    Operation("getActiveJobs", GetActiveJobsParam, _get_active_jobs, "Jobs running now."),
    Operation("getScheduledJobs", GetScheduledJobsParam, _get_scheduled_jobs,
              "Jobs with a trigger."),
    Operation("getJobLogs", GetJobLogsParam, _get_job_logs, "One summary job log per run."),
    Operation("getJobLogDetails", GetJobLogDetailsParam, _get_job_log_details,
              "The job logs of a job, each with a page of detail rows."),
    Operation("getAssetJobLogs", GetAssetJobLogsParam, _get_asset_job_logs,
              "Every log row about one asset."),
    Operation("stopJob", JobControlParam, _control("stopJob", jobengine.stop_job),
              "Stop a job in progress."),
    Operation("pauseJob", JobControlParam, _control("pauseJob", jobengine.pause_job),
              "Pause a scheduled or running job."),
    Operation("resumeJob", JobControlParam, _control("resumeJob", jobengine.resume_job),
              "Resume a paused job."),
    Operation("deleteJob", JobControlParam, _control("deleteJob", jobengine.delete_job),
              "Delete a scheduled, queued or current job."),
    Operation("executeJob", JobControlParam, _control("executeJob", jobengine.execute_job),
              "Run a scheduled job now."),
    Operation("saveImageFormat", SaveImageFormatParam, _save_image_format,
              "Create or change an image preset; returns its handle."),
    Operation("getImageFormats", GetImageFormatsParam, _get_image_formats,
              "The company's image presets."),
    Operation("deleteImageFormat", DeleteImageFormatParam, _delete_image_format,
              "Delete an image preset."),
]  # fmt: skip

OPERATIONS: dict[str, Operation] = {op.name: op for op in _TABLE}
