"""The take of staged fires at their fire time (jobengine/store/staging.py), on a store of its own.

It made the second round of bench/beat.py on PostgreSQL slow: its UPDATE of a batch's ids (500
bound values) became a prepared statement with a generic plan once its pooled connection had run
it a few times, a plan that read every 'Staged' entry of ix_runs_state and tested each row
against the 500 parameters. The take is now one statement, planned for each call.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from tests.support.stack import store_url

T0 = datetime(2026, 11, 1, 8, 30, tzinfo=UTC)
ENDED = 2000  # runs of the store's history
STAGED = 600  # fires staged at T0 (a third of them a second earlier)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    from jobengine.store import migrate
    from jobengine.store.db import Store

    made = Store(store_url(request.param, tmp_path))
    migrate.upgrade(made)
    yield made
    made.dispose()


def _fill(store: Any, paused: int = 0) -> None:
    """One company's history (ended runs) and ``STAGED`` staged fires of as many jobs, the
    first ``paused`` of them paused since."""
    from jobengine.store.schema import COMPANIES, JOBS, RUNS

    with store.engine.begin() as conn:
        conn.execute(
            COMPANIES.insert(), [{"id": 1, "handle": "c1", "name": "C1", "created_at": T0}]
        )
        jobs, runs = [], []
        for i in range(1, ENDED + STAGED + 1):
            staged = i > ENDED
            jobs.append({
                "id": i, "company_id": 1, "live_key": None, "handle": f"c1|J{i}|", "name": f"J{i}",
                "kind": "ExportJob", "payload": {}, "time_zone": "UTC", "created_at": T0,
                "trigger_state": "Paused" if staged and i - ENDED <= paused else "Normal",
            })  # fmt: skip
            runs.append({
                "id": i, "job_id": i, "company_id": 1, "run_name": f"J{i}_x", "fire_key": "now",
                "task_id": f"t{i}", "state": "Staged" if staged else "Done",
                "eta": T0 - timedelta(seconds=1 if staged and i % 3 == 0 else 0),
                "created_at": T0, "output": {},
            })  # fmt: skip
        conn.execute(JOBS.insert(), jobs)
        conn.execute(RUNS.insert(), runs)


def test_batches_take_each_fire_once_oldest_first_and_drop_the_paused(store: Any) -> None:
    """Batch after batch on one connection (PostgreSQL: never a prepared statement, so every
    batch is planned for its values); the fires of paused jobs are deleted, never queued."""
    from jobengine.store.schema import RUNS
    from jobengine.store.staging import take_due

    _fill(store, paused=7)
    taken: list[int] = []
    with store.engine.connect() as conn:
        for _ in range(12):  # more than psycopg's prepare threshold (5)
            fires, looked = take_due(conn, T0 + timedelta(milliseconds=5), 50)
            taken += [fire.run_id for fire in fires]
            if looked < 50:
                break
        if store.engine.dialect.name == "postgresql":
            prepared = conn.execute(text("SELECT statement FROM pg_prepared_statements")).all()
            assert not [s for (s,) in prepared if "UPDATE runs" in s], prepared
        conn.commit()
    staged_ids = range(ENDED + 1, ENDED + STAGED + 1)
    early = [i for i in staged_ids if i % 3 == 0]
    assert taken == [i for i in early + [i for i in staged_ids if i % 3] if i > ENDED + 7]
    with store.engine.connect() as conn:
        rows = conn.execute(select(RUNS.c.id, RUNS.c.state, RUNS.c.eta).where(RUNS.c.id > ENDED))
        states = {int(i): (state, eta) for i, state, eta in rows}
    assert set(states) == set(taken)  # the paused jobs' fires are gone
    assert {state for state, _ in states.values()} == {"Queued"}
    assert {eta for _, eta in states.values()} == {None}
    with store.engine.connect() as conn:
        again, looked = take_due(conn, T0 + timedelta(seconds=1), 50)
        conn.commit()
    assert (again, looked) == ([], 0)
