"""The IPS job operations as Python functions (the SOAP, JSON and CLI surfaces call these)."""

from jobengine.operations.control import delete_job, execute_job, pause_job, resume_job, stop_job
from jobengine.operations.presets import (
    ImageFormatInfo,
    delete_image_format,
    get_image_formats,
    save_image_format,
)
from jobengine.operations.queries import (
    get_active_jobs,
    get_asset_job_logs,
    get_job_log_details,
    get_job_logs,
    get_scheduled_jobs,
)
from jobengine.operations.shapes import (
    ActiveJob,
    AssetJobLog,
    JobLog,
    JobLogDetail,
    JobLogDetailAux,
    ScheduledJob,
    TaskItemProgress,
    TaskProgress,
)

__all__ = [
    "ActiveJob",
    "AssetJobLog",
    "ImageFormatInfo",
    "JobLog",
    "JobLogDetail",
    "JobLogDetailAux",
    "ScheduledJob",
    "TaskItemProgress",
    "TaskProgress",
    "delete_image_format",
    "delete_job",
    "execute_job",
    "get_active_jobs",
    "get_asset_job_logs",
    "get_image_formats",
    "get_job_log_details",
    "get_job_logs",
    "get_scheduled_jobs",
    "pause_job",
    "resume_job",
    "save_image_format",
    "stop_job",
]
