"""End to end: small jobs through a real worker, beside a bare Celery worker draining no-ops.

    .venv/bin/python bench/e2e.py [--n 1000] [--rounds 3] [--concurrency 2] [--prefetch 1]

Both sides run one worker process tree (prefork, ``--concurrency`` children, ``acks_late``,
prefetch 1) on the same Redis, with their queue filled before the worker starts, and are timed
from the first piece of work done (start-up excluded) to the last:

* reference: ``n`` no-op tasks of a bare Celery app (``bench/noop_app.py``; each counts itself
  with one Redis ``INCR``);
* jobengine: ``n`` one-asset ExportJobs (``fmt=orig``), submitted with ``submit_many``, run by
  ``jobengine worker``: each run copies its asset, writes its ZIP and its job log; done when
  the store has ``n`` runs ``Done``.

``--prefetch N`` starts our worker with ``--prefetch N`` (the reference keeps prefetch 1): the
figure of a worker set up for small jobs only, beside the default's, never instead of it.

Prints each round, then the medians and the ratio (jobs/s over tasks/s). With each side's rate,
the CPU time its worker spent per job while timed (Linux, from ``/proc``): its main process
(Celery's consumer: fetching, acknowledging, events) and its pool processes together.
``BENCH_DATABASE_URL`` picks the store (default: a SQLite file of the run's own).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HERE = Path(__file__).resolve().parent
JOBENGINE = str(Path(sys.executable).parent / "jobengine")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used (``/proc``); 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime (fields 14 and 15)


class WorkerCpu:
    """CPU seconds used by a worker's main process and by its pool processes (``/proc``)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = self.read()

    def read(self) -> tuple[float, float]:
        try:
            kids = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            kids = []
        return process_cpu(self.pid), sum(process_cpu(int(k)) for k in kids)

    def per_job(self, jobs: int) -> tuple[float, float]:
        """Milliseconds per job since this was made: (main, pool)."""
        main, pool = self.read()
        return (main - self.start[0]) * 1000 / jobs, (pool - self.start[1]) * 1000 / jobs


Side = tuple[float, float, float]  # per second, then main and pool CPU ms per job


def reference(n: int, concurrency: int, broker: str, home: Path) -> Side:
    """Tasks per second of a bare Celery worker draining ``n`` no-ops."""
    import redis

    env = {**os.environ, "BENCH_BROKER_URL": broker, "PYTHONPATH": str(HERE)}
    redis_url = broker.replace("redis+socket://", "unix://")
    os.environ["BENCH_BROKER_URL"] = broker
    sys.path.insert(0, str(HERE))
    import noop_app

    client = redis.Redis.from_url(redis_url)
    client.delete("bench:noop:done", "bench-noop")
    with noop_app.app.connection_for_write() as conn:  # its own: jobengine resets the pools
        producer = noop_app.app.amqp.Producer(conn)
        for i in range(n):
            noop_app.noop.apply_async((i,), producer=producer)
    log = home / f"noop-{time.monotonic_ns()}.log"
    argv = [sys.executable, "-m", "celery", "-A", "noop_app", "worker", "--pool", "prefork",
            "--concurrency", str(concurrency), "--loglevel", "warning", "-n", "noop@%h",
            "--without-mingle", "--without-gossip"]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=HERE)
    try:  # timed from the first task done (the worker's start-up is not the work)
        while int(client.get("bench:noop:done") or 0) < 1:
            if proc.poll() is not None:
                raise RuntimeError(log.read_text()[-2000:])
            time.sleep(0.001)
        start, cpu = time.perf_counter(), WorkerCpu(proc.pid)
        first = 1
        while int(client.get("bench:noop:done") or 0) < n:
            time.sleep(0.005)
        took = time.perf_counter() - start
        main, pool = cpu.per_job(n - first)
    finally:
        _stop(proc)
    return (n - first) / took, main, pool


def ours(n: int, concurrency: int, home: Path, prefetch: int = 1) -> Side:
    """Jobs per second of ``jobengine worker`` running ``n`` one-asset exports."""
    from sqlalchemy import func, select

    from jobengine import submit_many
    from jobengine.runtime import get_runtime
    from jobengine.store.schema import Run
    from tests.support.helpers import export_request, make_company

    company, [asset] = make_company(1)
    requests = [export_request(company, [asset], f"E2E {time.monotonic_ns()} {i}")
                for i in range(n)]  # fmt: skip
    for i in range(0, n, 100):
        submit_many(requests[i : i + 100])
    store, company_id = get_runtime().store, _company_id(company)
    count = select(func.count()).select_from(Run)
    count = count.where(Run.state == "Done", Run.company_id == company_id)

    def done() -> int:
        with store.read() as session:
            return int(session.scalar(count) or 0)

    log = home / f"worker-{time.monotonic_ns()}.log"
    argv = [JOBENGINE, "worker", "--concurrency", str(concurrency), "--loglevel", "warning",
            "--prefetch", str(prefetch)]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        while done() < 1:
            if proc.poll() is not None:
                raise RuntimeError(log.read_text()[-2000:])
            time.sleep(0.002)
        start, first, cpu = time.perf_counter(), done(), WorkerCpu(proc.pid)
        while done() < n:
            time.sleep(0.02)
        took = time.perf_counter() - start
        main, pool = cpu.per_job(n - first)
    finally:
        _stop(proc)
    return (n - first) / took, main, pool


def _company_id(handle: str) -> int:
    from jobengine.assets.catalog import company_by_handle
    from jobengine.runtime import get_runtime

    with get_runtime().store.read() as session:
        return company_by_handle(session, handle).id


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--prefetch", type=int, default=1)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="jobengine-bench-e2e-"))
    os.environ.setdefault("JOBENGINE_HOME", str(home))
    os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{home}/e2e.db")
    from jobengine.embedded import broker_url, start_redis, stop_redis
    from jobengine.settings import get_settings

    settings = get_settings()
    started = not settings.redis_url and start_redis(settings)
    broker = broker_url(settings)
    print(f"broker {broker}; store {settings.database_url}; n {args.n}, c{args.concurrency}, "
          f"our prefetch {args.prefetch}")  # fmt: skip
    refs, jobs = [], []
    try:
        for r in range(args.rounds):
            ref_side = reference(args.n, args.concurrency, broker, home)
            our_side = ours(args.n, args.concurrency, home, args.prefetch)
            refs.append(ref_side[0])
            jobs.append(our_side[0])
            print(f"round {r + 1}: bare Celery no-ops {refs[-1]:7.0f} tasks/s "
                  f"(CPU a task: main {ref_side[1]:.2f} ms, pool {ref_side[2]:.2f} ms)   "
                  f"jobengine one-asset exports {jobs[-1]:6.1f} jobs/s "
                  f"(CPU a job: main {our_side[1]:.2f} ms, pool {our_side[2]:.2f} ms)   "
                  f"ratio {jobs[-1] / refs[-1]:.3f}")  # fmt: skip
    finally:
        if started:
            stop_redis(settings)
    ref, job = statistics.median(refs), statistics.median(jobs)
    print(f"median: bare {ref:.0f} tasks/s, jobengine {job:.1f} jobs/s, ratio {job / ref:.3f} "
          f"(target >= 0.3)")  # fmt: skip


if __name__ == "__main__":
    main()
