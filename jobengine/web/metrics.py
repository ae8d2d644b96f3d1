"""Prometheus metrics, computed from the job store (and the broker) at scrape time.

Nothing is counted in process memory: every scrape reads the store, so the numbers are the same
whichever web process answers and never drift after a restart.

* ``jobengine_runs{state,kind}``: runs by state and job kind (gauge).
* ``jobengine_run_duration_seconds{kind,state}``: ``ended_at - started_at`` of the runs that
  ended in the last hour (a histogram over that window: read its values, do not ``rate()`` it).
* ``jobengine_queue_depth{queue}``: messages waiting in each Celery queue: ``jobengine`` and
  every queue of ``JOBENGINE_QUEUES`` (Redis brokers only).
* ``jobengine_triggers{state,kind}``: scheduled jobs (execTime or execSchedule) by trigger state.
* ``jobengine_scrape_errors{source}``: 1 when a source could not be read in this scrape.

``GET /metrics`` on the web app serves them (:func:`metrics_endpoint`); with
``JOBENGINE_METRICS_TOKEN`` set only to ``Authorization: Bearer <token>`` (else 401).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import timedelta

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from jobengine.engine.dispatch import queue_depths
from jobengine.runtime import get_runtime
from jobengine.settings import Settings, get_settings
from jobengine.store.schema import utcnow
from jobengine.store.states import RunState
from jobengine.store.stats import recent_run_durations, run_counts, trigger_counts

__all__ = [
    "DURATION_BUCKETS",
    "QUEUE",
    "RUN_STATES",
    "JobStoreCollector",
    "make_registry",
    "metrics_endpoint",
    "queue_depth",
    "queue_depths",
]

logger = logging.getLogger(__name__)

QUEUE = "jobengine"  # task_default_queue (config/celery.py)
RUN_STATES: tuple[RunState, ...] = tuple(RunState)  # every state shows, at 0 when none
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 4 * 3600.0)
DURATION_WINDOW = timedelta(hours=1)


def _known_kinds() -> list[str]:
    from jobengine.kinds import KINDS

    return sorted(KINDS)


def _run_counts() -> dict[tuple[str, str], int]:
    with get_runtime().store.read() as session:
        return run_counts(session)


def _recent_durations() -> dict[tuple[str, str], list[float]]:
    with get_runtime().store.read() as session:
        return recent_run_durations(session, utcnow() - DURATION_WINDOW)


def _trigger_counts() -> dict[tuple[str, str], int]:
    with get_runtime().store.read() as session:
        return trigger_counts(session)


def _buckets(values: list[float]) -> list[tuple[str, float]]:
    cumulative = [(str(bound), float(sum(1 for v in values if v <= bound))) for bound in
                  DURATION_BUCKETS]  # fmt: skip
    return [*cumulative, ("+Inf", float(len(values)))]


def queue_depth(settings: Settings, queue: str = QUEUE) -> int | None:
    """Messages waiting in ``queue`` (all priority lists), or None when the broker is not Redis."""
    depths = queue_depths(settings, [queue])
    return None if depths is None else depths[queue]


class JobStoreCollector(Collector):
    """Reads the store (and the broker's queue length) on every ``collect()``."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings

    def describe(self) -> Iterable[Metric]:
        return []  # computed at scrape time: no fixed description, nothing collected at register

    def collect(self) -> Iterator[Metric]:
        errors = GaugeMetricFamily(
            "jobengine_scrape_errors",
            "1 when a source could not be read in this scrape.",
            labels=["source"],
        )
        for source, read in (
            ("runs", self._runs),
            ("durations", self._durations),
            ("triggers", self._triggers),
            ("queue", self._queue),
        ):
            try:
                metric = read()
            except (SQLAlchemyError, OSError, ConnectionError, TimeoutError) as exc:
                logger.warning("metrics: cannot read %s: %s", source, exc)
                errors.add_metric([source], 1.0)
                continue
            errors.add_metric([source], 0.0)
            if metric is not None:
                yield metric
        yield errors

    def _runs(self) -> Metric:
        counts: dict[tuple[str, str], int] = {
            (state, kind): 0 for state in RUN_STATES for kind in _known_kinds()
        }
        counts.update(_run_counts())
        gauge = GaugeMetricFamily(
            "jobengine_runs", "Runs (job logs) by state and job kind.", labels=["state", "kind"]
        )
        for (state, kind), n in sorted(counts.items()):
            gauge.add_metric([state, kind], float(n))
        return gauge

    def _durations(self) -> Metric:
        histogram = HistogramMetricFamily(
            "jobengine_run_duration_seconds",
            "ended_at - started_at of the runs that ended in the last hour (a sliding window).",
            labels=["kind", "state"],
        )
        for (kind, state), values in sorted(_recent_durations().items()):
            histogram.add_metric([kind, state], _buckets(values), sum_value=sum(values))
        return histogram

    def _triggers(self) -> Metric:
        gauge = GaugeMetricFamily(
            "jobengine_triggers",
            "Scheduled jobs (execTime or execSchedule) by Quartz trigger state and job kind.",
            labels=["state", "kind"],
        )
        for (state, kind), n in sorted(_trigger_counts().items()):
            gauge.add_metric([state, kind], float(n))
        return gauge

    def _queue(self) -> Metric | None:
        import redis

        settings = self._settings or get_settings()
        try:
            depths = queue_depths(settings, settings.all_queues)
        except redis.RedisError as exc:
            raise ConnectionError(str(exc)) from exc
        if depths is None:
            return None
        gauge = GaugeMetricFamily(
            "jobengine_queue_depth", "Messages waiting in the Celery queue.", labels=["queue"]
        )
        for queue, depth in depths.items():
            gauge.add_metric([queue], float(depth))
        return gauge


def make_registry(settings: Settings | None = None) -> CollectorRegistry:
    """A registry of its own (not the process-global one) holding the store collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobStoreCollector(settings))
    return registry


def _bearer_matches(header: str | None, token: str) -> bool:
    """Whether ``Authorization`` is ``Bearer <token>`` (compared in constant time)."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def metrics_endpoint(registry: CollectorRegistry) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint serving ``registry`` in the Prometheus text format."""

    async def endpoint(request: Request) -> Response:
        token = get_settings().metrics_token
        if token is not None and not _bearer_matches(request.headers.get("authorization"), token):
            return Response(
                "a metrics token is required (Authorization: Bearer)\n",
                401,
                media_type="text/plain",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return endpoint
