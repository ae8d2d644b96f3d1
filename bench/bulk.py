"""Bulk submission: submit_many() of 10,000 jobs beside 10,000 bare ``apply_async`` calls.

    .venv/bin/python bench/bulk.py [--n 10000] [--rounds 3] [--paths both]

Three sides, same run, same (embedded) Redis, all publishing to a queue no worker reads (purged
after each round):

* ``bare apply_async``: the reference, a plain Celery app's ``apply_async`` of a no-op
  (``ignore_result=True``), one call per job, as ``bench/submit.py``'s bare side;
* ``submit_many() x100`` and ``x1000``: ExportJobs of 3 assets through ``submit_many()`` in
  batches of 100 and of 1,000 jobs: parse and validate, look up the company and the assets,
  record the jobs and their runs (marked sent) in one transaction, then the start messages and
  their ``task-sent`` events in one pipelined round trip.

``--paths both`` (PostgreSQL): each batch size twice, by ``bulk.record_pipelined`` (the way
submit_many() takes there) and by ``bulk.record_many`` (the statements one after the other,
forced for that side by this benchmark only).

The sides take turns a thousand jobs at a time, so that load from elsewhere on the (shared)
machine weighs on each alike. Prints jobs per second for each side, the medians of the rounds
and the ratios to the reference (target: at least 5x), and the median time of a batch of each
batch side over all rounds (steadier than throughput on a loaded machine).
``BENCH_DATABASE_URL`` picks the store (default: a SQLite file of the run's own); give it a
database of its own, which the benchmark migrates (``JOBENGINE_DB_UPGRADE=auto`` unless set)
and fills with jobs.
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TURN = 1000  # jobs per side per turn


def _bare_task(app: Any) -> Any:
    from celery import Celery

    bare = Celery("bare", broker=app.conf.broker_url, backend=app.conf.result_backend)
    bare.conf.update(task_serializer="json", accept_content=["json"], task_default_queue="bench")

    def noop(i: int) -> None:
        return None

    return bare.task(name="bench.noop", ignore_result=True)(noop)


def _bare(plain: Any, turn: int) -> None:
    for i in range(turn * TURN, (turn + 1) * TURN):
        plain.apply_async((i,))


def _batches(requests: list[dict[str, Any]], size: int, times: list[float]) -> None:
    """submit_many() of ``requests`` in batches of ``size``, each batch's time kept."""
    from jobengine import submit_many

    for k in range(0, len(requests), size):
        t0 = time.perf_counter()
        submit_many(requests[k : k + size])
        times.append(time.perf_counter() - t0)


def _by_record_many(
    call: Callable[[list[dict[str, Any]], int, list[float]], None],
    requests: list[dict[str, Any]],
    size: int,
    times: list[float],
) -> Callable[[], None]:
    """``call`` with submit_many() recording by ``bulk.record_many`` on PostgreSQL too (its
    statements one after the other): what decides the way, switched for the call."""
    from jobengine.engine import submission

    def by_record_many() -> None:
        pipelines = submission.pipelines  # type: ignore[attr-defined]
        setattr(submission, "pipelines", lambda conn: False)  # noqa: B010
        try:
            call(requests, size, times)
        finally:
            setattr(submission, "pipelines", pipelines)  # noqa: B010

    return by_record_many


def run(n: int, rounds: int, both: bool) -> None:
    from jobengine import submit_many
    from jobengine.engine.app import app, configure
    from jobengine.settings import get_settings
    from tests.support.helpers import export_request, make_company

    configure(task_default_queue="bench")
    print(f"broker {app.conf.broker_url}; store {get_settings().database_url}; n {n}")
    company, assets = make_company(3)
    request = export_request(company, assets, "Bulk")
    plain = _bare_task(app)
    submit_many([{**request, "jobName": f"Warm {i}"} for i in range(2)])  # connections, caches
    plain.apply_async((0,))
    labels = {
        "bare": "bare apply_async",
        "x100": "submit_many() x100",
        "x1000": "submit_many() x1000",
    }
    if both:
        labels = {
            "bare": labels["bare"],
            "x100": "x100 record_pipelined",
            "x100m": "x100 record_many",
            "x1000": "x1000 record_pipelined",
            "x1000m": "x1000 record_many",
        }
    results: dict[str, list[float]] = {side: [] for side in labels}
    batch_times: dict[str, list[float]] = {side: [] for side in labels}  # every round's
    for r in range(rounds):
        took = dict.fromkeys(labels, 0.0)
        for turn in range(n // TURN):
            names = [f"R{r}-{turn}-{i}" for i in range(TURN)]

            def named(prefix: str, names: list[str] = names) -> list[dict[str, Any]]:
                return [{**request, "jobName": f"{prefix}{name}"} for name in names]

            sides: dict[str, Callable[[], object]] = {
                "bare": functools.partial(_bare, plain, turn),
                "x100": functools.partial(_batches, named("H"), 100, batch_times["x100"]),
                "x1000": functools.partial(_batches, named("K"), TURN, batch_times["x1000"]),
            }
            if both:  # the same by record_many, which goes first every other turn
                many = {
                    "x100m": _by_record_many(_batches, named("M"), 100, batch_times["x100m"]),
                    "x1000m": _by_record_many(_batches, named("N"), TURN, batch_times["x1000m"]),
                }
                sides = {**many, **sides} if turn % 2 else {**sides, **many}
            for side, call in sides.items():
                t0 = time.perf_counter()
                call()
                took[side] += time.perf_counter() - t0
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge("bench")
        done = (n // TURN) * TURN
        line = []
        for side, label in labels.items():
            results[side].append(done / took[side])
            line.append(f"{label} {results[side][-1]:,.0f}/s")
        ref = results["bare"][-1]
        print(
            f"round {r + 1}: "
            + ", ".join(line)
            + f"; ratios x100 {results['x100'][-1] / ref:.2f}, "
            f"x1000 {results['x1000'][-1] / ref:.2f}"
        )
    med = {side: statistics.median(values) for side, values in results.items()}
    print(f"\nmedian of {rounds} rounds of {done:,} jobs per side")
    for side, label in labels.items():
        print(f"  {label:<24} {med[side]:8,.0f} jobs/s  ratio {med[side] / med['bare']:.2f}")
    for side, label in labels.items():
        if batch_times[side]:
            p50 = statistics.median(batch_times[side]) * 1000
            print(f"  {label + ' batch':<24} {p50:8.1f} ms  (median of {len(batch_times[side])})")
    print("  (target: submit_many() at least 5x bare apply_async)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--paths", choices=["auto", "both"], default="auto")
    args = parser.parse_args()
    if args.n < TURN:
        parser.error(f"--n must be at least {TURN}")
    home = tempfile.mkdtemp(prefix="jobengine-bench-bulk-")
    os.environ.setdefault("JOBENGINE_HOME", home)
    os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{home}/bulk.db")
    os.environ.setdefault("JOBENGINE_DB_UPGRADE", "auto")
    from jobengine.embedded import start_redis, stop_redis
    from jobengine.settings import get_settings

    settings = get_settings()
    started = not settings.redis_url and start_redis(settings)
    try:
        run(args.n, args.rounds, args.paths == "both")
    finally:
        if started:
            stop_redis(settings)


if __name__ == "__main__":
    main()
