"""The Celery application.

Workers: ``celery -A jobengine.celery_app worker`` (or ``jobengine worker``); that name
(:mod:`jobengine.celery_app`) hands on this module's app.

Importing this module configures the app but connects to nothing. Without ``REDIS_URL`` the
broker and result backend are the embedded Redis of ``JOBENGINE_HOME``, which is started (unless
it runs already) when Celery first loads its configuration: the first time anything reads
``app.conf``, as sending a task, a worker, beat, Flower or ``celery inspect`` do. Redis broker
URLs go through :mod:`jobengine.engine.redis_transport` (kombu's transport, with channels that
fail as closed connections do once theirs was given up).
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_shutdown
from kombu import pools

from jobengine import logs as _logs  # noqa: F401 - connects the logging signals
from jobengine.embedded import ensure_redis
from jobengine.engine import redis_transport
from jobengine.engine.celery_config import celery_config
from jobengine.settings import Settings, get_settings

__all__ = ["app", "configure", "generation"]

redis_transport.install()
app = Celery("jobengine")
_applied: list[Settings] = []  # the settings of the last configure()
_generation = [0]


def configure(**overrides: Any) -> Celery:
    """(Re)apply the settings read from the environment, plus ``overrides``, to the app.

    Pooled broker connections and the result backend are dropped so the next message uses the
    new configuration. The
    embedded Redis is started now if the app's configuration is loaded already, else when it is.
    """
    settings = get_settings()
    _applied[:] = [settings]
    if app.configured:
        ensure_redis(settings)
    app.conf.update({**celery_config(settings), **overrides})
    # kombu's process-wide pools are keyed by URL: drop them all.
    pools.reset()  # type: ignore[no-untyped-call]
    app._pool = None  # Celery has no public reset for its pools
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None
    # The result backend is built once and kept: a new result_backend (another Redis) needs a
    # new one, or progress and results go on to the old server.
    app._backend_cache = None
    vars(app._local).pop("backend", None)
    _generation[0] += 1  # what keeps state built on the old configuration rebuilds it
    return app


def generation() -> int:
    """How many times :func:`configure` ran: a sender kept across messages (the pipelined Redis
    sender of :mod:`jobengine.engine.dispatch`) is rebuilt when it changes."""
    return _generation[0]


@app.on_configure.connect  # type: ignore[untyped-decorator]
def _start_embedded_redis(**_: Any) -> None:
    """Celery is loading its configuration, so it is about to connect: start the embedded Redis
    if the configured settings use it."""
    ensure_redis(_applied[0] if _applied else get_settings())


@worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _close_conversion_pool(**_: Any) -> None:
    """Stop this worker process's ImageMagick helper processes with it."""
    from jobengine.imaging import shutdown_default_pool

    shutdown_default_pool()


configure()
