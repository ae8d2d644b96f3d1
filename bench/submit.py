"""submit() beside bare Celery ``apply_async`` of a no-op, on the same Redis, in the same run.

    .venv/bin/python bench/submit.py [--n 2000] [--rounds 3]

Both sides publish to a queue no worker reads (purged afterwards). submit() does everything a
real submission does: parse and validate the request, check the assets in the store, commit the
job and its run (the outbox), publish, and mark the run sent. Prints throughput, p50/p95
latency and the ratios; record the results in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _measure(label: str, n: int, call: Callable[[int], object]) -> dict[str, float]:
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
        f"  {label:<28} {result['per_s']:8.0f}/s  p50 {result['p50_ms']:.2f} ms  "
        f"p95 {result['p95_ms']:.2f} ms"
    )
    return result


def _nth(requests: list[dict[str, object]], i: int) -> object:
    from jobengine import submit

    return submit(requests[i])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="jobengine-bench-")
    os.environ.setdefault("JOBENGINE_HOME", home)
    os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{home}/bench.db")

    from jobengine import submit
    from jobengine.celery_app import app, configure
    from jobengine.embedded import start_redis, stop_redis
    from jobengine.settings import get_settings
    from tests.helpers import export_request, make_company

    settings = get_settings()
    started = not settings.redis_url and start_redis(settings)
    try:
        _run(args, settings, app, configure, submit, export_request, make_company)
    finally:
        if started:
            stop_redis(settings)


def _run(args, settings, app, configure, submit, export_request, make_company) -> None:  # type: ignore[no-untyped-def]
    from celery import Celery

    configure(task_default_queue="bench")
    print(f"broker {app.conf.broker_url}; store {settings.database_url}")
    company, assets = make_company(3)
    bare = Celery("bare", broker=app.conf.broker_url, backend=app.conf.result_backend)
    bare.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_default_queue="bench",
        broker_transport_options=app.conf.broker_transport_options,
    )

    @bare.task(name="bench.noop", ignore_result=True)
    def noop(i: int) -> None:
        return None

    request = export_request(company, assets, "Bench")
    submit(request)  # warm up connections, caches and the store
    noop.apply_async((0,))
    ours, ref = [], []
    for r in range(args.rounds):
        print(f"round {r + 1}")
        ref.append(_measure("bare apply_async (no-op)", args.n, lambda i: noop.apply_async((i,))))
        requests = [{**request, "jobName": f"B{r}-{i}"} for i in range(args.n)]  # named jobs
        ours.append(_measure("jobengine submit()", args.n, functools.partial(_nth, requests)))
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("bench")
    med = {k: statistics.median(x[k] for x in ours) for k in ours[0]}
    base = {k: statistics.median(x[k] for x in ref) for k in ref[0]}
    print("\nmedian of rounds")
    print(
        f"  bare apply_async  {base['per_s']:.0f}/s  p50 {base['p50_ms']:.2f} ms  "
        f"p95 {base['p95_ms']:.2f} ms"
    )
    print(
        f"  submit()          {med['per_s']:.0f}/s  p50 {med['p50_ms']:.2f} ms  "
        f"p95 {med['p95_ms']:.2f} ms"
    )
    print(
        f"  throughput ratio submit/apply_async = {med['per_s'] / base['per_s']:.2f} "
        f"(target >= 0.5); p95 {med['p95_ms']:.2f} ms (target < 5 ms)"
    )


if __name__ == "__main__":
    main()
