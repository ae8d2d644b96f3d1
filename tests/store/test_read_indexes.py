"""Migration 0004: the indexes the read operations need on a big store, and that their queries
use them (issue 14's growth benchmark, bench/growth.py, found them missing).

getJobLogs lists a company's latest runs; getActiveJobs its runs in progress. Without the
indexes the first sorted every run of the company and the second (on SQLite) scanned every run.
The plans are read with the database's own EXPLAIN, on a store with some history (most runs
ended, a few running) and its statistics gathered, as a store in service has them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, inspect, text

from tests.support.stack import store_url

INDEXES = {"ix_runs_company_started", "ix_runs_company_state"}
T0 = datetime(2026, 11, 1, 8, 30, tzinfo=UTC)
RUNS = 3000


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    from jobengine.store.db import Store

    made = Store(store_url(request.param, tmp_path))
    yield made
    made.dispose()


def _indexes(store: Any) -> set[str]:
    return {i["name"] for i in inspect(store.engine).get_indexes("runs")}


def test_0004_adds_the_indexes_and_takes_them_away(store: Any) -> None:
    from jobengine.store import migrate

    migrate.upgrade(store, "0003")
    assert not INDEXES & _indexes(store)
    migrate.upgrade(store, "0004")
    assert _indexes(store) >= INDEXES
    migrate.downgrade(store, "0003")
    assert not INDEXES & _indexes(store)
    migrate.upgrade(store)
    assert _indexes(store) >= INDEXES


def _fill(store: Any) -> None:
    """Two companies' history: every run one job, most of them ended, 5 a company running."""
    from jobengine.store.schema import COMPANIES, JOBS
    from jobengine.store.schema import RUNS as RUNS_TABLE

    with store.engine.begin() as conn:
        conn.execute(COMPANIES.insert(), [
            {"id": c, "handle": f"c{c}", "name": f"C{c}", "created_at": T0} for c in (1, 2)
        ])  # fmt: skip
        jobs, runs = [], []
        for i in range(1, RUNS + 1):
            company, at = 1 + i % 2, T0 + timedelta(minutes=i)
            jobs.append({
                "id": i, "company_id": company, "live_key": None, "handle": f"c{company}|J{i}|",
                "name": f"J{i}", "kind": "ExportJob", "payload": {}, "time_zone": "UTC",
                "trigger_state": "Complete", "created_at": at,
            })  # fmt: skip
            running = i <= 10
            runs.append({
                "id": i, "job_id": i, "company_id": company, "run_name": f"J{i}_x",
                "fire_key": "now", "task_id": f"t{i}", "state": "Running" if running else "Done",
                "started_at": at, "ended_at": None if running else at, "created_at": at,
                "output": {},
            })  # fmt: skip
        conn.execute(JOBS.insert(), jobs)
        conn.execute(RUNS_TABLE.insert(), runs)
    with store.engine.connect() as conn:  # the statistics a store in service has
        if store.engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
        else:
            conn.execute(text("ANALYZE"))
            conn.commit()


def _plans(store: Any, read: Any) -> list[str]:
    """The plan of each statement ``read(session)`` runs on the runs table, as one string each."""
    seen: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, params: Any, *rest: Any) -> None:
        seen.append((statement, params))

    event.listen(store.read_engine, "before_cursor_execute", grab)
    try:
        with store.read() as session:
            read(session)
    finally:
        event.remove(store.read_engine, "before_cursor_execute", grab)
    sqlite = store.engine.dialect.name == "sqlite"
    plans = []
    with store.read_engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()
        for statement, params in seen:
            if "FROM runs" not in statement:
                continue
            cursor.execute(("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + statement, params)
            plans.append("\n".join(str(row[-1] if sqlite else row[0]) for row in cursor))
        conn.rollback()
    assert plans, "no statement on runs"
    return plans


def test_a_companys_latest_job_logs_are_read_from_the_index(store: Any) -> None:
    """getJobLogs' default (sortBy StartDate, Descending, numRows): no sort of all the runs."""
    from jobengine.store import migrate
    from jobengine.store.reads import RunFilter, job_log_runs

    migrate.upgrade(store)
    _fill(store)

    def read(session: Any) -> None:
        rows = job_log_runs(session, RunFilter(company_id=1), order="started_at", limit=100)
        assert len(rows) == 100
        assert [r.id for r, _, _ in rows] == list(range(RUNS, RUNS - 200, -2))

    [plan] = _plans(store, read)
    assert "ix_runs_company_started" in plan, plan
    if store.engine.dialect.name == "sqlite":
        assert "TEMP B-TREE" not in plan, plan  # read in order, not sorted
    else:
        assert "Seq Scan on runs" not in plan, plan


def test_a_companys_active_runs_are_found_by_the_index(store: Any) -> None:
    """getActiveJobs: the few runs in progress, not a scan of the history."""
    from jobengine.store import migrate
    from jobengine.store.reads import RunFilter, runs_with_jobs
    from jobengine.store.states import STARTED_RUNS

    migrate.upgrade(store)
    _fill(store)

    def read(session: Any) -> None:
        rows = runs_with_jobs(session, RunFilter(company_id=1), STARTED_RUNS)
        assert [r.id for r, _, _ in rows] == [2, 4, 6, 8, 10]  # oldest first

    [plan] = _plans(store, read)
    if store.engine.dialect.name == "sqlite":
        assert "ix_runs_company_state" in plan, plan
        assert "SCAN runs" not in plan, plan
    else:  # either index finds the few running ones; neither reads the history
        assert "ix_runs_company_state" in plan or "ix_runs_state" in plan, plan
        assert "Seq Scan on runs" not in plan, plan
