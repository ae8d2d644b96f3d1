"""The scheduler fires due schedules in batches (issue 14): each fire time once, across batches,
beside a second beat, and a tick that loses the lead stops firing."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from jobengine import submit_many
from jobengine.embedded import redis_client
from jobengine.engine import scheduling
from jobengine.engine.scheduling import tick
from jobengine.runtime import get_runtime
from jobengine.settings import get_settings
from jobengine.store.jobs import NewRun, insert_runs, untaken_fires
from jobengine.store.schema import Job, Run
from tests.support.helpers import export_request, make_company

Queue = tuple[dict[str, str], str]
LONG_AGO = datetime(2001, 1, 1, tzinfo=UTC)  # before any other test's schedule: fired first


def _schedules(prefix: str, n: int, fire_at: datetime = LONG_AGO) -> None:
    company, assets = make_company(1)
    submit_many(
        [
            export_request(company, assets, f"{prefix} {i}", execSchedule="* * * * * ?")
            for i in range(n)
        ]
    )
    with get_runtime().store.write() as session:
        session.execute(
            update(Job).where(Job.name.startswith(f"{prefix} ")).values(next_fire_at=fire_at)
        )


@pytest.fixture(autouse=True)
def _retire_schedules() -> Iterator[None]:
    """This file's schedules fire every second: delete them after each test, so that they do
    not fire into later tests' queues."""
    yield
    with get_runtime().store.write() as session:
        session.execute(
            update(Job).where(Job.name.startswith("Beat ")).values(deleted_at=datetime.now(UTC))
        )


def _runs(prefix: str) -> list[tuple[str, str, str, datetime | None]]:
    with get_runtime().store.read() as session:
        rows = session.execute(
            select(Job.name, Run.fire_key, Run.run_name, Run.dispatched_at)
            .join(Job, Job.id == Run.job_id)
            .where(Job.name.startswith(f"{prefix} "))
        ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def _queued(queue: str, prefix: str) -> int:
    """How many start messages in ``queue`` are of runs named ``prefix...`` (other tests'
    schedules may fire into the same queue)."""
    messages = redis_client(get_settings()).lrange(queue, 0, -1)
    return sum(f"'run': '{prefix}" in json.loads(m)["headers"]["kwargsrepr"] for m in messages)


def test_due_schedules_fire_in_batches_and_a_tick_that_loses_the_lead_stops(
    private_queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, queue = private_queue
    monkeypatch.setattr(scheduling, "FIRE_BATCH", 7)
    _schedules("Beat Batch", 20)
    now = datetime.now(UTC)
    leads = iter([True, False])  # the lock renewed after the first batch, lost after the second
    report = tick(now=now, keep_lead=lambda: next(leads))
    assert len([n for n in report.fired if n.startswith("Beat Batch ")]) == 14
    assert len(_runs("Beat Batch")) == 14
    report = tick(now=now)  # the next leader's tick fires the rest
    runs = _runs("Beat Batch")
    assert len(runs) == 20
    assert sorted(name for name, *_ in runs) == sorted(f"Beat Batch {i}" for i in range(20))
    assert {key for _, key, _, _ in runs} == {f"cron:{LONG_AGO.isoformat()}"}  # a misfire: once
    assert all(sent is not None for *_, sent in runs)  # marked sent with the insert
    assert _queued(queue, "Beat Batch ") == 20  # and their starts are in the queue


def test_two_beats_ticking_at_once_fire_each_schedule_once(
    private_queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduling, "FIRE_BATCH", 5)
    due = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=3)
    _schedules("Beat Pair", 40, LONG_AGO + timedelta(seconds=1))
    with get_runtime().store.write() as session:  # short catch-ups: 3 fire times each
        session.execute(
            update(Job).where(Job.name.startswith("Beat Pair ")).values(next_fire_at=due)
        )
    now, errors = due + timedelta(seconds=2.5), []

    def beat() -> None:
        try:
            tick(now=now)
        except Exception as exc:  # collected: an assertion in a thread would be lost
            errors.append(exc)

    beats = [threading.Thread(target=beat) for _ in range(2)]
    for thread in beats:
        thread.start()
    for thread in beats:
        thread.join(120)
    assert not errors
    runs = _runs("Beat Pair")
    keys = [(name, key) for name, key, _, _ in runs]
    assert len(keys) == len(set(keys)) == 40 * 3
    names = [run_name for _, _, run_name, _ in runs]
    assert len(names) == len(set(names))  # same job, same second: -2, -3


def test_run_names_of_a_batch_take_the_next_free_suffix_and_taken_fires_are_skipped(
    store_only: dict[str, str],
) -> None:
    _schedules("Beat Names", 1)
    with get_runtime().store.read() as session:
        job = session.scalars(select(Job).where(Job.name == "Beat Names 0")).one()
    local_now = datetime.now(UTC)
    stamp = f"Beat Names 0_{local_now:%Y-%m-%d-%H:%M:%S}"
    fires = [NewRun(job.id, job.company_id, job.name, f"cron:test-{n}") for n in range(3)]
    with get_runtime().store.connect() as conn:
        first = insert_runs(conn, fires[:1], local_now=local_now)
    with get_runtime().store.connect() as conn:  # the same second, later: -2, then -3 in-batch
        assert untaken_fires(conn, fires) == fires[1:]
        rest = insert_runs(conn, untaken_fires(conn, fires), local_now=local_now)
    # the batch went in with its own suffixes (-2 for its second fire); its first fire's name
    # was taken and it took the next free one
    assert [run["run_name"] for run in first + rest] == [stamp, f"{stamp}-3", f"{stamp}-2"]
    assert [run["fire_key"] for run in first + rest] == [f.fire_key for f in fires]
    assert len({run["id"] for run in first + rest}) == 3
    with get_runtime().store.read() as session:
        stored = session.scalars(select(Run.run_name).where(Run.job_id == job.id)).all()
    assert sorted(stored) == sorted(run["run_name"] for run in first + rest)
