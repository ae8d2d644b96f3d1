"""The reference side of ``bench/e2e.py``: a bare Celery app whose task does next to nothing.

Its worker runs as ours does (prefork, ``acks_late``, prefetch 1, JSON), on the same Redis, and
each task counts itself with one ``INCR`` so that the benchmark can tell when all are done.
"""

from __future__ import annotations

import os

import redis
from celery import Celery

app = Celery("bench_noop", broker=os.environ["BENCH_BROKER_URL"])
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_default_queue="bench-noop",
    task_ignore_result=True,
    worker_hijack_root_logger=False,
)
_COUNTER = redis.Redis.from_url(
    os.environ["BENCH_BROKER_URL"].replace("redis+socket://", "unix://")
)


@app.task(name="bench.noop")  # type: ignore[untyped-decorator]
def noop(i: int) -> None:
    _COUNTER.incr("bench:noop:done")
