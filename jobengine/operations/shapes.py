"""What the job operations return: the IPS data types of section 5, with Python names.

The IPS element names live in the serializers (SOAP, JSON); here each field has its Python
name and a plain type. ``job`` fields echo the submitted payload as an IPS dict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "ActiveJob",
    "AssetJobLog",
    "JobLog",
    "JobLogDetail",
    "JobLogDetailAux",
    "ScheduledJob",
    "TaskItemProgress",
    "TaskProgress",
]


class _Shape:
    def to_dict(self) -> dict[str, Any]:
        """The value as plain data (datetimes stay datetimes)."""
        return asdict(self)  # type: ignore[call-overload, no-any-return]


@dataclass(frozen=True)
class TaskItemProgress(_Shape):
    item_name: str
    progress: float
    progress_message: str
    last_progress_update: datetime


@dataclass(frozen=True)
class TaskProgress(_Shape):
    task_type: str
    task_state: str  # Unknown, New, Processing, Stopping, Done, Failed
    num_processed: int
    num_processing: int
    num_pending: int
    progress: float  # 0.0 - 1.0
    progress_message: str
    last_progress_update: datetime  # required in IPS: the queue time until progress is made
    task_item_progress: tuple[TaskItemProgress, ...] = ()


@dataclass(frozen=True)
class ActiveJob(_Shape):
    company_handle: str
    job_handle: str
    name: str  # the unique run name
    original_name: str
    type: str  # a Job Types constant
    state: str  # an Active Job States constant
    submit_user_email: str
    locale: str | None
    description: str | None
    server_name: str
    start_date: datetime  # required in IPS: a waiting run's is the time it was queued
    trigger_time: datetime
    total_size: int  # xsd:int on the wire
    progress: int  # percent
    progress_message: str
    last_progress_update: datetime  # the start (or queue) time until progress is made
    task_progress: tuple[TaskProgress, ...]
    job: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScheduledJob(_Shape):
    company_handle: str
    job_handle: str
    name: str
    original_name: str
    type: str
    submit_user_email: str
    locale: str | None
    description: str | None
    exec_schedule: str | None
    next_fire_time: datetime | None
    time_zone: str  # abbreviation at the next fire time, e.g. "PST"
    time_zone_id: str  # the IANA zone, e.g. "America/Los_Angeles"
    trigger_state: str  # Normal, Paused, ...
    job: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobLogDetailAux(_Shape):
    """An upload warning or error attached to a detail row (IPS 4.5); none are recorded yet."""

    log_message: str
    log_type: str
    date_created: datetime | None = None


@dataclass(frozen=True)
class JobLogDetail(_Shape):
    log_message: str
    log_type: str
    date_created: datetime
    asset_name: str | None = None
    asset_type: str | None = None
    asset_handle: str | None = None
    aux: tuple[JobLogDetailAux, ...] = ()


@dataclass(frozen=True)
class JobLog(_Shape):
    company_handle: str
    job_handle: str  # the run's handle, e.g. "47||My Job_2026-11-23-08:30:00"
    job_name: str  # the unique run name
    original_job_name: str
    submit_user_email: str
    log_type: str
    job_sub_type: str
    start_date: datetime | None
    end_date: datetime | None
    description: str
    file_success_count: int
    file_error_count: int
    file_warning_count: int
    file_duplicate_count: int
    file_update_count: int
    total_file_count: int
    transfer_success_count: int
    transfer_error_count: int
    transfer_warning_count: int
    fatal_error: bool
    state: str  # ours: Queued, Running, Stopping, Done, Failed, Stopped, Cancelled
    output: dict[str, Any] = field(default_factory=dict)
    detail_total_rows: int | None = None
    details: tuple[JobLogDetail, ...] = ()


@dataclass(frozen=True)
class AssetJobLog(_Shape):
    job_handle: str
    job_name: str
    log_message: str
    log_type: str
    submit_user_email: str
    log_date: datetime
    aux: tuple[JobLogDetailAux, ...] = ()
