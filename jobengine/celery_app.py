"""The Celery application.

Workers: ``celery -A jobengine.celery_app worker`` (or ``jobengine worker``).
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_shutdown
from kombu import pools

from config.celery import celery_config
from jobengine import logs as _logs  # noqa: F401 - connects the logging signals
from jobengine.settings import get_settings

__all__ = ["app", "configure"]

app = Celery("jobengine")


def configure(**overrides: Any) -> Celery:
    """(Re)apply the settings read from the environment, plus ``overrides``, to the app.

    Pooled broker connections are dropped so the next message uses the new configuration.
    """
    app.conf.update({**celery_config(get_settings()), **overrides})
    # kombu's process-wide pools are keyed by URL: drop them all.
    pools.reset()  # type: ignore[no-untyped-call]
    app._pool = None  # Celery has no public reset for its pools
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None
    from jobengine.dispatch import reset_sender

    reset_sender()
    return app


@worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _close_conversion_pool(**_: Any) -> None:
    """Stop this worker process's ImageMagick helper processes with it."""
    from jobengine.imaging import shutdown_default_pool

    shutdown_default_pool()


configure()
