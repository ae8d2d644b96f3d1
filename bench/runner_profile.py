"""The runner alone: ``runner.start`` of one-asset ExportJobs in a row, in this process.

    .venv/bin/python bench/runner_profile.py [--n 300] [--profile out.prof] [--top 30]

No Celery and no worker: the jobs are submitted (``submit_many``), then each run's start task
body runs here, one after the other, as a worker child would run it (a one-asset run is done
inline: claim, copy, ZIP, end, hooks). Prints jobs per second; with ``--profile``, the run
under cProfile, its statistics saved to that file and the top functions by own time and by
cumulative time printed. ``BENCH_DATABASE_URL`` picks the store (default: a SQLite file of the
run's own).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="jobengine-bench-runner-"))
    os.environ.setdefault("JOBENGINE_HOME", str(home))
    os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{home}/run.db")
    from jobengine.embedded import start_redis, stop_redis
    from jobengine.settings import get_settings

    settings = get_settings()
    started = not settings.redis_url and start_redis(settings)
    try:
        rate = _run(args.n, args.profile, args.top)
    finally:
        if started:
            stop_redis(settings)
    print(f"store {settings.database_url}: {args.n} runs, {rate:.1f} jobs/s")


def _run(n: int, profile: Path | None, top: int) -> float:
    from sqlalchemy import select

    from jobengine import submit_many
    from jobengine.engine import runner
    from jobengine.runtime import get_runtime
    from jobengine.store.schema import Job, Run
    from tests.support.helpers import export_request, make_company

    company, [asset] = make_company(1)
    tag = f"RP {time.monotonic_ns()}"
    requests = [export_request(company, [asset], f"{tag} {i}") for i in range(n)]
    for i in range(0, n, 100):
        submit_many(requests[i : i + 100])
    with get_runtime().store.read() as session:
        ids = list(
            session.scalars(
                select(Run.id).join(Job, Job.id == Run.job_id).where(Job.name.like(f"{tag} %"))
            )
        )
    runner.start(ids.pop(), "bench-warm-up")  # imports, compiled statements, connections
    profiler = cProfile.Profile() if profile else None
    begin = time.perf_counter()
    if profiler:
        profiler.enable()
    for run_id in ids:
        result = runner.start(run_id, "bench-runner")
        if result != "done":
            raise RuntimeError(f"run {run_id}: {result}")
    if profiler:
        profiler.disable()
    took = time.perf_counter() - begin
    if profiler and profile:
        profiler.dump_stats(profile)
        stats = pstats.Stats(str(profile))
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)
    return len(ids) / took


if __name__ == "__main__":
    main()
