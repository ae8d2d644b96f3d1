"""submit() beside bare Celery ``apply_async`` of a no-op, on the same Redis, in the same run.

    .venv/bin/python bench/submit.py [--n 2000] [--rounds 3]

Five sides, all publishing to a queue no worker reads (purged afterwards), taking turns a hundred
calls at a time so that load from elsewhere on the machine weighs on each alike:

* ``bare``: a plain Celery app's ``apply_async`` of a no-op (``ignore_result=True``);
* ``same config``: the no-op sent through jobengine's own Celery app, so with its settings
  (the ``task-sent`` event Flower needs is a second broker round trip per message);
* ``submit()``: everything a real submission does: parse and validate, look up the company and
  assets, commit the job and its run (the outbox, marked sent), publish the task message and its
  ``task-sent`` event;
* ``submit_many()``: the same for batches of 100 jobs (one transaction, one round trip);
* ``bare + commit``: the bare ``apply_async`` after one durable transaction of its own on the
  same database (one INSERT of a row about the size of a job's, committed, on a plain DBAPI
  connection with the store's durability settings: no pool, no checks). It is the floor a
  submit cannot go under while its record is committed before its message leaves, so the
  ``submit()/bare + commit`` ratio tells what the engine itself costs, apart from the store's
  commit (an fsync of the WAL on PostgreSQL).

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


class Side:
    """One side of the comparison: its calls' latencies and the time they took in all."""

    def __init__(self, label: str, per_call: int = 1) -> None:
        self.label, self.per_call = label, per_call
        self.latencies: list[float] = []
        self.total = 0.0

    def run(self, call: Callable[[int], object], indices: range) -> None:
        for i in indices:
            t0 = time.perf_counter()
            call(i)
            took = time.perf_counter() - t0
            self.latencies.append(took)
            self.total += took

    def stats(self) -> Stats:
        lat = sorted(self.latencies)
        return {
            "per_s": len(lat) * self.per_call / self.total,
            "p50_ms": statistics.median(lat) * 1000,
            "p95_ms": lat[int(len(lat) * 0.95)] * 1000,
        }


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


_COMMIT_TABLE = "bench_commit"


def _committer(url: str) -> Callable[[int], None]:
    """One durable INSERT, committed, on a plain DBAPI connection to the store's database: the
    cost of the commit alone (the store's own settings: SQLite WAL with ``synchronous=NORMAL``,
    PostgreSQL with its default ``synchronous_commit=on``)."""
    payload = "x" * 400  # about a job row's payload
    if url.startswith("sqlite"):
        import sqlite3

        db = sqlite3.connect(url.split("///", 1)[1], isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=30000")
        db.execute(f"CREATE TABLE IF NOT EXISTS {_COMMIT_TABLE} (id INTEGER PRIMARY KEY, p TEXT)")
        insert = f"INSERT INTO {_COMMIT_TABLE} (p) VALUES (?)"

        def commit_sqlite(i: int) -> None:
            db.execute("BEGIN IMMEDIATE")
            db.execute(insert, (payload,))
            db.execute("COMMIT")

        return commit_sqlite
    import psycopg

    pg = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
    pg.execute(f"CREATE TABLE IF NOT EXISTS {_COMMIT_TABLE} (id serial PRIMARY KEY, p text)")
    statement = f"INSERT INTO {_COMMIT_TABLE} (p) VALUES (%s)"

    def commit_pg(i: int) -> None:  # autocommit: the statement is its own transaction
        pg.execute(statement, (payload,))

    return commit_pg


def run(n: int, rounds: int) -> None:
    from jobengine import submit, submit_many
    from jobengine.engine.app import app, configure
    from jobengine.settings import get_settings
    from tests.support.helpers import export_request, make_company

    configure(task_default_queue="bench")
    print(f"broker {app.conf.broker_url}; store {get_settings().database_url}")
    company, assets = make_company(3)
    request = export_request(company, assets, "Bench")
    plain, same = _noop_tasks(app)
    commit = _committer(get_settings().database_url)
    submit(request)  # warm up connections, caches and the store
    plain.apply_async((0,))
    same.apply_async((0,))
    labels = {
        "bare": "bare apply_async",
        "same": "same config",
        "submit": "submit()",
        "many": "submit_many()/job",
        "commit": "bare + commit",
    }
    results: dict[str, list[Stats]] = {side: [] for side in labels}
    chunk = 100
    for r in range(rounds):
        sides = {side: Side(label) for side, label in labels.items()}
        sides["many"] = Side(labels["many"], per_call=chunk)
        named = [{**request, "jobName": f"B{r}-{i}"} for i in range(n)]  # producers name jobs
        batches = [
            [{**request, "jobName": f"M{r}-{i}-{k}"} for k in range(chunk)]
            for i in range(n // chunk)
        ]

        # The sides take turns, a hundred calls each, so that a change in the machine's load
        # (it is shared) weighs on all of them alike.
        def bare_call(i: int) -> object:
            return plain.apply_async((i,))

        def same_call(i: int) -> object:
            return same.apply_async((i,))

        def submit_call(i: int, named: list[dict[str, Any]] = named) -> object:
            return submit(named[i])

        def commit_call(i: int) -> object:
            commit(i)
            return plain.apply_async((i,))

        def many_call(i: int, batches: list[list[dict[str, Any]]] = batches) -> object:
            return submit_many(batches[i])

        for c in range(n // chunk):
            span = range(c * chunk, (c + 1) * chunk)
            sides["bare"].run(bare_call, span)
            sides["same"].run(same_call, span)
            sides["submit"].run(submit_call, span)
            sides["commit"].run(commit_call, span)
            sides["many"].run(many_call, range(c, c + 1))
        print(f"round {r + 1}")
        for side, runner in sides.items():
            stats = runner.stats()
            results[side].append(stats)
            print(
                f"  {runner.label:<20} {stats['per_s']:8.0f}/s  p50 {stats['p50_ms']:.2f} ms  "
                f"p95 {stats['p95_ms']:.2f} ms"
            )
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("bench")
    med = {side: _median(stats) for side, stats in results.items()}
    print("\nmedian of rounds (submit_many latencies are per batch of 100)")
    for side, label in labels.items():
        m = med[side]
        print(
            f"  {label:<18} {m['per_s']:6.0f}/s  p50 {m['p50_ms']:.2f} ms  p95 {m['p95_ms']:.2f} ms"
        )
    ours = med["submit"]["per_s"]
    print(
        f"  submit()/bare = {ours / med['bare']['per_s']:.2f}, "
        f"submit()/same config = {ours / med['same']['per_s']:.2f} (target >= 0.7); "
        f"submit() p95 {med['submit']['p95_ms']:.2f} ms (target < 5 ms)"
    )
    floor = med["commit"]["per_s"]
    print(
        f"  bare + commit/bare = {floor / med['bare']['per_s']:.2f} (what the durable commit "
        f"alone leaves of bare), submit()/bare + commit = {ours / floor:.2f}"
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
