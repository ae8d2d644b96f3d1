"""Fan-out: one ExportJob of 500 assets on a worker of 2 children vs the same worker with 1.

    .venv/bin/python bench/fanout.py [--assets 500] [--rounds 3]

A run of more than ``JOBENGINE_INLINE_ITEMS`` items sends each item as a message of its own; a
worker of two prefork children should then do it in half the time of one (ideal 2.0x, on this
machine's 2 cores). For each case (``fmt=orig``, and ``fmt=convert`` to a 200-wide PNG of
small images) and each round, one worker is started (``jobengine worker``, as bench/e2e.py
does) with ``--concurrency 1``, then one with ``--concurrency 2``; each is warmed up with a
one-asset job, then the 500-asset job is submitted and timed from submit() to the store
holding its run ``Done``. The reference is the same job on one child, in the same round; the
speed-up is its time over the two children's (target >= 1.8x). Prints each round and the
medians. ``BENCH_DATABASE_URL`` picks the store (default: a SQLite file of the run's own).
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from e2e import JOBENGINE, _stop  # bench/e2e.py: the worker command and its stop

CASES: dict[str, dict[str, Any]] = {
    "orig": {"fmt": "orig"},
    "convert": {"fmt": "convert", "is_modifier": "fmt=png&wid=200"},
}


def _state(run_id: int) -> str:
    from jobengine.runtime import get_runtime
    from jobengine.store.schema import Run

    with get_runtime().store.read() as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run.state


def _submit(request: dict[str, Any]) -> int:
    from sqlalchemy import select

    from jobengine import submit
    from jobengine.runtime import get_runtime
    from jobengine.store.schema import Job, Run

    handle = submit(request)
    with get_runtime().store.read() as session:
        run_id = session.scalar(
            select(Run.id).join(Job, Job.id == Run.job_id).where(Job.handle == handle)
        )
    assert run_id is not None, handle
    return int(run_id)


def _wait(run_id: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (state := _state(run_id)) in ("Queued", "Running"):
        if proc.poll() is not None:
            raise RuntimeError(log.read_text()[-2000:])
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} still {state} after {timeout} s")
        time.sleep(0.05)  # light: the bench process is not to take a core from the worker
    if state != "Done":
        raise RuntimeError(f"run {run_id} ended {state}")


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` and all its descendants."""
    total, stack = 0, [pid]
    while stack:
        proc = stack.pop()
        try:
            fields = Path(f"/proc/{proc}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
            for task in Path(f"/proc/{proc}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


def timed(
    request: dict[str, Any], warm: dict[str, Any], concurrency: int, home: Path
) -> tuple[float, float]:
    """Seconds from submit() to Done of ``request`` on a worker of ``concurrency`` children,
    and the CPU seconds the worker's processes used meanwhile."""
    log = home / f"worker-c{concurrency}-{time.monotonic_ns()}.log"
    argv = [JOBENGINE, "worker", "--concurrency", str(concurrency), "--loglevel", "warning"]
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait(_submit(warm), proc, log, 120)  # the worker is up and its children warm
        start, cpu = time.perf_counter(), _tree_cpu(proc.pid)
        _wait(_submit(request), proc, log, 900)
        return time.perf_counter() - start, _tree_cpu(proc.pid) - cpu
    finally:
        _stop(proc)


def run(n: int, rounds: int, cases: list[str], home: Path) -> None:
    from tests.support.helpers import export_request, make_company

    company, assets = make_company(n)
    print(f"{n} assets of {company}")
    results: dict[str, dict[int, list[float]]] = {c: {1: [], 2: []} for c in cases}
    cpus: dict[str, dict[int, list[float]]] = {c: {1: [], 2: []} for c in cases}
    for r in range(rounds):
        for case in cases:
            fields = CASES[case]
            for concurrency in (1, 2):
                tag = f"{case} c{concurrency} r{r} {time.monotonic_ns()}"
                request = export_request(company, assets, f"Fan {tag}")
                request["exportJob"].update(fields)
                warm = export_request(company, assets[:1], f"Warm {tag}")
                warm["exportJob"].update(fields)
                wall, cpu = timed(request, warm, concurrency, home)
                results[case][concurrency].append(wall)
                cpus[case][concurrency].append(cpu)
            one, two = results[case][1][-1], results[case][2][-1]
            busy1, busy2 = cpus[case][1][-1] / one, cpus[case][2][-1] / two
            print(f"round {r + 1} {case:<8} 1 child {one:6.2f} s   2 children {two:6.2f} s   "
                  f"speed-up {one / two:.2f}x   (worker CPU / wall: {busy1:.2f} and "
                  f"{busy2:.2f} cores; load {os.getloadavg()[0]:.2f})")  # fmt: skip
    print("\nmedians")
    for case in cases:
        one, two = (statistics.median(results[case][c]) for c in (1, 2))
        per_item = [statistics.median(cpus[case][c]) / n * 1000 for c in (1, 2)]
        print(f"  {case:<8} worker CPU per item: 1 child {per_item[0]:.1f} ms, 2 children "
              f"{per_item[1]:.1f} ms")  # fmt: skip
        print(f"  {case:<8} 1 child {one:6.2f} s ({n / one:5.1f} items/s)   2 children "
              f"{two:6.2f} s ({n / two:5.1f} items/s)   speed-up {one / two:.2f}x "
              "(ideal 2.0, target >= 1.8)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--assets", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="default: both")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="jobengine-bench-fanout-"))
    os.environ.setdefault("JOBENGINE_HOME", str(home))
    os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{home}/fan.db")
    from jobengine.embedded import broker_url, start_redis, stop_redis
    from jobengine.settings import get_settings

    settings = get_settings()
    started = not settings.redis_url and start_redis(settings)
    print(f"broker {broker_url(settings)}; store {settings.database_url}")
    try:
        run(args.assets, args.rounds, args.case or list(CASES), home)
    finally:
        if started:
            stop_redis(settings)


if __name__ == "__main__":
    main()
