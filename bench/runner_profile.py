"""The runner alone: ``runner.start`` of one-asset ExportJobs in a row, in this process.

    .venv/bin/python bench/runner_profile.py [--n 300] [--procs 1] [--profile out.prof] [--top 30]

No Celery and no worker: the jobs are submitted (``submit_many``), then each run's start task
body runs here, one after the other, as a worker child would run it (a one-asset run is done
inline: claim, copy, ZIP, end, hooks). Prints jobs per second; with ``--profile``, the run
under cProfile, its statistics saved to that file and the top functions by own time and by
cumulative time printed. Also prints the CPU time and the wall time a job of the loop (this
process's: a PostgreSQL server's own CPU is not in it).

``--procs 2``: the runs split between two forked processes running at once on the same store,
as two worker children would (each prints its own CPU and wall a job; the rate is of both):
what the store's locks and caches cost two children, without Celery around them.
On PostgreSQL on this machine, also the server's CPU time a job (its processes serving the
store, and its log writer). ``BENCH_DATABASE_URL`` picks the store (default: a SQLite file of
the run's own).
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
from typing import Any

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from e2e import process_cpu  # bench/e2e.py: a process's CPU time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--procs", type=int, default=1)
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
        rate = _run(args.n, args.profile, args.top, args.procs)
    finally:
        if started:
            stop_redis(settings)
    print(f"store {settings.database_url}: {args.n} runs, {rate:.1f} jobs/s")


def _run(n: int, profile: Path | None, top: int, procs: int = 1) -> float:
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
    server = ServerCpu(get_runtime().store.engine)
    begin = time.perf_counter()
    if procs > 1:
        rate = _forked(ids, procs) / (time.perf_counter() - begin)
    else:
        rate = _loop(ids, profile, top)
    server.report(len(ids))
    return rate


class ServerCpu:
    """The CPU time a PostgreSQL server on this machine spends for the runs (Linux ``/proc``):
    its processes serving the store's database (those connected when this is made; the pool's
    connections are open by then) and its log writer, which flushes the commits. Nothing on
    SQLite, nor for a server elsewhere or of another user (unreadable ``/proc``)."""

    def __init__(self, engine: Any) -> None:
        self.pids: list[int] = []
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                self.pids = list(conn.scalars(text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "OR backend_type = 'walwriter'")))  # fmt: skip
        self.start = self.read()

    def read(self) -> float:
        return sum(process_cpu(pid) for pid in self.pids)

    def report(self, jobs: int) -> None:
        if self.pids:
            used = (self.read() - self.start) * 1000 / jobs
            print(f"PostgreSQL server ({len(self.pids)} processes): CPU a job {used:.2f} ms")


def _forked(ids: list[int], procs: int) -> int:
    """Run ``ids`` split between ``procs`` forked processes at once; the runs done."""
    from jobengine.runtime import get_runtime

    store = get_runtime().store
    for engine in {store.engine, store.read_engine}:
        engine.dispose(close=False)  # each child its own connections
    pids = []
    for k in range(procs):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _loop(ids[k::procs], None, 0)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    failed = [pid for pid in pids if os.waitpid(pid, 0)[1] != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} of the processes failed")
    return len(ids)


def _loop(ids: list[int], profile: Path | None, top: int) -> float:
    """Start each run of ``ids`` here in turn; jobs per second."""
    from jobengine.engine import runner

    profiler = cProfile.Profile() if profile else None
    begin, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    for run_id in ids:
        result = runner.start(run_id, "bench-runner")
        if result != "done":
            raise RuntimeError(f"run {run_id}: {result}")
    if profiler:
        profiler.disable()
    took, cpu = time.perf_counter() - begin, time.process_time() - cpu
    print(f"process {os.getpid()}: {len(ids)} runs, CPU a job {cpu * 1000 / len(ids):.2f} ms, "
          f"wall a job {took * 1000 / len(ids):.2f} ms")  # fmt: skip
    if profiler and profile:
        profiler.dump_stats(profile)
        stats = pstats.Stats(str(profile))
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)
    return len(ids) / took


if __name__ == "__main__":
    main()
