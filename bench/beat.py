"""Beat: many jobs on one cron, fired by one scheduler tick, beside bare sends of as many tasks.

    .venv/bin/python bench/beat.py [--n 10000] [--rounds 3]

``n`` ExportJobs share one ``execSchedule``; each round moves them all to the same fire time
``T`` (one second ago) and runs one scheduler tick at ``T`` in this process, as the beat that
holds the leader lock does. A thread pops the broker queue as messages arrive and records when
each start message came: "fire -> sent" is its arrival minus the tick's start (the beat ticks at
the fire time). The beat's CPU time per fire is the tick's process time over ``n``.

Reference, same run: ``n`` tasks of a bare Celery app sent one by one with ``apply_async``
(one producer, the same broker), arrivals recorded the same way. The ratio is jobengine's p99
over the reference's p99 (1.0: firing costs what sending costs). ``BENCH_DATABASE_URL`` picks
the store (default: a SQLite file of the run's own).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HERE = Path(__file__).resolve().parent


class Arrivals:
    """Pops a Redis list as messages arrive and notes when each came (a thread)."""

    def __init__(self, client: object, key: str, n: int) -> None:
        self.client, self.key, self.n = client, key, n
        self.times: list[float] = []
        self._thread = threading.Thread(target=self._drain, daemon=True)

    def __enter__(self) -> Arrivals:
        self._thread.start()
        return self

    def _drain(self) -> None:
        while len(self.times) < self.n:
            got = self.client.brpop([self.key], timeout=60)  # type: ignore[attr-defined]
            if got is None:
                return
            self.times.append(time.perf_counter())

    def wait(self) -> list[float]:
        self._thread.join(300)
        return self.times

    def __exit__(self, *exc: object) -> None:
        self._thread.join(1)


def _percentiles(start: float, times: list[float]) -> tuple[float, float]:
    lat = sorted(t - start for t in times)
    return lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]


def reference(n: int, broker: str) -> tuple[float, float]:
    """p50, p99 seconds from the first send to each message's arrival: bare ``apply_async``."""
    import redis

    os.environ["BENCH_BROKER_URL"] = broker
    sys.path.insert(0, str(HERE))
    import noop_app

    client = redis.Redis.from_url(broker.replace("redis+socket://", "unix://"))
    client.delete("bench-noop")
    with Arrivals(client, "bench-noop", n) as arrivals, noop_app.app.connection_for_write() as c:
        producer = noop_app.app.amqp.Producer(c)
        start = time.perf_counter()
        for i in range(n):
            noop_app.noop.apply_async((i,), producer=producer)
        times = arrivals.wait()
    if len(times) < n:
        raise RuntimeError(f"reference: {len(times)} of {n} messages arrived")
    return _percentiles(start, times)


def setup_jobs(n: int) -> None:
    """``n`` ExportJobs on one cron schedule (far in the future until a round moves them)."""
    from jobengine import submit_many
    from tests.support.helpers import export_request, make_company

    company, [asset] = make_company(1)
    for i in range(0, n, 1000):
        submit_many(
            [
                export_request(company, [asset], f"Beat {j}", execSchedule="0 0 0 1 1 ? 2099")
                for j in range(i, min(n, i + 1000))
            ]
        )


def ours(n: int, broker: str) -> tuple[float, float, float]:
    """p50, p99 seconds from the tick's start to each start message's arrival, and the tick's
    CPU seconds per fire."""
    import redis
    from sqlalchemy import update

    from jobengine.engine.scheduling import tick
    from jobengine.runtime import get_runtime
    from jobengine.store.schema import Job, utcnow

    runtime = get_runtime()
    fire_at = utcnow().replace(microsecond=0) - timedelta(seconds=1)
    with runtime.store.write() as session:
        session.execute(
            update(Job)
            .where(Job.exec_schedule.is_not(None), Job.deleted_at.is_(None))
            .values(next_fire_at=fire_at, trigger_state="Normal")
        )
    client = redis.Redis.from_url(broker.replace("redis+socket://", "unix://"))
    client.delete("jobengine")
    with Arrivals(client, "jobengine", n) as arrivals:
        start, cpu = time.perf_counter(), time.process_time()
        report = tick(runtime, fire_at + timedelta(milliseconds=5))
        cpu = time.process_time() - cpu
        times = arrivals.wait()
    if len(report.fired) != n or len(times) < n:
        raise RuntimeError(f"fired {len(report.fired)}, arrived {len(times)} of {n}")
    p50, p99 = _percentiles(start, times)
    return p50, p99, cpu / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="jobengine-bench-beat-"))
    os.environ.setdefault("JOBENGINE_HOME", str(home))
    os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{home}/b.db")
    from jobengine.embedded import broker_url, start_redis, stop_redis
    from jobengine.settings import get_settings

    settings = get_settings()
    started = not settings.redis_url and start_redis(settings)
    broker = broker_url(settings)
    print(f"broker {broker}; store {settings.database_url}; n {args.n}")
    refs, mine, cpus = [], [], []
    try:
        setup_jobs(args.n)
        for r in range(args.rounds):
            refs.append(reference(args.n, broker))
            p50, p99, cpu = ours(args.n, broker)
            mine.append((p50, p99))
            cpus.append(cpu)
            print(f"round {r + 1}: bare apply_async p50 {refs[-1][0]:.2f} s p99 "
                  f"{refs[-1][1]:.2f} s   jobengine fire->sent p50 {p50:.2f} s p99 {p99:.2f} s, "
                  f"beat CPU {cpu * 1000:.2f} ms/fire   ratio {p99 / refs[-1][1]:.2f}")  # fmt: skip
    finally:
        if started:
            stop_redis(settings)
    ref99 = statistics.median(r[1] for r in refs)
    our50 = statistics.median(m[0] for m in mine)
    our99 = statistics.median(m[1] for m in mine)
    print(f"median: bare p99 {ref99:.2f} s; jobengine p50 {our50:.2f} s, p99 {our99:.2f} s, "
          f"{statistics.median(cpus) * 1000:.2f} ms CPU/fire; ratio {our99 / ref99:.2f} "
          f"(target: p99 < 1 s)")  # fmt: skip


if __name__ == "__main__":
    main()
