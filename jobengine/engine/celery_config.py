"""Celery settings for jobengine, derived from :class:`jobengine.settings.Settings`.

Why each setting (see docs/architecture.md and the Celery pitfalls it avoids):

* JSON only: no pickle anywhere.
* ``task_acks_late`` + ``task_reject_on_worker_lost``: a killed worker's task is redelivered, and
  the store's run-once guards make the redelivery harmless. ``task_retry_on_worker_lost`` (5.7)
  bounds the loop with ``max_retries``.
* ``worker_prefetch_multiplier=1``: a long conversion does not hold other messages hostage.
* ``visibility_timeout`` set in all three places, above the hard time limit and well above the
  ETA horizon, so Redis never redelivers a message that is still being worked on or waiting.
* events on (``-E`` equivalent, sent and started): Flower sees every task; a worker publishes
  its task events in batches (:mod:`jobengine.engine.consumer`).
* one queue, ``jobengine``, unless ``JOBENGINE_QUEUES`` puts job kinds on queues of their own
  (all three tasks of a kind: ``jobengine.<kind>.*``); workers consume :func:`worker_queues`.
"""

from __future__ import annotations

from typing import Any

from jobengine.embedded import backend_url, broker_url
from jobengine.errors import ConfigurationError
from jobengine.kinds import kind_slugs, task_modules
from jobengine.settings import DEFAULT_QUEUE, Settings

# The task modules come from the kinds table (``tasks.<slug>``, one per kind): adding a kind
# to ``jobengine.kinds.KINDS`` (and its ``tasks/<slug>.py``) is all Celery needs.
TASK_MODULES = task_modules()


def task_routes(settings: Settings) -> dict[str, dict[str, str]]:
    """``JOBENGINE_QUEUES`` as Celery routes; ConfigurationError for a kind that does not exist."""
    known = kind_slugs()
    routes: dict[str, dict[str, str]] = {}
    for slug, queue in settings.queues:
        if slug not in known:
            raise ConfigurationError(
                f"JOBENGINE_QUEUES: no job kind {slug!r}; the kinds are {', '.join(known)}"
            )
        routes[f"jobengine.{slug}.*"] = {"queue": queue}
    return routes


def worker_queues(settings: Settings) -> list[str]:
    """What a worker consumes by default: ``jobengine`` and every queue of JOBENGINE_QUEUES."""
    return settings.all_queues


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
        "worker_consumer": "jobengine.engine.consumer:Consumer",
        "worker_prefetch_multiplier": 1,
        "worker_eta_task_limit": 1000,
        "worker_soft_shutdown_timeout": 30,
        "worker_enable_soft_shutdown_on_idle": True,
        "worker_hijack_root_logger": False,
        "result_expires": 24 * 3600,
        "timezone": "UTC",
        "enable_utc": True,
        "beat_scheduler": "jobengine.engine.scheduling:StoreScheduler",
        "beat_max_loop_interval": settings.beat_interval,
        "task_default_queue": DEFAULT_QUEUE,
        "task_routes": task_routes(settings),
        "include": TASK_MODULES,
    }
