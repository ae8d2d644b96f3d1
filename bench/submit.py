"""submit() beside bare Celery ``apply_async`` of a no-op, on the same Redis, in the same run.

    .venv/bin/python bench/submit.py [--n 2000] [--rounds 3]

Three sides, all publishing to a queue no worker reads (purged afterwards):

* ``bare``: a plain Celery app's ``apply_async`` of a no-op (``ignore_result=True``);
* ``same config``: the no-op sent through jobengine's own Celery app, so with its settings
  (the ``task-sent`` event Flower needs is a second broker round trip per message);
* ``submit()``: everything a real submission does: parse and validate, look up the company and
  assets, commit the job and its run (the outbox), publish, mark the run sent.

Prints throughput, p50/p95 latency and the ratios; record the results in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

Stats = dict[str, float]


def _measure(label: str, n: int, call: Callable[[int], object]) -> Stats:
    latencies = []
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        call(i)
        latencies.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    latencies.sort()
    result = {
        "per_s": n / total,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[int(n * 0.95)] * 1000,
    }
    print(
        f"  {label:<30} {result['per_s']:8.0f}/s  p50 {result['p50_ms']:.2f} ms  "
        f"p95 {result['p95_ms']:.2f} ms"
    )
    return result


def _per_job(batch: Stats, size: int) -> Stats:
    """Batch figures as per-job throughput (latencies stay per batch)."""
    return {**batch, "per_s": batch["per_s"] * size}


def _median(rounds: list[Stats]) -> Stats:
    return {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}


def _noop_tasks(app: Any) -> tuple[Any, Any]:
    from celery import Celery

    bare = Celery("bare", broker=app.conf.broker_url, backend=app.conf.result_backend)
    bare.conf.update(task_serializer="json", accept_content=["json"], task_default_queue="bench")

    def noop(i: int) -> None:
        return None

    plain = bare.task(name="bench.noop", ignore_result=True)(noop)
    ours = app.task(name="bench.noop_same_config", ignore_result=True)(noop)
    return plain, ours


def run(n: int, rounds: int) -> None:
    from jobengine import submit, submit_many
    from jobengine.celery_app import app, configure
    from jobengine.settings import get_settings
    from tests.helpers import export_request, make_company

    configure(task_default_queue="bench")
    print(f"broker {app.conf.broker_url}; store {get_settings().database_url}")
    company, assets = make_company(3)
    request = export_request(company, assets, "Bench")
    plain, same = _noop_tasks(app)
    submit(request)  # warm up connections, caches and the store
    plain.apply_async((0,))
    same.apply_async((0,))
    sides: dict[str, list[Stats]] = {"bare": [], "same": [], "submit": [], "many": []}
    for r in range(rounds):
        print(f"round {r + 1}")
        sides["bare"].append(_measure("bare apply_async", n, lambda i: plain.apply_async((i,))))
        sides["same"].append(
            _measure("apply_async, same config", n, lambda i: same.apply_async((i,)))
        )
        named = [{**request, "jobName": f"B{r}-{i}"} for i in range(n)]  # producers name jobs
        sides["submit"].append(
            _measure("jobengine submit()", n, lambda i, named=named: submit(named[i]))
        )
        batches = [
            [{**request, "jobName": f"M{r}-{i}-{k}"} for k in range(100)] for i in range(n // 100)
        ]
        per_batch = _measure(
            "submit_many() x100, per batch", len(batches), lambda i, b=batches: submit_many(b[i])
        )
        sides["many"].append(_per_job(per_batch, 100))
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("bench")
    med = {side: _median(stats) for side, stats in sides.items()}
    print("\nmedian of rounds")
    for side, label in (
        ("bare", "bare apply_async"),
        ("same", "same config"),
        ("submit", "submit()"),
        ("many", "submit_many()/job"),
    ):
        m = med[side]
        print(
            f"  {label:<18} {m['per_s']:6.0f}/s  p50 {m['p50_ms']:.2f} ms  p95 {m['p95_ms']:.2f} ms"
        )
    ours = med["submit"]["per_s"]
    print(
        f"  submit()/bare = {ours / med['bare']['per_s']:.2f}, "
        f"submit()/same config = {ours / med['same']['per_s']:.2f} (target >= 0.5); "
        f"submit() p95 {med['submit']['p95_ms']:.2f} ms (target < 5 ms)"
    )
    many = med["many"]["per_s"]
    print(
        f"  submit_many()/bare = {many / med['bare']['per_s']:.2f}, "
        f"submit_many()/same config = {many / med['same']['per_s']:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="jobengine-bench-")
    os.environ.setdefault("JOBENGINE_HOME", home)
    os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{home}/bench.db")
    from jobengine.embedded import start_redis, stop_redis
    from jobengine.settings import get_settings

    settings = get_settings()
    started = not settings.redis_url and start_redis(settings)
    try:
        run(args.n, args.rounds)
    finally:
        if started:
            stop_redis(settings)


if __name__ == "__main__":
    main()
