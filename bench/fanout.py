"""Fan-out: one ExportJob of 500 assets on a worker of 2 children vs the same worker with 1.

    .venv/bin/python bench/fanout.py [--assets 500] [--rounds 3]

A run of more than ``JOBENGINE_INLINE_ITEMS`` items sends its items as messages (chunks of
up to ``JOBENGINE_ITEM_CHUNK`` items each); a worker of two prefork children should then do it
in half the time of one (ideal 2.0x, on this machine's 2 cores). For each case (``fmt=orig``,
and ``fmt=convert`` to a 200-wide PNG of small images) and each round, one worker is started
(``jobengine worker``, as bench/e2e.py does) with ``--concurrency 1``, then one with
``--concurrency 2``; each is warmed up with a job of ``WARM`` assets (a message each, so that
every child has done an item), then the 500-asset job is submitted and timed from submit()
to its run's end. The reference is the same job on one child, in the same round; the
speed-up is its time over the two children's (target >= 1.8x). Prints each round and the
medians. ``BENCH_DATABASE_URL`` picks the store (default: a SQLite file of the run's own).

The time taken is from just before submit() to the run's end as the store stamps it
(``ended_at``, written by the finishing task in the transaction that ends the run), not to
when this process, polling the store every 50 ms, sees it: with items sent in chunks the whole
fan-out of ``fmt=orig`` takes well under a second, and up to 50 ms of polling was a large and
random part of it. Each round also prints the run's three phases from the store's own times:
start (submit to the first item's job log row: planning, sending the item messages), items
(first to last item's row) and finish (last item's row to the end: the ZIP, the end), so that
what a second child cannot speed up (start and finish) is seen apart from what it can.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from e2e import JOBENGINE, _stop, process_cpu  # bench/e2e.py: the worker command, its stop

# The warm-up job: a fan-out of this many assets (a message each), so that every child of the
# worker has done an item, its connections, statements and conversion helper ready, before
# the timed job (one warmed child, as before session 9, left the second child's conversion
# helper to start inside the timed window, about 0.7 s of a two-child `convert`).
WARM = 8

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


def _phases(run_id: int, submitted: datetime) -> tuple[float, float, float]:
    """Seconds of the run's start (submit to its first item's log row), items (first to last
    item's row) and finish (last item's row to the run's end), from the store's own times."""
    from sqlalchemy import func, select

    from jobengine.runtime import get_runtime
    from jobengine.store.schema import LogDetail, Run

    with get_runtime().store.read() as session:
        run = session.get(Run, run_id)
        assert run is not None and run.ended_at is not None
        first, last = session.execute(
            select(func.min(LogDetail.created_at), func.max(LogDetail.created_at)).where(
                LogDetail.run_id == run_id, LogDetail.asset_handle.is_not(None)
            )
        ).one()
        ended = run.ended_at
    first, last = (t.replace(tzinfo=UTC) if t.tzinfo is None else t for t in (first, last))
    return (
        (first - submitted).total_seconds(),
        (last - first).total_seconds(),
        (ended - last).total_seconds(),
    )


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
    total, stack = 0.0, [pid]
    while stack:
        proc = stack.pop()
        total += process_cpu(proc)
        try:
            for task in Path(f"/proc/{proc}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def timed(
    request: dict[str, Any], warm: dict[str, Any], concurrency: int, home: Path
) -> tuple[float, float, tuple[float, float, float]]:
    """Seconds from submit() to the end of ``request``'s run (as the store stamps it) on a
    worker of ``concurrency`` children, the CPU seconds the worker's processes used meanwhile,
    and the run's phases (start, items, finish)."""
    log = home / f"worker-c{concurrency}-{time.monotonic_ns()}.log"
    argv = [JOBENGINE, "worker", "--concurrency", str(concurrency), "--loglevel", "warning"]
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait(_submit(warm), proc, log, 120)  # the worker is up and each of its children warm
        submitted, cpu = datetime.now(UTC), _tree_cpu(proc.pid)
        run_id = _submit(request)
        _wait(run_id, proc, log, 900)
        cpu = _tree_cpu(proc.pid) - cpu
        phases = _phases(run_id, submitted)
        return sum(phases), cpu, phases
    finally:
        _stop(proc)


def run(n: int, rounds: int, cases: list[str], home: Path) -> None:
    from tests.support.helpers import export_request, make_company

    company, assets = make_company(n)
    print(f"{n} assets of {company}")
    results: dict[str, dict[int, list[float]]] = {c: {1: [], 2: []} for c in cases}
    cpus: dict[str, dict[int, list[float]]] = {c: {1: [], 2: []} for c in cases}
    phases: dict[str, dict[int, list[tuple[float, float, float]]]] = {
        c: {1: [], 2: []} for c in cases
    }
    for r in range(rounds):
        for case in cases:
            fields = CASES[case]
            for concurrency in (1, 2):
                tag = f"{case} c{concurrency} r{r} {time.monotonic_ns()}"
                request = export_request(company, assets, f"Fan {tag}")
                request["exportJob"].update(fields)
                warm = export_request(company, assets[:WARM], f"Warm {tag}")
                warm["exportJob"].update(fields)
                wall, cpu, parts = timed(request, warm, concurrency, home)
                results[case][concurrency].append(wall)
                cpus[case][concurrency].append(cpu)
                phases[case][concurrency].append(parts)
            one, two = results[case][1][-1], results[case][2][-1]
            busy1, busy2 = cpus[case][1][-1] / one, cpus[case][2][-1] / two
            print(f"round {r + 1} {case:<8} 1 child {one:6.2f} s   2 children {two:6.2f} s   "
                  f"speed-up {one / two:.2f}x   (worker CPU / wall: {busy1:.2f} and "
                  f"{busy2:.2f} cores; load {os.getloadavg()[0]:.2f})")  # fmt: skip
            for c in (1, 2):
                start, items, end = phases[case][c][-1]
                print(f"    c{c} phases: start {start:.3f} s, items {items:.3f} s, "
                      f"finish {end:.3f} s")  # fmt: skip
    print("\nmedians")
    for case in cases:
        one, two = (statistics.median(results[case][c]) for c in (1, 2))
        per_item = [statistics.median(cpus[case][c]) / n * 1000 for c in (1, 2)]
        print(f"  {case:<8} worker CPU per item: 1 child {per_item[0]:.1f} ms, 2 children "
              f"{per_item[1]:.1f} ms")  # fmt: skip
        print(f"  {case:<8} 1 child {one:6.2f} s ({n / one:5.1f} items/s)   2 children "
              f"{two:6.2f} s ({n / two:5.1f} items/s)   speed-up {one / two:.2f}x "
              "(ideal 2.0, target >= 1.8)")  # fmt: skip
        mid = [[statistics.median(p[k] for p in phases[case][c]) for k in range(3)] for c in (1, 2)]
        (s1, i1, f1), (s2, i2, f2) = mid
        print(f"  {case:<8} phases, 1 child / 2 children: start {s1:.3f} / {s2:.3f} s, "
              f"items {i1:.3f} / {i2:.3f} s ({i1 / i2:.2f}x), finish {f1:.3f} / "
              f"{f2:.3f} s")  # fmt: skip


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
