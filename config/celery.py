"""Celery settings for jobengine, derived from :class:`jobengine.settings.Settings`.

Why each setting (see docs/architecture.md and the Celery pitfalls it avoids):

* JSON only: no pickle anywhere.
* ``task_acks_late`` + ``task_reject_on_worker_lost``: a killed worker's task is redelivered, and
  the store's run-once guards make the redelivery harmless. ``task_retry_on_worker_lost`` (5.7)
  bounds the loop with ``max_retries``.
* ``worker_prefetch_multiplier=1``: a long conversion does not hold other messages hostage.
* ``visibility_timeout`` set in all three places, above the hard time limit and well above the
  ETA horizon, so Redis never redelivers a message that is still being worked on or waiting.
* events on (``-E`` equivalent, sent and started): Flower sees every task.
"""

from __future__ import annotations

from typing import Any

from jobengine.embedded import backend_url, broker_url
from jobengine.settings import Settings

TASK_MODULES = [
    "tasks.export",
    "tasks.image_serving_publish",
    # RipPdfsJob, OptimizeImagesJob and ReprocessAssetsJob
    "tasks.rip_pdfs",
    "tasks.optimize_images",
    "tasks.reprocess_assets",
    # VideoPublishJob and ServerDirectoryPublishJob
    "tasks.video_publish",
    "tasks.server_directory_publish",
    # UploadUrlsJob and UploadDirectoryJob
    "tasks.upload_urls",
    "tasks.upload_directory",
]


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery configuration mapping for ``app.conf.update``."""
    transport = {"visibility_timeout": settings.visibility_timeout}
    return {
        "broker_url": broker_url(settings),
        "result_backend": backend_url(settings),
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "visibility_timeout": settings.visibility_timeout,
        "broker_connection_retry_on_startup": True,
        "broker_pool_limit": 10,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_retry_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "task_time_limit": settings.task_time_limit,
        # The soft limit leaves the task time to clean up before the hard one kills it.
        "task_soft_time_limit": max(
            1, settings.task_time_limit - min(30, settings.task_time_limit // 10)
        ),
        "task_ignore_result": True,
        "task_track_started": True,
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        "worker_prefetch_multiplier": 1,
        "worker_eta_task_limit": 1000,
        "worker_soft_shutdown_timeout": 30,
        "worker_enable_soft_shutdown_on_idle": True,
        "worker_hijack_root_logger": False,
        "result_expires": 24 * 3600,
        "timezone": "UTC",
        "enable_utc": True,
        "beat_scheduler": "jobengine.scheduling:StoreScheduler",
        "beat_max_loop_interval": settings.beat_interval,
        "task_default_queue": "jobengine",
        "include": TASK_MODULES,
    }
