"""jobengine: the job side of an IPS (Scene7 / Dynamic Media) image production platform, on Celery.

from jobengine import get_job_logs, submit
handle = submit(open("job.xml").read())        # IPS XML, a dict with IPS names, or a model
"""

from jobengine.engine.submission import submit, submit_many
from jobengine.errors import IpsFault, JobEngineError
from jobengine.operations import (
    delete_image_format,
    delete_job,
    execute_job,
    get_active_jobs,
    get_asset_job_logs,
    get_image_formats,
    get_job_log_details,
    get_job_logs,
    get_scheduled_jobs,
    pause_job,
    resume_job,
    save_image_format,
    stop_job,
)
from jobengine.settings import Settings, get_settings

__all__ = [
    "IpsFault",
    "JobEngineError",
    "Settings",
    "delete_image_format",
    "delete_job",
    "execute_job",
    "get_active_jobs",
    "get_asset_job_logs",
    "get_image_formats",
    "get_job_log_details",
    "get_job_logs",
    "get_scheduled_jobs",
    "get_settings",
    "pause_job",
    "resume_job",
    "save_image_format",
    "stop_job",
    "submit",
    "submit_many",
]
