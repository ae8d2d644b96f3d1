"""The operations' results as IPS trees: dicts with IPS element names in XSD order (section 5).

A tree is plain data: a ``dict`` is a complex element (keys in XSD order, ``None`` values left
out), a ``list`` is an IPS array (``<x><items>..</items></x>`` in SOAP, ``{"items": [..]}`` in
JSON), and leaves are ``str``, ``int``, ``float``, ``bool`` or an offset-aware ``datetime``.
Fields of the Python shapes that IPS does not have (a run's ``state``, ``output``, the IANA
zone) are not part of the trees.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from jobengine.model import JOB_MODELS, to_ips_dict
from jobengine.model.constants import JobKind
from jobengine.operations import (
    ActiveJob,
    AssetJobLog,
    ImageFormatInfo,
    JobLog,
    JobLogDetail,
    JobLogDetailAux,
    ScheduledJob,
    TaskItemProgress,
    TaskProgress,
)

__all__ = [
    "Tree",
    "active_job",
    "asset_job_log",
    "image_format",
    "job_log",
    "scheduled_job",
    "to_json",
]

Tree = dict[str, Any]


def _when(value: datetime | None) -> datetime | None:
    """Datetimes always go out with an offset; a naive one from the store is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _ips(value: Any) -> Any:
    """A stored IPS dict made a tree: ``{"items": [...]}`` becomes a list."""
    if isinstance(value, dict):
        if set(value) == {"items"}:
            items = value["items"]
            return [_ips(v) for v in (items if isinstance(items, list) else [items])]
        return {str(k): _ips(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ips(v) for v in value]
    return value


def _echo(job: dict[str, Any]) -> Tree:
    """The job payload echo under its submitJobParam element name (``exportJob``...).

    The stored payload is read back through its model, so its fields come out in XSD order
    (a JSON column need not keep key order).
    """
    out: Tree = {}
    for key, payload in job.items():
        try:
            kind = JobKind.from_element(key)  # the store keys payloads by element name
        except ValueError:
            out[key[:1].lower() + key[1:]] = _ips(payload)
            continue
        try:
            out[kind.element] = _ips(to_ips_dict(JOB_MODELS[kind].model_validate(payload)))
        except (KeyError, ValidationError):
            out[kind.element] = _ips(payload)
    return out


def _task_item(item: TaskItemProgress) -> Tree:
    return {
        "itemName": item.item_name,
        "progress": item.progress,
        "progressMessage": item.progress_message,
        "lastProgressUpdate": _when(item.last_progress_update),
    }


def _task(task: TaskProgress) -> Tree:
    return {
        "taskType": task.task_type,
        "taskState": task.task_state,
        "numProcessed": task.num_processed,
        "numProcessing": task.num_processing,
        "numPending": task.num_pending,
        "progress": task.progress,
        "progressMessage": task.progress_message,
        "lastProgressUpdate": _when(task.last_progress_update),
        "taskItemProgressArray": [_task_item(i) for i in task.task_item_progress],
    }


def active_job(job: ActiveJob) -> Tree:
    """An ActiveJob."""
    return {
        "companyHandle": job.company_handle,
        "jobHandle": job.job_handle,
        "name": job.name,
        "originalName": job.original_name,
        "type": job.type,
        "state": job.state,
        "submitUserEmail": job.submit_user_email,
        "locale": job.locale,
        "description": job.description,
        "serverName": job.server_name,
        "startDate": _when(job.start_date),
        "triggerTime": _when(job.trigger_time),
        "totalSize": job.total_size,
        "progress": job.progress,
        "progressMessage": job.progress_message,
        "lastProgressUpdate": _when(job.last_progress_update),
        "taskProgressArray": [_task(t) for t in job.task_progress],
        **_echo(job.job),
    }


def scheduled_job(job: ScheduledJob) -> Tree:
    """A ScheduledJob."""
    return {
        "companyHandle": job.company_handle,
        "jobHandle": job.job_handle,
        "name": job.name,
        "originalName": job.original_name,
        "type": job.type,
        "submitUserEmail": job.submit_user_email,
        "locale": job.locale,
        "description": job.description,
        "execSchedule": job.exec_schedule,
        "nextFireTime": _when(job.next_fire_time),
        "timeZone": job.time_zone,
        "triggerState": job.trigger_state,
        **_echo(job.job),
    }


def _aux(rows: tuple[JobLogDetailAux, ...]) -> list[Tree] | None:
    """An auxArray (optional in IPS): left out when there is nothing in it."""
    if not rows:
        return None
    return [
        {"logMessage": a.log_message, "logType": a.log_type, "dateCreated": _when(a.date_created)}
        for a in rows
    ]


def _detail(detail: JobLogDetail) -> Tree:
    return {
        "logMessage": detail.log_message,
        "logType": detail.log_type,
        "dateCreated": _when(detail.date_created),
        "assetName": detail.asset_name,
        "assetType": detail.asset_type,
        "assetHandle": detail.asset_handle,
        "auxArray": _aux(detail.aux),
    }


def job_log(log: JobLog, *, details: bool = False) -> Tree:
    """A JobLog; with ``details``, its detailTotalRows and detailArray (getJobLogDetails)."""
    tree: Tree = {
        "companyHandle": log.company_handle,
        "jobHandle": log.job_handle,
        "jobName": log.job_name,
        "originalJobName": log.original_job_name,
        "submitUserEmail": log.submit_user_email,
        "logType": log.log_type,
        "jobSubType": log.job_sub_type,
        "startDate": _when(log.start_date),
        "endDate": _when(log.end_date),
        "description": log.description,
        "fileSuccessCount": log.file_success_count,
        "fileErrorCount": log.file_error_count,
        "fileWarningCount": log.file_warning_count,
        "fileDuplicateCount": log.file_duplicate_count,
        "fileUpdateCount": log.file_update_count,
        "totalFileCount": log.total_file_count,
        "transferSuccessCount": log.transfer_success_count,
        "transferErrorCount": log.transfer_error_count,
        "transferWarningCount": log.transfer_warning_count,
        "fatalError": log.fatal_error,
    }
    if details:
        tree["detailTotalRows"] = log.detail_total_rows or 0
        tree["detailArray"] = [_detail(d) for d in log.details]
    return tree


def asset_job_log(log: AssetJobLog) -> Tree:
    """An AssetJobLog."""
    return {
        "jobHandle": log.job_handle,
        "jobName": log.job_name,
        "logMessage": log.log_message,
        "logType": log.log_type,
        "submitUserEmail": log.submit_user_email,
        "logDate": _when(log.log_date),
        "auxArray": _aux(log.aux),
    }


def image_format(info: ImageFormatInfo) -> Tree:
    """An ImageFormat."""
    return {
        "imageFormatHandle": info.image_format_handle,
        "name": info.name,
        "urlModifier": info.url_modifier,
    }


def to_json(value: Any) -> Any:
    """A tree as JSON data: lists as ``{"items": [...]}``, datetimes as ISO 8601, no None."""
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return {"items": [to_json(v) for v in value]}
    if isinstance(value, datetime):
        return value.isoformat()
    return value
