"""Beat: many jobs on one cron, fired by one scheduler tick, beside bare sends of as many tasks.

    .venv/bin/python bench/beat.py [--n 10000] [--rounds 3] [--ahead SECONDS]

``n`` ExportJobs share one ``execSchedule``; each round moves them all to the same fire time
``T``, ``ahead`` + 2 seconds from now, and ticks in this process as the beat that holds the
leader lock does: a tick just after every second (``until_next_tick``), each staging the fires
due within ``ahead`` seconds (``JOBENGINE_STAGE_AHEAD``, default 5: the tick about ``ahead``
seconds before ``T`` writes the 10,000 runs as staged), until the tick at ``T`` sends them.
``--ahead 0`` is the beat without staging: the tick at ``T`` reads the due jobs, inserts their
runs and sends them. A thread pops the broker queue as messages arrive and records when each
start message came: "fire -> sent" is its arrival minus ``T``. Printed: the CPU time of the
tick at ``T`` per fire, and the CPU time of the ticks before it (the staging) per fire.

Reference, same run: ``n`` tasks of a bare Celery app sent one by one with ``apply_async``
(one producer, the same broker), arrivals recorded the same way. The ratio is jobengine's p99
over the reference's p99 (1.0: firing costs what sending costs). ``BENCH_DATABASE_URL`` picks
the store (default: a SQLite file of the run's own).

``--beats 2`` runs two real beat processes instead of the in-process tick, each doing what
``jobengine beat`` does every second (take or renew the leader lock, tick if it holds it): the
jobs are moved to a fire time a few seconds ahead, and "fire -> sent" is each arrival minus that
time. It prints how many fires each beat made and whether both fired at once (the goal: one
beat fires, the other waits).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HERE = Path(__file__).resolve().parent


class Arrivals:
    """Pops a Redis list as messages arrive and notes when each came (a thread).

    It waits for the first message with ``BRPOP``, then takes what else is already there with
    one ``RPOP`` of up to 1,000 (each noted at that pop's time): popping 10,000 queued messages
    one round trip each took the drain itself most of a second, while the beat sending them
    shares this process's GIL, and was counted as the sender's latency.
    """

    def __init__(self, client: object, key: str, n: int, patience: float = 60) -> None:
        self.client, self.key, self.n, self.patience = client, key, n, patience
        self.times: list[float] = []
        self._thread = threading.Thread(target=self._drain, daemon=True)

    def __enter__(self) -> Arrivals:
        self._thread.start()
        return self

    def _drain(self) -> None:
        while len(self.times) < self.n:
            got = self.client.brpop([self.key], timeout=self.patience)  # type: ignore[attr-defined]
            if got is None:
                return
            rest = self.client.rpop(self.key, 1000)  # type: ignore[attr-defined]
            now = time.perf_counter()
            self.times.extend([now] * (1 + len(rest or ())))

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

    client = redis.Redis.from_url(broker.replace("redis+socket://", "unix://"), socket_timeout=90)
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


def ours(n: int, broker: str, ahead: float) -> tuple[float, float, float, float]:
    """p50, p99 seconds from the fire time to each start message's arrival, the CPU seconds per
    fire of the tick at the fire time, and of the ticks before it (staging)."""
    import redis

    from jobengine.engine.scheduling import tick, until_next_tick
    from jobengine.runtime import get_runtime
    from jobengine.store.schema import utcnow

    runtime = get_runtime()
    interval = runtime.settings.beat_interval
    fire_at = utcnow().replace(microsecond=0) + timedelta(seconds=ahead + 2)
    _move_schedules(fire_at)
    client = redis.Redis.from_url(broker.replace("redis+socket://", "unix://"), socket_timeout=90)
    client.delete("jobengine")
    staging = firing = 0.0
    with Arrivals(client, "jobengine", n) as arrivals:
        while True:
            time.sleep(until_next_tick(interval))
            cpu = time.process_time()
            report = tick(runtime, ahead=ahead)
            cpu = time.process_time() - cpu
            if report.fired:
                firing = cpu
                break
            staging += cpu
            if utcnow() > fire_at + timedelta(seconds=30):
                raise RuntimeError("no tick fired")
        times = arrivals.wait()
    if len(report.fired) != n or len(times) < n:
        raise RuntimeError(f"fired {len(report.fired)}, arrived {len(times)} of {n}")
    wall = time.time() - time.perf_counter()  # arrivals are perf_counter readings
    lat = sorted(t + wall - fire_at.timestamp() for t in times)
    p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return p50, p99, firing / n, staging / n


def _move_schedules(fire_at: object) -> None:
    """Every scheduled job due at ``fire_at``. The runs of the last round end first: no worker
    starts them, and the scheduler would otherwise send their starts again (a queued run that
    waits on nothing) into the queue this round measures."""
    from sqlalchemy import update

    from jobengine.runtime import get_runtime
    from jobengine.store.schema import Job, Run

    with get_runtime().store.write() as session:
        session.execute(update(Run).where(Run.state == "Queued").values(state="Cancelled"))
        session.execute(
            update(Job)
            .where(Job.exec_schedule.is_not(None), Job.deleted_at.is_(None))
            .values(next_fire_at=fire_at, trigger_state="Normal")
        )


def beat_process(seconds: float) -> None:
    """One beat for ``seconds``, as ``jobengine beat``'s scheduler ticks (leader lock first);
    prints its ticks that fired: [start, end, fires] (wall-clock seconds)."""
    from jobengine.embedded import redis_client
    from jobengine.engine.scheduling import LeaderLock, tick, until_next_tick
    from jobengine.runtime import get_runtime

    runtime = get_runtime()
    interval = runtime.settings.beat_interval
    lock = LeaderLock(redis_client(runtime.settings), ttl=max(5.0, interval * 5))
    ticks: list[tuple[float, float, int]] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if lock.hold():
            began = time.time()
            report = tick(runtime, keep_lead=lock.hold, ahead=runtime.settings.stage_ahead)
            if report.fired:
                ticks.append((began, time.time(), len(report.fired)))
        time.sleep(until_next_tick(interval))
    lock.release()
    print(json.dumps(ticks))


def beats(n: int, broker: str, count: int) -> tuple[float, float, list[int], bool]:
    """p50, p99 seconds from the fire time to each start message's arrival with ``count`` beat
    processes running; the fires of each beat; whether two beats fired at the same time."""
    import redis

    from jobengine.settings import get_settings
    from jobengine.store.schema import utcnow

    # the beats are up and ticking before the fire time, and stage its fires ahead of it
    lead = 4.0 + count + get_settings().stage_ahead
    fire_at = utcnow().replace(microsecond=0) + timedelta(seconds=lead)
    _move_schedules(fire_at)
    client = redis.Redis.from_url(broker.replace("redis+socket://", "unix://"), socket_timeout=90)
    client.delete("jobengine")
    run_for = str(lead + 60.0)
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--beat-process", run_for],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    try:
        with Arrivals(client, "jobengine", n) as arrivals:
            times = arrivals.wait()
        outs = [child.communicate(timeout=lead + 120)[0] for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    if len(times) < n:
        raise RuntimeError(f"arrived {len(times)} of {n}; the beats fired {outs}")
    wall = time.time() - time.perf_counter()  # arrivals are perf_counter readings
    lat = sorted(t + wall - fire_at.timestamp() for t in times)
    ticks = [json.loads(out.strip().splitlines()[-1]) for out in outs]
    fires = [sum(t[2] for t in mine) for mine in ticks]
    spans = sorted((a, b) for mine in ticks for a, b, _ in mine)
    at_once = any(spans[i + 1][0] < spans[i][1] for i in range(len(spans) - 1))
    return lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))], fires, at_once


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--beats", type=int, default=0, help="beat processes (0: in process)")
    parser.add_argument("--ahead", type=float, help="seconds staged ahead (JOBENGINE_STAGE_AHEAD)")
    parser.add_argument("--beat-process", type=float, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.beat_process:  # a child of --beats: the parent set up the environment
        beat_process(args.beat_process)
        return
    if args.ahead is not None:  # the in-process ticks and the --beats children read it
        os.environ["JOBENGINE_STAGE_AHEAD"] = str(args.ahead)
    home = Path(tempfile.mkdtemp(prefix="jobengine-bench-beat-"))
    os.environ.setdefault("JOBENGINE_HOME", str(home))
    os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{home}/b.db")
    os.environ["JOBENGINE_DB_UPGRADE"] = "auto"  # a store of the bench's own
    from jobengine.embedded import broker_url, start_redis, stop_redis
    from jobengine.settings import get_settings

    settings = get_settings()
    started = not settings.redis_url and start_redis(settings)
    broker = broker_url(settings)
    print(f"broker {broker}; store {settings.database_url}; n {args.n}")
    refs, mine, cpus, stages = [], [], [], []
    try:
        setup_jobs(args.n)
        for r in range(args.rounds):
            refs.append(reference(args.n, broker))
            if args.beats:
                p50, p99, fires, at_once = beats(args.n, broker, args.beats)
                mine.append((p50, p99))
                print(f"round {r + 1}: bare apply_async p99 {refs[-1][1]:.2f} s   {args.beats} "
                      f"beats: fire->sent p50 {p50:.2f} s p99 {p99:.2f} s, fires per beat {fires}, "
                      f"{'two beats fired at once' if at_once else 'one beat fired at a time'}"
                      f"   ratio {p99 / refs[-1][1]:.2f}")  # fmt: skip
                continue
            p50, p99, cpu, staging = ours(args.n, broker, settings.stage_ahead)
            mine.append((p50, p99))
            cpus.append(cpu)
            stages.append(staging)
            print(f"round {r + 1}: bare apply_async p50 {refs[-1][0]:.2f} s p99 "
                  f"{refs[-1][1]:.2f} s   jobengine fire->sent p50 {p50:.2f} s p99 {p99:.2f} s, "
                  f"beat CPU at the fire {cpu * 1000:.3f} ms/fire, staging before it "
                  f"{staging * 1000:.3f} ms/fire   ratio {p99 / refs[-1][1]:.2f}")  # fmt: skip
    finally:
        if started:
            stop_redis(settings)
    ref99 = statistics.median(r[1] for r in refs)
    our50 = statistics.median(m[0] for m in mine)
    our99 = statistics.median(m[1] for m in mine)
    per_fire = (
        f"{statistics.median(cpus) * 1000:.3f} ms CPU/fire at the fire, "
        f"{statistics.median(stages) * 1000:.3f} ms staging (ahead {settings.stage_ahead:g} s); "
        if cpus
        else ""
    )
    print(f"median: bare p99 {ref99:.2f} s; jobengine p50 {our50:.2f} s, p99 {our99:.2f} s, "
          f"{per_fire}ratio {our99 / ref99:.2f} (target: p99 < 1 s)")  # fmt: skip


if __name__ == "__main__":
    main()
