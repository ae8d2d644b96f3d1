"""A small run's start claim, and a chunk's claims of its items, commit on PostgreSQL without
waiting for the server's log flush (``commit_without_flush``): the durable commit that ends
the run or counts the items carries them to disk. On a cluster of the test's own: the log
flushes a one-asset run and a chunk wait for are counted, and a crash of the server (an
immediate shutdown, which loses commits not yet flushed) while workers hold claims loses no
run and runs none twice.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, select

from jobengine import submit, submit_many
from jobengine.cli.devstack import wait_for_runs
from jobengine.engine import runner
from jobengine.runtime import get_runtime
from jobengine.storage import LocalStorage
from jobengine.store.schema import Job, Run
from tests.support.fleet import (
    Figures,
    PostgresCluster,
    postgres_fleet,
    scenario,
    wait_until,
)
from tests.support.helpers import (
    duplicated_successes,
    export_request,
    make_company,
    zip_members,
)

pytestmark = pytest.mark.slow

RUNS = 20
CHUNKS = 8
CRASH_RUNS = 40
FAN_OUT = 30


def _log_flushes(database: PostgresCluster) -> int:
    """The times the cluster has flushed its log to disk (``pg_stat_wal.wal_sync``), once the
    store's connections are closed: a server process adds its counts to the cluster's when
    it exits, so the store's sessions are ended and awaited first."""
    get_runtime().store.dispose()
    with psycopg.connect(database.url, autocommit=True) as conn:
        others = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
        others += "AND pid <> pg_backend_pid()"
        deadline = time.monotonic() + 30
        while conn.execute(others).fetchone() != (0,) and time.monotonic() < deadline:
            time.sleep(0.05)
        conn.execute("SELECT pg_stat_force_next_flush()")
        row = conn.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()
    assert row is not None
    return int(row[0])


def test_a_one_asset_run_waits_for_one_log_flush_not_two(
    fault_home: Path, fleet_parts: list[object]
) -> None:
    database, fleet = postgres_fleet(fault_home, fleet_parts)
    with scenario(fleet.env):  # no worker: the runs start here, one after the other
        company, [asset] = make_company(1)
        submit_many([export_request(company, [asset], f"Flush {n}") for n in range(RUNS)])
        with get_runtime().store.read() as session:
            runs = list(session.scalars(select(Run.id).order_by(Run.id)))
        assert len(runs) == RUNS
        before = _log_flushes(database)
        results = [runner.start(run_id, "flush-counter") for run_id in runs]
        flushes = _log_flushes(database) - before
        with get_runtime().store.read() as session:
            done = session.scalar(select(func.count()).where(Run.state == "Done"))

    assert results == ["done"] * RUNS and done == RUNS
    # Each run commits twice (its claim, then its end); only the end waits for a flush. The
    # server's log writer may flush the claims of a few runs on its own (every 200 ms).
    assert flushes < RUNS * 3 // 2, f"{flushes} log flushes for {RUNS} runs"


def test_a_chunk_of_items_waits_for_one_log_flush_not_two(
    fault_home: Path, fleet_parts: list[object]
) -> None:
    database, fleet = postgres_fleet(fault_home, fleet_parts)
    with scenario(fleet.env):  # no worker: the start and the chunks run here
        company, assets = make_company(CHUNKS * 2)
        submit(export_request(company, assets, "Chunks"))
        with get_runtime().store.read() as session:
            [run_id] = session.scalars(select(Run.id))
        assert runner.start(run_id, "flush-counter") == "started"  # its items fanned out
        before = _log_flushes(database)
        steps = [
            runner.run_chunk(run_id, [2 * n, 2 * n + 1], "flush-counter", on_item=lambda s: None)
            for n in range(CHUNKS)
        ]
        flushes = _log_flushes(database) - before

    assert [step.status for step in steps] == ["done"] * CHUNKS
    # A chunk commits its claims, then its count; only the count waits for a flush.
    assert flushes < CHUNKS * 3 // 2, f"{flushes} log flushes for {CHUNKS} chunks"


def test_a_postgresql_crash_while_workers_hold_claims_loses_no_run_and_runs_none_twice(
    fault_home: Path, fleet_parts: list[object]
) -> None:
    database, fleet = postgres_fleet(fault_home, fleet_parts)
    figures = Figures("PostgreSQL crash (immediate shutdown) under one-asset runs and a fan-out")
    with scenario(fleet.env):
        company, [asset] = make_company(1, pad=1_000_000)
        fleet.worker()
        fleet.beat()
        big, assets = make_company(FAN_OUT, pad=300_000)
        handles = [
            submit(export_request(company, [asset], f"Crash {n}")) for n in range(CRASH_RUNS)
        ]
        big_handle = submit(export_request(big, assets, "Crash Fan Out"))

        def running() -> bool:
            with get_runtime().store.read() as session:
                held = select(func.count()).where(Run.state == "Running")
                done = select(func.count()).where(Run.state == "Done")
                return bool(session.scalar(held)) and (session.scalar(done) or 0) >= 5

        wait_until(running, 120, "a run claimed after five done", explain=fleet.tails)
        database.crash()  # claims committed without a flush are lost with it
        crashed_at = time.monotonic()
        time.sleep(2)
        database.start()
        logs = wait_for_runs(company, handles, timeout=240)
        logs += wait_for_runs(big, [big_handle], timeout=240)
        figures.recovery_seconds = time.monotonic() - crashed_at
        repeats = duplicated_successes()
        storage = get_runtime().storage
        assert isinstance(storage, LocalStorage)
        zips = [str(log.output["zip"]) for log in logs if log.output]
        members = [zip_members(storage, key) for key in zips]
        with get_runtime().store.read() as session:
            jobs = session.scalar(select(func.count()).select_from(Job))

    figures.count(CRASH_RUNS + 1, logs)
    figures.duplicated = repeats
    figures.record()
    failures = [(log.job_name, log.details[-1].log_message) for log in logs if log.state != "Done"]
    assert jobs == CRASH_RUNS + 1  # every accepted job is still there (durable commits)
    assert figures.failed == 0 and figures.lost == 0, failures
    assert figures.done == CRASH_RUNS + 1
    assert repeats == 0
    assert logs[-1].file_success_count == FAN_OUT
    assert len(set(zips)) == CRASH_RUNS + 1 and members == [1] * CRASH_RUNS + [FAN_OUT]
